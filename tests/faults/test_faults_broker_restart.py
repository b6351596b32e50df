"""Fault scenario: the Kafka broker restarts (SIGKILL or SIGTERM) under a running simulator.

The other scenarios take what the broker holds as their ground truth, and restart it
between rounds; this one restarts it in the middle of a send, after a random number of
records arrived. The simulator's idempotent, acks=all producer must ride it out: it ends
with nothing unacknowledged, and the topic holds every message it sent. It may hold a few
twice: when a restart makes librdkafka bump its producer epoch, batches the broker had
already written are sent again under the new epoch, which the broker cannot tell from
new ones (confluentinc/librdkafka#4953; only transactions avoid it). Such a copy is the
same record byte for byte, and the lake keeps one (``test_faults_resend``); a copy that
differs would be two messages under one id, and fails the scenario.

Also here: the regression test of what the drone scenario found, a ``--follow`` pipeline
that died when it planned its next drain just after the broker restarted under it.
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone
from itertools import islice

import orjson
import pytest
from confluent_kafka import KafkaException

from simulator.fleet import fleet_reports
from tests.faults.children import Child, Children, holds_within, wait_for
from tests.faults.ledger import OpenScenario, ScenarioRecord, tally
from tests.faults.restartable_broker import FaultBroker
from tests.faults.traffic import fleet, simulator_command
from tests.faults.truth import TopicSize
from tests.support.kafka_io import produce_all, read_all
from transforms.contract import DroneMessage, parse_message
from transforms.kafka_settings import ensure_topics
from transforms.kafka_source import plan_spans

FIRST_EVENT = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
ROUND_EVENT_STEP = timedelta(hours=1)
SIMULATOR_RATE = 1500
MESSAGES_PER_ROUND = (2000, 4000)
# The simulator retries a message for 300 s while the broker is away; a restart takes at most about 15 s.
SEND_DEADLINE_S = 120.0
NO_JAVA = "java or mvn missing: no scenario restarts the broker (Tansu keeps no state to restart with)"
PLANNED_RESTARTS = 3


def test_the_simulator_loses_nothing_when_the_broker_restarts_under_it(
    fault_broker: FaultBroker, fault_rounds: int, scenario: OpenScenario, children: Children
) -> None:
    if not fault_broker.restartable:
        pytest.skip(NO_JAVA)
    record, rng = scenario("broker restart")
    topic = f"faults-restart-{uuid.uuid4().hex[:8]}"
    settings = fault_broker.settings
    ensure_topics(settings, [topic], partitions={topic: 4})
    sent: dict[str, None] = {}
    for round_index in range(fault_rounds):
        record.rounds += 1
        seed, count = rng.randrange(2**31), rng.randint(*MESSAGES_PER_ROUND)
        start = FIRST_EVENT + ROUND_EVENT_STEP * round_index
        size = TopicSize(settings, topic)
        restart_at = size() + rng.randint(1, count)
        simulator = children.start("simulator", simulator_command(settings, topic, seed, count, start, SIMULATOR_RATE))
        try:
            wait_for(lambda: size() >= restart_at or not simulator.alive, SEND_DEADLINE_S, "records to restart after")
        finally:
            size.close()
        if simulator.alive:
            how = fault_broker.restart(hard=rng.random() < 0.5)
            record.fault("broker", f"restart the Kafka broker ({how}) after {restart_at:,} records, under the simulator")
        reports = islice(fleet_reports(fleet(seed, start, SIMULATOR_RATE)), finished_send(record, simulator))
        sent.update(dict.fromkeys(report.message_id for report in reports))
    records = [item.value for item in read_all(settings, topic)]
    distinct = set(records)
    if len(distinct) < len(records):
        record.note(f"{len(records) - len(distinct):,} records are byte-identical copies of others (resent batches)")
    messages = [parse_message(value) for value in distinct]
    found = [(message.message_id if isinstance(message, DroneMessage) else message, None) for message in messages]
    record.tallies.append(tally("acknowledged messages", sent, found))
    assert record.clean, record.verdict()


def finished_send(record: ScenarioRecord, simulator: Child) -> int:
    """How many messages the simulator sent, from its report; a note if it did not end cleanly."""
    if not holds_within(lambda: not simulator.alive, SEND_DEADLINE_S):
        simulator.kill()
        record.crash(f"the simulator did not finish within {SEND_DEADLINE_S:.0f} s of the restart\n{simulator.tail()}")
        return 0
    reports = [line for line in simulator.log.read_text().splitlines() if line.startswith("{")]
    if simulator.process.returncode != 0 or not reports:
        record.crash(f"the simulator exited with {simulator.process.returncode}\n{simulator.tail()}")
    report = orjson.loads(reports[-1]) if reports else {"sent": 0, "failed": 0}
    if report["failed"]:
        record.crash(f"the simulator counted {report['failed']} messages the broker never acknowledged")
    return report["sent"]


def test_a_drain_planned_just_after_a_broker_restart_waits_for_the_partition_leaders(fault_broker: FaultBroker) -> None:
    """Plan drains without pause while the broker restarts (gracefully, as quick as it gets): none may fail.

    Just after a restart librdkafka does not know the partitions' leaders for a moment,
    and its watermark query failed at once with "unknown partition" or "not leader": three
    restarts out of four killed a planner running through them, and the drone scenario's
    ``--follow`` pipeline with it. ``transforms.kafka_source.watermark_offsets`` now asks
    again until the leaders are known.
    """
    if not fault_broker.restartable:
        pytest.skip(NO_JAVA)
    topic = f"faults-plan-{uuid.uuid4().hex[:8]}"
    settings = fault_broker.settings
    ensure_topics(settings, [topic], partitions={topic: 4})
    produce_all(settings, topic, [(f"key-{index}".encode(), b"{}") for index in range(100)])
    failures: list[str] = []
    plans_since_restart: list[int] = []
    stop = threading.Event()

    def plan_again_and_again() -> None:
        while not stop.is_set():
            try:
                plan_spans(settings, topic, f"{topic}-group")
                plans_since_restart.append(1)
            except KafkaException as error:
                failures.append(error.args[0].str())

    planner = threading.Thread(target=plan_again_and_again, daemon=True)
    planner.start()
    try:
        for _ in range(PLANNED_RESTARTS):
            fault_broker.restart(hard=False)
            plans_since_restart.clear()
            wait_for(lambda: len(plans_since_restart) >= 3 or failures, SEND_DEADLINE_S, "plans after the restart")
    finally:
        stop.set()
        planner.join(SEND_DEADLINE_S)
    assert not failures, failures
