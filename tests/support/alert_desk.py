"""What the alert desk tests share (this module holds no tests): the desk as a real process
(with a lake folder of its own, for the photos), alerts as the stream pipeline writes them
and their photos as the simulator stores them, maintenance alerts and the drone's health in the
lake, a reader of the desk's event stream, and a throwaway PostgreSQL server with a fixture that
gives each test a database of each kind."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import orjson
import psycopg
import pytest

from tests.support.kafka_io import produce_all
from tests.support.processes import REPO_ROOT
from transforms import lake
from transforms.contract import DroneMessage, MaintenanceAlert, encode_alert, encode_maintenance_alert, maintenance_alert_id
from transforms.kafka_settings import KafkaSettings
from transforms.messages import messages_to_table

ALICE, ALICE_TOKEN = "alice", "alice-token-7f3c9a2e51d04b8c"
BOB, BOB_TOKEN = "bob", "bob-token-0c4e8d1a6b2f4e97"
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 20.0
SCORED_AT = datetime(2026, 11, 28, 17, 10, tzinfo=timezone.utc)

# A spot in each borough, for alerts that must land somewhere known.
PLACES = {
    "Manhattan": (40.7580, -73.9855),
    "Brooklyn": (40.6602, -73.9690),
    "Queens": (40.7675, -73.8330),
    "Bronx": (40.8615, -73.8904),
    "Staten Island": (40.5823, -74.1651),
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unique_topic(base: str) -> str:
    """A topic of this test's own, so tests never read each other's records."""
    return f"{base}-{uuid.uuid4().hex[:10]}"


def wait_until(condition: Callable[[], Any], deadline_s: float, what: str, interval_s: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {deadline_s:.0f} s: {what}")
        time.sleep(interval_s)


def human_review_message(drone: str, borough: str = "Manhattan", seen: datetime | None = None) -> DroneMessage:
    latitude, longitude = PLACES[borough]
    seen = seen or datetime.now(timezone.utc) - timedelta(minutes=2)
    return DroneMessage(
        message_id=str(uuid.uuid4()),
        drone_id=drone,
        timestamp=seen.replace(microsecond=seen.microsecond // 1000 * 1000),  # the contract's precision
        latitude=latitude,
        longitude=longitude,
        violation_code=100,
        image_id=f"img-{uuid.uuid4().hex[:12]}",
        battery_pct=71.0,
        altitude_m=32.0,
        speed_mps=0.4,
        motor_temp_c=41.5,
    )


def alert_record(message: DroneMessage, offset: int = 0) -> tuple[bytes, bytes]:
    """An alerts-topic record exactly as the stream pipeline writes it."""
    return message.drone_id.encode(), encode_alert(message, datetime.now(timezone.utc), 0, offset)


def send_alerts(settings: KafkaSettings, topic: str, messages: list[DroneMessage]) -> None:
    produce_all(settings, topic, [alert_record(message, index) for index, message in enumerate(messages)])


@functools.cache
def photo_renderer() -> Any:
    from simulator.photos import PhotoRenderer

    return PhotoRenderer(seed=1)


def store_photo(lake_root: Path, message: DroneMessage) -> bytes:
    """The message's photo, rendered and stored where the simulator stores it; its bytes."""
    payload = photo_renderer().render(message)
    lake.write_file_atomically(str(lake_root), lake.image_path(str(lake_root), message.timestamp, message.image_id), payload)
    return payload


def maintenance_record(drone_id: str, message_id: str, risk: float) -> tuple[bytes, bytes]:
    alert = MaintenanceAlert(maintenance_alert_id(message_id), SCORED_AT + timedelta(seconds=2), drone_id, message_id, SCORED_AT, risk, 0.5)
    return drone_id.encode(), encode_maintenance_alert(alert)


def write_health(lake_root: str, drone_id: str) -> list[DroneMessage]:
    """Ninety minutes of the drone's health (every 5 minutes) across two hour folders, and another drone's."""
    messages = [
        DroneMessage(
            f"{drone}-{minute}",
            drone,
            SCORED_AT - timedelta(minutes=minute),
            40.7,
            -73.9,
            battery_pct=80 - minute / 2,
            motor_temp_c=60 - minute / 10,
            vibration_g=1.2 - minute / 100,
            flight_hours=30 - minute / 60,
        )
        for drone in (drone_id, "drone-other")
        for minute in range(0, 90, 5)
    ]
    for hour in {lake.drone_partition(lake_root, message.timestamp) for message in messages}:
        inside = [message for message in messages if lake.drone_partition(lake_root, message.timestamp) == hour]
        table = messages_to_table(inside, [0] * len(inside), list(range(len(inside))), lake_root)
        lake.write_table(lake_root, hour, "part-0000-p0.parquet", table)
    return [message for message in messages if message.drone_id == drone_id]


