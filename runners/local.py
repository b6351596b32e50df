"""The local stack: ``python -m runners.local broker | up | down | status``.

``broker`` runs an embedded broker in the foreground until SIGINT/SIGTERM. ``up`` starts
one in the background (pid and log under ``.dronecop/``), waits until it answers and
creates DroneCop's topics; ``down`` stops it; ``status`` says what runs. Errors a user
can fix are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from runners.brokers import ENGINES, BrokerCommand, BrokerError, broker_command, default_engine
from runners.workspace import dronecop_home
from transforms.kafka_settings import TOPICS, BrokerUnavailable, KafkaSettings, ensure_topics, wait_for_broker

START_TIMEOUT_S = 30.0
STOP_GRACE_S = 30.0
EXIT_USAGE = 2


def pid_file() -> Path:
    return dronecop_home() / "broker.json"


def log_file() -> Path:
    return dronecop_home() / "broker.log"


def settings_for(port: int) -> KafkaSettings:
    return KafkaSettings.from_env(f"127.0.0.1:{port}")


def start(command: BrokerCommand, log_path: Path | None = None) -> subprocess.Popen:
    """Start the broker process and wait until it answers; stop it and raise if it does not."""
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(command.argv, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_broker(settings_for(command.port), START_TIMEOUT_S)
    except BrokerUnavailable:
        stop(process)
        raise BrokerError(
            f"the {command.engine} broker did not come up on port {command.port} within {START_TIMEOUT_S:.0f} s"
            + (f" (see {log_path})" if log_path else "")
        ) from None
    return process


def stop(process: subprocess.Popen) -> int:
    """SIGTERM, then SIGKILL after a grace period; returns the exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def run_broker(args: argparse.Namespace) -> int:
    """Foreground: run until SIGINT/SIGTERM, then stop the broker cleanly."""
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    command = broker_command(args.engine, args.port)
    process = start(command)
    print(f"{command.engine} broker ready on 127.0.0.1:{command.port}", flush=True)
    while not stopping.is_set() and process.poll() is None:
        stopping.wait(0.5)
    if process.poll() is not None and not stopping.is_set():
        raise BrokerError(f"the {command.engine} broker exited unexpectedly with status {process.returncode}")
    stop(process)
    return 0


def running() -> dict | None:
    """The background broker's record, if its process is alive."""
    path = pid_file()
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        return None
    return record


def up(args: argparse.Namespace) -> int:
    record = running()
    if record is not None:
        print(f"already up: {record['engine']} broker on 127.0.0.1:{record['port']} (pid {record['pid']})")
        return 0
    log = log_file()
    with open(log, "ab") as output:
        wrapper = subprocess.Popen(
            [sys.executable, "-m", "runners.local", "broker", f"--port={args.port}", f"--engine={args.engine}"],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=Path(__file__).resolve().parents[1],
            env={**os.environ, "DRONECOP_HOME": str(dronecop_home())},
        )
    settings = settings_for(args.port)
    try:
        wait_for_broker(settings, START_TIMEOUT_S + 10)
    except BrokerUnavailable:
        stop(wrapper)
        last = (log.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise BrokerError(f"the broker did not come up on port {args.port}: {last}") from None
    pid_file().write_text(json.dumps({"pid": wrapper.pid, "engine": args.engine, "port": args.port}))
    created = ensure_topics(settings, [topic.name for topic in TOPICS])
    print(f"up: {args.engine} broker on 127.0.0.1:{args.port} (pid {wrapper.pid}, log {log}); topics created: {created or 'none'}")
    return 0


def down(_args: argparse.Namespace) -> int:
    record = running()
    if record is None:
        print("down: nothing was running")
        return 0
    os.kill(record["pid"], signal.SIGTERM)
    try:
        os.waitpid(record["pid"], 0)
    except ChildProcessError:
        _wait_until_gone(record["pid"])
    pid_file().unlink(missing_ok=True)
    print(f"down: stopped the {record['engine']} broker on port {record['port']}")
    return 0


def _wait_until_gone(pid: int) -> None:
    gone = threading.Event()
    for _ in range(int(STOP_GRACE_S * 10)):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        gone.wait(0.1)
    os.kill(pid, signal.SIGKILL)


def status(_args: argparse.Namespace) -> int:
    record = running()
    if record is None:
        print("status: no local broker is running")
        return 3
    print(f"status: {record['engine']} broker on 127.0.0.1:{record['port']} (pid {record['pid']}), alive")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runners.local", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, handler, help_text in (
        ("broker", run_broker, "run a broker in the foreground until Ctrl-C"),
        ("up", up, "start the broker in the background and create the topics"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--port", type=int, default=9092)
        command.add_argument(
            "--engine",
            choices=ENGINES,
            default=default_engine(),
            help="kafka (Apache Kafka from Maven; default where Java is present) or tansu",
        )
        command.set_defaults(handler=handler)
    commands.add_parser("down", help="stop the background broker").set_defaults(handler=down)
    commands.add_parser("status", help="say what runs").set_defaults(handler=status)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return args.handler(args)
    except (BrokerError, BrokerUnavailable) as error:
        sys.stderr.write(f"runners.local: {error}\n")
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
