"""Fault scenario: the drone stream end to end (simulator → stream pipeline → lake and alert desk) under SIGKILL.

Round after round a simulator sends a new fleet's traffic, and the test some invalid
messages and some records that are no alerts, while the simulator (after a random number
of records reached the topic), the stream pipeline and the alert desk (each after a
random delay) are SIGKILLed and started again; at the end of a round the pipeline is
killed once more, or not, and the broker restarts under whatever runs. The pipeline runs
in ``--follow`` mode, or ``--streaming`` on Prism (killed with its Prism, as a crashed
machine would be). Then the pipeline catches up — a follower drains what is left; a
streaming job, sent one message an hour later that closes every window, lands every
message before it and is stopped, and one drain takes that last message — the desk
catches up, and the lake, the dead letters and the desk are compared with what the
topics hold.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.faults.children import POLL_S, Child, Children, Role, holds_within
from tests.faults.ledger import OpenScenario, ScenarioRecord, tally
from tests.faults.restartable_broker import FaultBroker
from tests.faults.traffic import invalid_messages, junk_alert_reason, junk_alerts, simulator_command, stream_topics
from tests.faults.truth import TopicSize, caught_up, drone_truth, lake_dead_letters, lake_message_ids, partition_ends
from tests.support.alert_desk import Desk, start_desk
from tests.support.kafka_io import ReadRecord, produce_all, read_all
from tests.support.streams import stream_args
from transforms.contract import DroneMessage, encode_message
from transforms.geo import BOROUGH_NAMES

FIRST_EVENT = datetime(2026, 11, 28, 17, 0, tzinfo=timezone.utc)
# Each round's fleet starts after the last one's last event: nothing is late, every valid message belongs in the lake.
ROUND_EVENT_STEP = timedelta(minutes=30)
SIMULATOR_RATE = 2500
MESSAGES_PER_ROUND = (1000, 3000)
KILL_DELAY_S = (0.2, 5.0)
ROUND_SECONDS = (2.0, 6.0)
CATCH_UP_S = 180.0
UNKNOWN_BOROUGH = "unknown"
STREAMING_FLAGS = ["--streaming", "--window_minutes=1"]


class DroneStack:
    """The stream follower and the alert desk of one scenario, each started again whenever it is found gone."""

    def __init__(self, broker: FaultBroker, names: dict[str, str], work: Path, children: Children, record: ScenarioRecord, mode: list[str]):
        self.broker = broker
        self.mode = mode
        self.names = names
        self.lake = work / "lake"
        self.db = work / "desk" / "alerts.db"
        self.db.parent.mkdir()
        self.group = f"{names['messages']}-group"
        self.children = children
        self.follower = Role(f"stream pipeline {mode[0]}", self._start_follower, record)
        self.desk_role = Role("alert desk", self._start_desk, record)
        self.desk: Desk | None = None

    def ensure_desk(self) -> Desk:
        self.desk_role.ensure()
        assert self.desk is not None
        return self.desk

    @property
    def streaming(self) -> bool:
        return self.mode[0] == "--streaming"

    def _start_follower(self) -> Child:
        return self.children.start("stream", self.command(*self.mode))

    def command(self, *mode: str) -> list[str]:
        drain_flags = stream_args(self.broker.settings, self.names, self.lake)[:-1]
        return [sys.executable, "-m", "pipelines.stream", *drain_flags, *mode]

    def _start_desk(self) -> Child:
        if self.desk is not None:
            self.desk.http.close()
        self.desk = start_desk(self.broker.settings, self.db, self.names["alerts"], self.names["messages"])
        return self.children.adopt("desk", self.desk.process, self.desk.log_path)


@pytest.fixture(params=["follow", "streaming"])
def pipeline_mode(request: pytest.FixtureRequest) -> list[str]:
    """The stream pipeline's flags: repeated drains, or a real stream on Prism."""
    if request.param == "follow":
        return ["--follow", "--poll_seconds=0.2"]
    return [*STREAMING_FLAGS, f"--prism_location={request.getfixturevalue('prism')}"]


