"""Fault scenario: the lake on ``gs://`` fails or vanishes for a while during a drain, then comes back.

Each round puts a new fleet's traffic and some invalid messages on the topic and starts a
drain into a lake on gcp-storage-emulator; after a random delay the storage goes away
(refused and cut, answering 503, or holding every request) for a random while and then
returns. A drain that gave up is run again, as an operator or a scheduler would, until
one succeeds. At the end the bucket must hold every valid message of the topic once and
every invalid one once in the dead letter, with its reason.
"""

from __future__ import annotations

import random
import sys
import time
from datetime import datetime, timedelta, timezone
from itertools import islice
from pathlib import Path

from simulator.fleet import fleet_messages
from tests.faults.children import POLL_S, Children, holds_within
from tests.faults.ledger import OpenScenario, ScenarioRecord, tally
from tests.faults.restartable_broker import FaultBroker
from tests.faults.storage_outage import BUCKET, OUTAGES, StorageRelay
from tests.faults.traffic import fleet, invalid_messages, stream_topics
from tests.faults.truth import drone_truth, lake_dead_letters, lake_message_ids
from tests.support.gcs_emulator import storage_emulator
from tests.support.kafka_io import produce_all
from tests.support.processes import child_env
from tests.support.streams import stream_args

FIRST_EVENT = datetime(2026, 11, 28, 17, 0, tzinfo=timezone.utc)
# Two messages a second of event time: a round's traffic spans several five-minute windows, a drain writes many files.
EVENT_RATE = 2.0
ROUND_EVENT_STEP = timedelta(hours=1)
MESSAGES_PER_ROUND = (1000, 3000)
# A drain of a round's traffic makes 60 to 150 storage requests (one connection each: the emulator speaks HTTP/1.0).
OUTAGE_AFTER_REQUESTS = (0, 60)
OUTAGE_FOR_S = (0.5, 4.0)
DRAIN_DEADLINE_S = 300.0
MAX_DRAINS_PER_ROUND = 4


def test_a_drain_keeps_every_message_once_when_the_lake_storage_fails_or_vanishes(
    fault_broker: FaultBroker, fault_rounds: int, scenario: OpenScenario, children: Children
) -> None:
    import gcsfs

    record, rng = scenario("gcs outage")
    settings = fault_broker.settings
    names = stream_topics(settings, "faults-gcs")
    topic = names["messages"]
    lake_root = f"gs://{BUCKET}/{topic}"
    with storage_emulator(BUCKET) as emulator_url:
        relay = StorageRelay(int(emulator_url.rsplit(":", 1)[1]))
        try:
            command = [sys.executable, "-m", "pipelines.stream", *stream_args(settings, names, lake_root)]
            env = {**child_env(), "STORAGE_EMULATOR_HOST": relay.url}
            for round_index in range(fault_rounds):
                produce_all(settings, topic, round_traffic(rng, round_index))
                drain_through_an_outage(record, rng, children, relay, command, env)
        finally:
            relay.close()
        storage = gcsfs.GCSFileSystem(token="anon", endpoint_url=emulator_url, skip_instance_cache=True)
        truth = drone_truth(settings, topic)
        root = f"{BUCKET}/{topic}"
        record.tallies += [
            tally("lake messages", truth.valid, lake_message_ids(root, storage)),
            tally("dead letters", truth.invalid, lake_dead_letters(root, topic, storage)),
        ]
        leftovers = storage.find(f"{root}/_tmp")
        if leftovers:
            record.note(f"{len(leftovers)} temporary objects left in _tmp/ by interrupted renames (outside the lake)")
    assert record.clean, record.verdict()


def round_traffic(rng: random.Random, round_index: int) -> list[tuple]:
    """A new fleet's messages with invalid ones mixed in at random places."""
    messages = fleet_messages(fleet(rng.randrange(2**31), FIRST_EVENT + ROUND_EVENT_STEP * round_index, EVENT_RATE))
    records = [(key, value, event_ms) for key, value, _code, event_ms in islice(messages, rng.randint(*MESSAGES_PER_ROUND))]
    for invalid in invalid_messages(f"gcs-r{round_index}", rng.randint(1, 8)):
        records.insert(rng.randrange(len(records) + 1), invalid)
    return records


def drain_through_an_outage(
    record: ScenarioRecord, rng: random.Random, children: Children, relay: StorageRelay, command: list[str], env: dict[str, str]
) -> None:
    """One round: a drain, the storage down for a while in the middle of it, and drains again until one succeeds."""
    record.rounds += 1
    kind, for_s = rng.choice(OUTAGES), rng.uniform(*OUTAGE_FOR_S)
    before, after = relay.connections, relay.connections + rng.randint(*OUTAGE_AFTER_REQUESTS)
    drain = children.start("drain", command, env)
    began = time.monotonic()
    while drain.alive and relay.connections < after:
        time.sleep(POLL_S)
    if drain.alive:
        relay.outage(kind)
        record.fault(
            "storage",
            f"storage {kind} {time.monotonic() - began:.2f} s into the drain "
            f"(after its {relay.connections - before} requests), for {for_s:.2f} s",
        )
        time.sleep(for_s)  # how long the storage stays away: the fault itself, not a wait for anything
        relay.restore()
    attempts, where = 1, f"round {record.rounds}"
    while True:
        if not holds_within(lambda: not drain.alive, DRAIN_DEADLINE_S):
            drain.kill()
            record.crash(f"{where}: a drain did not end {DRAIN_DEADLINE_S:.0f} s after the storage was back\n{drain.tail()}")
        if drain.process.returncode == 0:
            return
        if attempts == MAX_DRAINS_PER_ROUND:
            record.crash(f"{where}: {attempts} drains in a row failed after the storage came back\n{drain.tail()}")
            return
        status, said = drain.process.returncode, last_line(drain.log)
        record.note(f"{where}: drain {attempts} exited with {status}: {said}; draining again")
        drain = children.start("drain", command, env)
        attempts += 1


def last_line(log: Path) -> str:
    lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"
