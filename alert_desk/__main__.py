"""Start the alert desk: ``python -m alert_desk --bootstrap_servers … --db sqlite:///.dronecop/alerts.db --port 8080``.

``--db postgresql://USER@HOST:PORT/DBNAME`` keeps the same state in PostgreSQL instead (a
password is better given in ``PGPASSWORD`` or ``~/.pgpass`` than in the URL; either way it is
never printed). Bad configuration and an unreachable database end in one line on stderr and
exit code 2; so does a broker that does not answer within ``--broker_timeout``, after a line
that says at once which broker is waited for. SIGTERM or Ctrl-C closes the open event streams first, then
stops the reader after its current batch, so a stop never leaves half a batch behind; a second Ctrl-C
during that stop changes nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from types import FrameType
from typing import Sequence

import uvicorn

from alert_desk.app import create_app
from alert_desk.auth import DEFAULT_OPERATOR, TOKEN_ENV, BadTokenSpec, Operators, new_secret, operators_from, parse_token_spec
from alert_desk.connections import HEADER_TIMEOUT_S, with_header_timeout
from alert_desk.database import DatabaseUnavailable, dialect_for
from alert_desk.desk import DeskConfig
from alert_desk.events import Broadcaster
from alert_desk.http_guards import allowed_hosts
from alert_desk.store import Store
from transforms.kafka_settings import (
    DRONE_ALERTS,
    DRONE_MESSAGES,
    BrokerUnavailable,
    KafkaSettingsError,
    add_broker_timeout_argument,
    add_kafka_arguments,
    ensure_topics,
    settings_from_args,
    wait_for_broker_at_start,
)

MAX_CONNECTIONS = 1000


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m alert_desk", description="DroneCop operators' alert desk")
    add_kafka_arguments(parser)
    parser.add_argument(
        "--db",
        default="sqlite:///.dronecop/alerts.db",
        help="sqlite:///FILE or postgresql://USER@HOST:PORT/DBNAME (default: %(default)s)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="port to serve on (default: %(default)s)")
    parser.add_argument(
        "--token",
        action="append",
        default=[],
        metavar="[NAME=]TOKEN",
        help=f"an operator token, repeatable; NAME=sha256:HEX gives only its hash. Also read from {TOKEN_ENV} "
        "(comma-separated). When none is given, one is generated and printed once.",
    )
    parser.add_argument("--alerts_topic", default=DRONE_ALERTS)
    parser.add_argument("--messages_topic", default=DRONE_MESSAGES)
    parser.add_argument("--max_body_bytes", type=int, default=16 * 1024, help="largest request body (default: %(default)s)")
    parser.add_argument("--session_hours", type=float, default=12.0, help="browser sign-in lifetime (default: %(default)s)")
    parser.add_argument("--secure_cookies", action="store_true", help="mark the session cookie Secure (behind HTTPS)")
    parser.add_argument(
        "--lake",
        default="./lake",
        metavar="ROOT",
        help="lake root the drones store their photos under: a folder, gs://… or s3://…, as the pipelines' --output (default: %(default)s)",
    )
    parser.add_argument(
        "--public_url",
        metavar="URL",
        help="the address operators open (behind a proxy, say): requests must name its host or "
        "the --host served on; with --host 0.0.0.0 and no --public_url, any host is answered",
    )
    parser.add_argument(
        "--header_timeout_s",
        type=float,
        default=HEADER_TIMEOUT_S,
        help="close a connection whose request headers take longer (default: %(default)s)",
    )
    parser.add_argument(
        "--max_connections",
        type=int,
        default=MAX_CONNECTIONS,
        help="open connections (each open page holds one) beyond which requests get 503 (default: %(default)s)",
    )
    add_broker_timeout_argument(parser)
    return parser.parse_args(argv)


def say(message: str) -> None:
    print(f"alert desk: {message}", file=sys.stderr, flush=True)


def configured_operators(args: argparse.Namespace) -> Operators:
    """The operators from flags and environment; a generated one, printed once, when there are none."""
    operators = operators_from(args.token, os.environ.get(TOKEN_ENV))
    if operators.by_digest:
        return operators
    token = new_secret()
    name, hex_digest = parse_token_spec(f"{DEFAULT_OPERATOR}={token}")
    print(f"alert desk: no token configured; sign in as {name} with this token (shown once): {token}", flush=True)
    return Operators({hex_digest: name})


class DeskServer(uvicorn.Server):
    """Uvicorn, but open event streams are closed before it waits for connections to finish."""

    def __init__(self, config: uvicorn.Config, broadcaster: Broadcaster) -> None:
        super().__init__(config)
        self._broadcaster = broadcaster

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            print(f"alert desk: serving http://{self.config.host}:{self.config.port}/", flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._broadcaster.close()
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Any stop signal, however often it comes, asks for the same clean stop, ending in exit code 0.

        Ctrl-C often arrives twice (from the terminal and from the demo that started the desk).
        Uvicorn takes a second SIGINT as "force quit", which skips the application's orderly
        shutdown: its lifespan is cancelled instead and logs a CancelledError traceback.
        There is nothing to force: the stop is bounded by ``timeout_graceful_shutdown`` and the
        reader's current batch. Uvicorn would also re-raise a caught signal at exit; this does not.
        """
        self.should_exit = True


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="alert desk: %(message)s")
    try:
        dialect = dialect_for(args.db)
        operators = configured_operators(args)
        Store(dialect).close()  # the schema is in place and the database answers before anything is served
    except (ValueError, BadTokenSpec, DatabaseUnavailable) as error:
        print(f"alert desk: {error}", file=sys.stderr)
        return 2
    try:
        settings = settings_from_args(args)
        wait_for_broker_at_start(settings, args.broker_timeout, say)
        ensure_topics(settings, [args.alerts_topic, args.messages_topic])
    except (BrokerUnavailable, KafkaSettingsError) as error:
        print(f"alert desk: {error}", file=sys.stderr)
        return 2
    config = DeskConfig(
        kafka=settings,
        database_url=args.db,
        operators=operators,
        alerts_topic=args.alerts_topic,
        messages_topic=args.messages_topic,
        max_body_bytes=args.max_body_bytes,
        session_hours=args.session_hours,
        secure_cookies=args.secure_cookies,
        lake_root=args.lake,
        hosts=allowed_hosts(args.host, args.public_url),
    )
    app = create_app(config)
    server = DeskServer(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
            http=with_header_timeout(args.header_timeout_s),
            limit_concurrency=args.max_connections,
        ),
        app.state.broadcaster,
    )
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