def test_the_drone_stream_keeps_every_message_once_through_kills_and_broker_restarts(
    fault_broker: FaultBroker,
    fault_rounds: int,
    scenario: OpenScenario,
    children: Children,
    tmp_path: Path,
    pipeline_mode: list[str],
) -> None:
    record, rng = scenario(f"drone stream {pipeline_mode[0]}")
    settings = fault_broker.settings
    names = stream_topics(settings, "faults-drone")
    stack = DroneStack(fault_broker, names, tmp_path, children, record, pipeline_mode)
    try:
        for round_index in range(fault_rounds):
            run_round(record, rng, stack, round_index)
            if rng.random() < 0.5:
                stack.follower.kill("at the end of the round")
            if fault_broker.restartable and round_index < fault_rounds - 1:
                running = "desk and follower" if stack.follower.current.alive else "desk"
                how = fault_broker.restart(hard=rng.random() < 0.5)
                record.fault("broker", f"restart the Kafka broker ({how}) under the running {running}")
        check(record, stack)
    finally:
        if stack.desk is not None:
            stack.desk.stop()
    assert record.clean, record.verdict()


def run_round(record: ScenarioRecord, rng: random.Random, stack: DroneStack, round_index: int) -> None:
    """One round: traffic and invalid records in, the simulator, the follower and the desk each killed at random."""
    record.rounds += 1
    settings, names = stack.broker.settings, stack.names
    stack.follower.ensure()
    stack.ensure_desk()
    tag = f"r{round_index}"
    start = FIRST_EVENT + ROUND_EVENT_STEP * round_index
    produce_all(settings, names["messages"], stamped(invalid_messages(f"{tag}a", rng.randint(1, 6)), start))
    produce_all(settings, names["alerts"], junk_alerts(tag, rng.randint(1, 2)))
    size = TopicSize(settings, names["messages"])
    try:
        count = rng.randint(*MESSAGES_PER_ROUND)
        kill_simulator_at = size() + rng.randint(1, count) if rng.random() < 0.8 else None
        kills = {stack.follower: rng.uniform(*KILL_DELAY_S), stack.desk_role: rng.uniform(*KILL_DELAY_S)}
        round_seconds = rng.uniform(*ROUND_SECONDS)
        command = simulator_command(settings, names["messages"], rng.randrange(2**31), count, start, SIMULATOR_RATE)
        simulator = stack.children.start("simulator", command)
        began = time.monotonic()
        while simulator.alive or time.monotonic() - began < round_seconds:
            elapsed = time.monotonic() - began
            if kill_simulator_at is not None and simulator.alive and size() >= kill_simulator_at and simulator.kill():
                record.fault("simulator", f"SIGKILL simulator after {kill_simulator_at:,} records in the topic")
            for role, at in list(kills.items()):
                if elapsed >= at:
                    del kills[role]
                    role.kill(f"after {elapsed:.2f} s")
            stack.follower.ensure()
            stack.ensure_desk()
            time.sleep(POLL_S)
    finally:
        size.close()
    produce_all(settings, names["messages"], stamped(invalid_messages(f"{tag}b", rng.randint(0, 6)), start))


def stamped(records: list[tuple[bytes, bytes]], moment: datetime) -> list[tuple[bytes, bytes, int]]:
    """Records stamped with an event time of their round, as every producer of drone traffic stamps them."""
    return [(key, value, int(moment.timestamp() * 1000)) for key, value in records]