@dataclass
class Desk:
    """A running ``python -m alert_desk`` and an HTTP client for it."""

    url: str
    process: subprocess.Popen
    log_path: Path
    lake: Path  # where its photos are looked for
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url, timeout=20.0)

    def call(self, method: str, path: str, token: str | None = ALICE_TOKEN, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, path, headers=headers, **kwargs)

    def alerts(self, **params: Any) -> dict[str, Any]:
        answer = self.call("GET", "/api/alerts", params={"limit": 1000, **params})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def status(self) -> dict[str, Any]:
        answer = self.call("GET", "/api/status")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, how: int = signal.SIGTERM) -> int:
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(how)
        try:
            return self.process.wait(STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError(f"the desk did not stop within {STOP_DEADLINE_S:.0f} s; log:\n{self.log()}") from None


def desk_command(settings: KafkaSettings, database_url: str, port: int, alerts_topic: str, messages_topic: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "alert_desk",
        "--bootstrap_servers",
        settings.bootstrap_servers,
        "--db",
        database_url,
        "--port",
        str(port),
        "--alerts_topic",
        alerts_topic,
        "--messages_topic",
        messages_topic,
        *extra,
    ]


def module_desk_fixtures(name: str) -> tuple[Any, Any]:
    """A test module's ``topics`` and ``desk`` fixtures: a desk of its own on topics of its own, stopped cleanly at the end."""

    @pytest.fixture(scope="module")
    def topics() -> tuple[str, str]:
        return unique_topic(f"{name}-alerts"), unique_topic(f"{name}-messages")

    @pytest.fixture(scope="module")
    def desk(broker: KafkaSettings, topics: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
        running = start_desk(broker, tmp_path_factory.mktemp(name) / "alerts.db", *topics)
        yield running
        assert running.stop() == 0, running.log()

    return topics, desk


def start_desk(
    settings: KafkaSettings,
    db_path: Path,
    alerts_topic: str,
    messages_topic: str,
    *extra: str,
    tokens: tuple[str, ...] = (f"{ALICE}={ALICE_TOKEN}", f"{BOB}={BOB_TOKEN}"),
    token_variable: str | None = None,
    database_url: str | None = None,
) -> Desk:
    """Start the desk on a free port and wait until it answers its health check.

    Its state is in the SQLite file ``db_path`` unless ``database_url`` names another database;
    its log and its lake (``lake/``, for the photos) go beside ``db_path`` either way.
    """
    port = free_port()
    lake_root = db_path.with_name("lake")
    token_flags = [part for token in tokens for part in ("--token", token)]
    log_path = db_path.with_name(f"desk-{port}.log")
    environment = {name: value for name, value in os.environ.items() if name != "DRONECOP_DESK_TOKEN"}
    if token_variable is not None:
        environment["DRONECOP_DESK_TOKEN"] = token_variable
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            desk_command(
                settings,
                database_url or f"sqlite:///{db_path}",
                port,
                alerts_topic,
                messages_topic,
                "--lake",
                str(lake_root),
                *token_flags,
                *extra,
            ),
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    desk = Desk(f"http://127.0.0.1:{port}", process, log_path, lake_root)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the desk exited with {process.returncode}:\n{desk.log()}")
        try:
            return httpx.get(f"{desk.url}/healthz", timeout=2).status_code == 200
        except (httpx.HTTPError, OSError):
            return False

    wait_until(healthy, START_DEADLINE_S, "the desk answers /healthz")
    return desk


class EventListener:
    """Reads the desk's server-sent events in a thread and keeps them, parsed, in order."""

    def __init__(self, desk: Desk, token: str = ALICE_TOKEN, cookie: str | None = None) -> None:
        """Signed in by bearer ``token``, or by the session ``cookie`` (``NAME=VALUE``) when given."""
        self.events: list[tuple[str, Any, float]] = []
        self._lock = threading.Lock()
        self._client = httpx.Client(base_url=desk.url, timeout=httpx.Timeout(10.0, read=None))
        self._headers = {"Cookie": cookie} if cookie else {"Authorization": f"Bearer {token}"}
        self._socket: socket.socket | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        wait_until(lambda: self.named("hello"), 10, "the event stream says hello")

    def named(self, name: str) -> list[Any]:
        with self._lock:
            return [data for event, data, _ in self.events if event == name]

    def _read(self) -> None:
        name = None
        try:
            with self._client.stream("GET", "/api/events", headers=self._headers) as stream:
                self._socket = stream.extensions["network_stream"].get_extra_info("socket")
                for line in stream.iter_lines():
                    if line.startswith("event: "):
                        name = line[len("event: ") :]
                    elif line.startswith("data: ") and name is not None:
                        with self._lock:
                            self.events.append((name, orjson.loads(line[len("data: ") :]), time.time()))
        except (httpx.HTTPError, OSError):
            return

    def ended(self, deadline_s: float) -> bool:
        """Wait until the desk ends the stream (as it does first when it stops); whether it did in time."""
        self._thread.join(deadline_s)
        return not self._thread.is_alive()

    def close(self) -> None:
        """Cut the connection under the reader if it is still blocked, so it ends at once."""
        if self._socket is not None and self._thread.is_alive():
            self._socket.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
        self._client.close()


# A throwaway PostgreSQL server for the store and desk tests that run on both databases.

PG_USER = "desk"
PG_BIN_ENV = "DRONECOP_POSTGRES_BIN"
PG_START_DEADLINE_S = 60.0


def postgres_bin_dir() -> Path | None:
    """Where ``initdb`` and ``postgres`` are: ``$DRONECOP_POSTGRES_BIN``, the pgserver wheel that the
    ``dev`` extra installs, Debian's ``postgresql`` package, or the PATH, in that order."""
    candidates: list[Path] = []
    if os.environ.get(PG_BIN_ENV):
        candidates.append(Path(os.environ[PG_BIN_ENV]))
    wheel = importlib.util.find_spec("pgserver")
    if wheel is not None and wheel.submodule_search_locations:
        candidates.extend(Path(location) / "pginstall" / "bin" for location in wheel.submodule_search_locations)
    candidates.extend(
        sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
            reverse=True,
        )
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    return next((path for path in candidates if _has_server(path)), None)


def _has_server(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / program, os.X_OK) for program in ("initdb", "postgres"))


@dataclass(frozen=True)
class PostgresServer:
    """A running server on loopback; each test takes a fresh database of its own."""

    port: int
    password: str = field(repr=False)

    def url(self, database: str) -> str:
        return f"postgresql://{PG_USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A new, empty database; its URL (with the password, as a user would write it)."""
        name = f"desk_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _server_account() -> dict[str, Any]:
    """PostgreSQL refuses to run as root (CI runs as root): then it runs as ``nobody``."""
    if os.geteuid() != 0:
        return {}
    account = pwd.getpwnam("nobody")
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _server_home(account: dict[str, Any]) -> tempfile.TemporaryDirectory | None:
    """Root's pytest folder is private (0700), so a server running as ``nobody`` gets a folder of its own."""
    if not account:
        return None
    home = tempfile.TemporaryDirectory(prefix="dronecop-postgres-")
    os.chown(home.name, account["user"], account["group"])
    return home


def _as_account(command: list[str], log: Path, account: dict[str, Any]) -> subprocess.Popen:
    with log.open("ab") as output:
        return subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"},
            **account,
        )


