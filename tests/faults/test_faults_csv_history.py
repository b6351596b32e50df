"""Fault scenario: the NYPD history (CSV loader → ``nypd-history`` → history pipeline → lake) under SIGKILL.

One synthetic file with bad rows is loaded over all the rounds: in each, the loader is
SIGKILLed once its checkpoint passed a random line or after a random delay, the history
pipeline in ``--follow`` mode after a random delay, each of them again at the round's end
or not (then it runs on through the broker restart), and the test puts records on the
topic that are no loader batch. Between rounds the broker restarts under whatever runs.
Then the loader runs to completion, a clean follower drains the rest, and the lake must
hold every valid summons number once, the rejects file every bad row once, and the dead
letter every foreign record once with its reason.
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from pathlib import Path

from csv_ingest.checkpoint import load_checkpoint
from tests.faults.children import POLL_S, Child, Children, Role, holds_within
from tests.faults.ledger import OpenScenario, ScenarioRecord, tally
from tests.faults.restartable_broker import FaultBroker
from tests.faults.traffic import junk_history
from tests.faults.truth import caught_up, lake_dead_letters, lake_table, partition_ends
from tests.support.csv_files import checkpoint_line, loader, rejects_of, write_with_rejects
from tests.support.kafka_io import produce_all, read_all
from transforms import lake
from transforms.history_contract import BadHistoryBatch, decode_history_batch
from transforms.kafka_settings import ensure_topics

ROWS_PER_ROUND = 8_000
BAD_ROW_EVERY = 397
LOADER_RATE = 5_000  # rows per second: a round's share of the file takes about a round
KILL_DELAY_S = (0.2, 5.0)
LOADER_STARTUP_S = 0.5
ROUND_SECONDS = (1.5, 5.0)
HISTORY_PARTITIONS = 4
FINISH_S = 180.0


class HistoryStack:
    """The loader and the history follower of one scenario, each started again whenever it is found gone."""

    def __init__(self, broker: FaultBroker, work: Path, children: Children, record: ScenarioRecord, rounds: int):
        self.broker = broker
        self.topic = f"faults-history-{uuid.uuid4().hex[:8]}"
        self.group = f"{self.topic}-history"
        self.csv = work / "pvi_faults.csv"
        self.rows = ROWS_PER_ROUND * rounds
        self.valid, self.bad_lines = write_with_rejects(self.csv, self.rows, every=BAD_ROW_EVERY)
        self.checkpoint = work / "pvi_faults.csv.ckpt"
        self.rejects = work / "pvi_faults.csv.rejects.csv"
        self.lake = work / "lake"
        self.children = children
        self.loader = Role("loader", lambda: children.start("loader", self.loader_command()), record)
        self.follower = Role("history follower", self._start_follower, record)

    def loader_command(self) -> list[str]:
        return loader(
            self.csv,
            self.broker.settings,
            self.topic,
            f"--checkpoint={self.checkpoint}",
            f"--rejects={self.rejects}",
            f"--rate={LOADER_RATE}",
        )

    def ensure_loader(self) -> Child | None:
        """The running loader, a new one where the last was killed, or None once the file is loaded."""
        saved = load_checkpoint(self.checkpoint)
        return None if saved is not None and saved.complete else self.loader.ensure()

    def _start_follower(self) -> Child:
        return self.children.start(
            "history",
            [
                sys.executable,
                "-m",
                "pipelines.history",
                "--follow",
                "--poll_seconds=0.2",
                f"--topic={self.topic}",
                f"--dead_letter_topic={self.topic}-dead",
                f"--group_id={self.group}",
                f"--bootstrap_servers={self.broker.settings.bootstrap_servers}",
                f"--output={self.lake}",
            ],
        )


def test_the_history_keeps_every_summons_once_through_loader_and_pipeline_kills(
    fault_broker: FaultBroker, fault_rounds: int, scenario: OpenScenario, children: Children, tmp_path: Path
) -> None:
    record, rng = scenario("csv history")
    stack = HistoryStack(fault_broker, tmp_path, children, record, fault_rounds)
    ensure_topics(fault_broker.settings, [stack.topic], partitions={stack.topic: HISTORY_PARTITIONS})
    for round_index in range(fault_rounds):
        run_round(record, rng, stack, round_index, fault_rounds - round_index)
        for role in (stack.loader, stack.follower):
            if rng.random() < 0.5:
                role.kill("at the end of the round")
        if fault_broker.restartable and round_index < fault_rounds - 1:
            running = [role.name for role in (stack.loader, stack.follower) if role.current and role.current.alive]
            under = f" under the running {' and '.join(running)}" if running else ""
            how = fault_broker.restart(hard=rng.random() < 0.5)
            record.fault("broker", f"restart the Kafka broker ({how}){under}")
    check(record, stack)
    assert record.clean, record.verdict()


def run_round(record: ScenarioRecord, rng: random.Random, stack: HistoryStack, round_index: int, rounds_left: int) -> None:
    """One round: the loader and the follower killed at random points, junk records on the topic.

    The loader dies once its checkpoint passed a random line of this round's share of what
    is left (so the load lasts through every round), or after a random delay, wherever it
    is then (between an acknowledgement and its checkpoint, say).
    """
    record.rounds += 1
    stack.follower.ensure()
    produce_all(stack.broker.settings, stack.topic, junk_history(f"r{round_index}", rng.randint(1, 2)))
    at = checkpoint_line(stack.checkpoint)
    share = max(1, (stack.rows - at) // rounds_left)
    trigger = rng.choice(("line", "delay"))
    kill_line = at + rng.randint(1, share)
    kill_loader_at = rng.uniform(0.0, LOADER_STARTUP_S + share / LOADER_RATE)
    kill_follower_at = rng.uniform(*KILL_DELAY_S)
    round_seconds = rng.uniform(*ROUND_SECONDS)
    running = stack.ensure_loader()
    began = time.monotonic()
    while time.monotonic() - began < round_seconds:
        elapsed = time.monotonic() - began
        if running is not None and running.alive:
            line = checkpoint_line(stack.checkpoint)
            if (trigger == "line" and line >= kill_line) or (trigger == "delay" and elapsed >= kill_loader_at):
                stack.loader.kill(f"at checkpoint line {line:,} after {elapsed:.2f} s")
        if elapsed >= kill_follower_at:
            kill_follower_at = float("inf")
            stack.follower.kill(f"after {elapsed:.2f} s")
        stack.follower.ensure()
        time.sleep(POLL_S)


def check(record: ScenarioRecord, stack: HistoryStack) -> None:
    """Finish the load, let a clean follower drain the topic, then compare lake, rejects and dead letters."""
    settings = stack.broker.settings
    last = stack.loader.current
    if last is not None and not holds_within(lambda: not last.alive, FINISH_S) and last.kill():
        record.crash(f"the loader still ran {FINISH_S:.0f} s after the last round\n{last.tail()}")
    final = stack.children.start("loader", stack.loader_command())
    if not holds_within(lambda: not final.alive, FINISH_S) and final.kill():
        record.crash(f"the last loader run did not finish within {FINISH_S:.0f} s\n{final.tail()}")
    elif final.process.returncode != 0:
        record.crash(f"the last loader run exited with {final.process.returncode}\n{final.tail()}")
    records = read_all(settings, stack.topic)
    ends = partition_ends(settings, stack.topic, records)
    follower = stack.follower.ensure()
    holds_within(lambda: not follower.alive or caught_up(settings, stack.group, stack.topic, ends), FINISH_S)
    if not follower.alive or not caught_up(settings, stack.group, stack.topic, ends):
        record.crash(f"the follower did not drain the topic within {FINISH_S:.0f} s\n{follower.tail()}")
    if follower.alive and follower.interrupt() != 0:
        record.crash(f"the follower exited with {follower.process.returncode} on SIGINT\n{follower.tail()}")
    record.tallies += [
        tally("lake summons", dict.fromkeys(stack.valid), lake_summons(stack.lake)),
        tally(
            "rejects",
            dict.fromkeys(stack.bad_lines, "summons_number"),
            [(line, reason.partition(":")[0]) for line, reason in rejects_of(stack.rejects)],
        ),
        tally("dead letters", foreign_records(records), lake_dead_letters(str(stack.lake), stack.topic)),
    ]


def lake_summons(root: Path) -> list[tuple[int, None]]:
    return [(row["summons_number"], None) for row in lake_table(str(root), lake.HISTORY, ["summons_number"])]


def foreign_records(records: list) -> dict[tuple[int, int], str]:
    """Records on the history topic that are no loader batch, with the reason the pipeline must give them."""
    expected = {}
    for item in records:
        try:
            decode_history_batch(item.value)
        except BadHistoryBatch as refusal:
            expected[(item.partition, item.offset)] = str(refusal).partition(": ")[0]
    return expected
