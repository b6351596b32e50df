"""Fixtures of the fault suite, and the table of what it injected and found, printed at the end.

``DRONECOP_FAULT_ROUNDS`` (default 2) sets how many rounds each scenario runs: the default
is the quick part that ``make test`` runs; ``make faults`` runs many more.
``DRONECOP_FAULT_SEED`` replays a run's random kill points (each scenario prints its seed,
and so does the table); without it every session draws a new seed.
"""

from __future__ import annotations

import os
import random
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runners.brokers import BrokerError, default_engine
from tests.faults.children import Children
from tests.faults.ledger import LEDGER, FaultLedger, OpenScenario, ScenarioRecord
from tests.faults.restartable_broker import FaultBroker, RestartableKafka

ROUNDS_VARIABLE = "DRONECOP_FAULT_ROUNDS"
SEED_VARIABLE = "DRONECOP_FAULT_SEED"
DEFAULT_ROUNDS = 2
# pytest.ini gives every test 600 s; a scenario needs about this much per round on 2 cores, with room.
TIMEOUT_BASE_S = 300
TIMEOUT_PER_ROUND_S = 90
HERE = Path(__file__).parent


def configured_rounds() -> int:
    rounds = int(os.environ.get(ROUNDS_VARIABLE) or DEFAULT_ROUNDS)
    if rounds < 1:
        raise pytest.UsageError(f"{ROUNDS_VARIABLE} must be 1 or more")
    return rounds


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Many rounds take longer than pytest.ini's 600 s per test: give this folder's tests time by their rounds."""
    timeout = pytest.mark.timeout(TIMEOUT_BASE_S + TIMEOUT_PER_ROUND_S * configured_rounds())
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(timeout)


@pytest.fixture(scope="session")
def fault_ledger(request: pytest.FixtureRequest) -> FaultLedger:
    """The session's ledger, kept in the config's stash where the terminal summary finds it."""
    if LEDGER not in request.config.stash:
        seed = int(os.environ.get(SEED_VARIABLE) or secrets.randbits(32))
        request.config.stash[LEDGER] = FaultLedger(seed, configured_rounds())
    return request.config.stash[LEDGER]


@pytest.fixture(scope="session")
def fault_rounds(fault_ledger: FaultLedger) -> int:
    return fault_ledger.rounds


@pytest.fixture
def scenario(fault_ledger: FaultLedger) -> Iterator[OpenScenario]:
    """Open a scenario's record and its own random generator, derived from the session seed and its name.

    Each scenario draws from its own generator, so running one scenario alone with a
    seed replays the same kill points as in the full run.
    """
    opened: list[ScenarioRecord] = []

    def open_scenario(name: str) -> tuple[ScenarioRecord, random.Random]:
        record = fault_ledger.open(name, fault_ledger.seed)
        opened.append(record)
        return record, random.Random(f"{fault_ledger.seed}/{name}")

    yield open_scenario
    for record in opened:
        record.seconds = time.monotonic() - record.started


@pytest.fixture(scope="session")
def fault_broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultBroker]:
    """Apache Kafka of our own, restartable, where Java and Maven are present; else the session's Tansu."""
    if default_engine() != "kafka":
        yield FaultBroker(request.getfixturevalue("tansu_broker"), "tansu")
        return
    try:
        broker = RestartableKafka(tmp_path_factory.mktemp("fault-kafka"))
    except BrokerError as reason:
        pytest.skip(f"kafka broker unavailable: {reason}")
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    """The test's child processes; whatever is still running at the end is killed by its pid."""
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    started = Children(log_dir)
    try:
        yield started
    finally:
        started.kill_all()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    ledger = config.stash.get(LEDGER, None)
    if ledger is None or not ledger.scenarios:
        return
    terminalreporter.write_sep("=", "fault injection: lost and duplicated records per scenario")
    for line in ledger.table():
        terminalreporter.write_line(line)
