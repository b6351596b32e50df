"""Real brokers for the tests: Apache Kafka from Maven where Java is present, else Tansu.

Each engine starts at most once per session, on a free loopback port, with its state in
the session's temporary folder; tests get unique topic names so they never collide.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runners.brokers import BrokerError, broker_command, default_engine, free_port
from runners.local import start, stop
from runners.workspace import using_home
from transforms.kafka_settings import KafkaSettings

# The support modules assert as the tests do, so their failures show the values compared.
pytest.register_assert_rewrite("tests.support")
pytest_plugins = ["tests.support.gcs_emulator"] if (Path(__file__).parent / "support" / "gcs_emulator.py").exists() else []


def _run_engine(engine: str, home: Path) -> Iterator[KafkaSettings]:
    try:
        with using_home(home):
            command = broker_command(engine, free_port())
    except BrokerError as reason:
        pytest.skip(f"{engine} broker unavailable: {reason}")
    process = start(command, home / f"{engine}.log")
    try:
        yield KafkaSettings(f"127.0.0.1:{command.port}")
    finally:
        stop(process)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaSettings]:
    yield from _run_engine("kafka", tmp_path_factory.mktemp("kafka-home"))


@pytest.fixture(scope="session")
def tansu_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaSettings]:
    yield from _run_engine("tansu", tmp_path_factory.mktemp("tansu-home"))


@pytest.fixture(scope="session")
def broker(request: pytest.FixtureRequest) -> KafkaSettings:
    """The default engine: what `make demo` runs on this machine."""
    return request.getfixturevalue(f"{default_engine()}_broker")


@pytest.fixture(params=["kafka", "tansu"])
def any_broker(request: pytest.FixtureRequest) -> KafkaSettings:
    """Each engine in turn, for the core produce/consume paths."""
    return request.getfixturevalue(f"{request.param}_broker")


@pytest.fixture
def topic_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def prism() -> Path:
    """Prism, built once into the project's cache by ``go install`` (about 3 minutes the first time)."""
    from runners.prism import PrismUnavailable, prism_binary

    try:
        return prism_binary()
    except PrismUnavailable as reason:
        pytest.skip(str(reason))