def check(record: ScenarioRecord, stack: DroneStack) -> None:
    """Let a clean pipeline and the desk catch up, then compare lake, dead letters and desk with the topics."""
    settings, names = stack.broker.settings, stack.names
    if stack.streaming:
        catch_up_streaming(record, stack)
    truth = drone_truth(settings, names["messages"])
    if truth.copies_in_topic:
        record.note(f"the messages topic holds {truth.copies_in_topic} extra copies of message ids: a producer doubled")
    follower = final_drain(stack) if stack.streaming else stack.follower.ensure()

    def drained() -> bool:
        return caught_up(settings, stack.group, names["messages"], truth.ends)

    holds_within(lambda: not follower.alive or drained(), CATCH_UP_S)
    if stack.streaming and (follower.alive or follower.process.returncode != 0 or not drained()):
        record.crash(f"the last drain exited with {follower.process.poll()} without taking the rest\n{follower.tail()}")
    elif not stack.streaming and not follower.alive:
        record.crash(f"the follower exited with {follower.process.returncode} draining the rest\n{follower.tail()}")
    elif not drained():
        record.crash(f"the follower did not drain the topic within {CATCH_UP_S:.0f} s\n{follower.tail()}")
    if follower.alive and follower.interrupt() != 0:
        record.crash(f"the follower exited with {follower.process.returncode} on SIGINT\n{follower.tail()}")
    desk = stack.ensure_desk()
    alerts_topic = read_all(settings, names["alerts"])
    alerts_end = partition_ends(settings, names["alerts"], alerts_topic)
    if not holds_within(lambda: desk_read_to(desk, alerts_end), CATCH_UP_S):
        record.crash(f"the desk did not read the alerts topic to {alerts_end}: {desk.status()}\n{desk.log()[-3000:]}")
    record.tallies += [
        tally("lake messages", truth.valid, lake_message_ids(str(stack.lake))),
        tally("dead letters", truth.invalid, lake_dead_letters(str(stack.lake), names["messages"])),
        tally("desk alerts", truth.alerts, desk_alert_ids(desk)),
        tally("refused alerts", refusals_due(alerts_topic), desk_refusals(stack.db, names["alerts"])),
    ]


def catch_up_streaming(record: ScenarioRecord, stack: DroneStack) -> None:
    """A message an hour later closes every window: the running job must land everything before it, then stop."""
    settings, names = stack.broker.settings, stack.names
    before = drone_truth(settings, names["messages"])
    closing = DroneMessage("faults-closing", "drone-closing", FIRST_EVENT + timedelta(days=1), 40.75, -73.99)
    produce_all(settings, names["messages"], [(b"drone-closing", encode_message(closing), closing.event_ms)])
    job = stack.follower.ensure()
    landed = holds_within(lambda: not job.alive or set(before.valid) <= {i for i, _ in lake_message_ids(str(stack.lake))}, CATCH_UP_S)
    if not landed or not job.alive:
        record.crash(f"the streaming job did not land every message within {CATCH_UP_S:.0f} s\n{job.tail()}")
    elif job.interrupt() != 130:
        record.crash(f"the streaming job exited with {job.process.returncode} on SIGINT, not 130\n{job.tail()}")


def final_drain(stack: DroneStack) -> Child:
    """One drain after the streaming job stopped: it takes what the job had not committed (the closing message)."""
    drain = stack.children.start("drain", stack.command("--drain"))
    with contextlib.suppress(subprocess.TimeoutExpired):
        drain.process.wait(CATCH_UP_S)
    return drain


def desk_read_to(desk: Desk, ends: dict[int, int]) -> bool:
    """Whether the desk kept every partition of the alerts topic up to ``ends``."""
    kept = {int(partition): offset for partition, offset in desk.status()["next_offsets"].items()}
    return all(kept.get(partition, 0) >= end for partition, end in ends.items())


def desk_alert_ids(desk: Desk) -> list[tuple[str, None]]:
    """Every alert the desk lists, one borough at a time so that no listing is cut at the page limit."""
    found = []
    for borough in (*BOROUGH_NAMES, UNKNOWN_BOROUGH):
        listing = desk.alerts(borough=borough)
        assert listing["total"] == len(listing["alerts"]), f"{listing['total']} alerts in {borough}: more than a page"
        found += [(alert["alert_id"], None) for alert in listing["alerts"]]
    return found


def refusals_due(alerts_topic: list[ReadRecord]) -> dict[tuple[int, int], str]:
    """The alerts-topic records that are no alert (the junk this test put there), by position, with the
    reason the desk must refuse each for; every other record on the topic is an alert the pipeline raised."""
    due = ((item.partition, item.offset, junk_alert_reason(item.key)) for item in alerts_topic)
    return {(partition, offset): reason for partition, offset, reason in due if reason is not None}


def desk_refusals(db: Path, topic: str) -> list[tuple[tuple[int, int], str]]:
    """The records the desk refused, read from its own database: the API shows only their count."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        rows = connection.execute('SELECT partition, "offset", reason FROM refused_alerts WHERE topic = ?', (topic,))
        return [((partition, offset), reason) for partition, offset, reason in rows]