def _initdb(bin_dir: Path, data: Path, password: str, log: Path, account: dict[str, Any]) -> None:
    password_file = data.parent / "password"
    password_file.write_text(password)
    if account:
        os.chown(password_file, account["user"], account["group"])
    command = [
        str(bin_dir / "initdb"),
        "-D",
        str(data),
        "-U",
        PG_USER,
        f"--pwfile={password_file}",
        "--auth-host=scram-sha-256",
        "--auth-local=trust",
        "-E",
        "UTF8",
        "--no-locale",
        "--no-sync",
    ]
    finished = _as_account(command, log, account).wait(PG_START_DEADLINE_S)
    password_file.unlink()
    assert finished == 0, f"initdb failed:\n{log.read_text(errors='replace')}"


@contextlib.contextmanager
def running_postgres(bin_dir: Path, tmp_path: Path) -> Iterator[PostgresServer]:
    """initdb into a throwaway folder, ``postgres`` on a free loopback port, a fast stop at the end."""
    account = _server_account()
    home = _server_home(account)
    data = Path(home.name if home else tmp_path) / "data"
    log = tmp_path / "postgres.log"
    server = PostgresServer(free_port(), secrets.token_urlsafe(16))
    try:
        _initdb(bin_dir, data, server.password, log, account)
        process = _as_account(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(server.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
            ],
            log,
            account,
        )
        try:
            wait_until(lambda: _answers(server, process, log), PG_START_DEADLINE_S, "PostgreSQL accepts connections")
            yield server
        finally:
            process.send_signal(signal.SIGINT)  # "fast" shutdown: roll back open sessions, then stop
            process.wait(STOP_DEADLINE_S)
    finally:
        if home is not None:
            home.cleanup()


def _answers(server: PostgresServer, process: subprocess.Popen, log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"postgres exited with {process.returncode}:\n{log.read_text(errors='replace')}")
    try:
        psycopg.connect(server.url("postgres"), connect_timeout=2).close()
        return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip(f"no PostgreSQL server binaries: pip install -e .[dev] (pgserver), apt-get install postgresql, or set {PG_BIN_ENV}")
    with running_postgres(bin_dir, tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'alerts.db'}"
    return request.getfixturevalue("postgres_server").new_database()
