"""A producer that sends again after a crash: the lake still holds each message id once.

A drone (or the simulator) that dies before it saw its acknowledgements can only send its
messages again: that is what at-least-once transport means, and each copy is a Kafka
record of its own. The stream pipeline drops a repeated message id within a file, and
against the window's other files (``transforms.lake_writer.WriteWindowFiles``): a copy whose
message id an earlier file already holds at a smaller (partition, offset) is not
written again. Here a drain runs between the two sends, so every copy meets the
original's file and gives way.
"""

from __future__ import annotations

import sys
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from tests.faults.children import Children, holds_within
from tests.faults.restartable_broker import FaultBroker
from tests.faults.traffic import simulator_command
from tests.faults.truth import lake_message_ids
from tests.support.streams import stream_args
from transforms.kafka_settings import ensure_topics

START = datetime(2026, 11, 28, 20, 0, tzinfo=timezone.utc)
MESSAGES = 1000
RUN_DEADLINE_S = 120.0


def test_a_message_sent_again_after_a_crash_is_once_in_the_lake(fault_broker: FaultBroker, children: Children, tmp_path: Path) -> None:
    topic = f"faults-resend-{uuid.uuid4().hex[:8]}"
    names = {"messages": topic, "alerts": f"{topic}-alerts", "dead": f"{topic}-dead"}
    settings = fault_broker.settings
    ensure_topics(settings, list(names.values()), partitions={topic: 4})
    send = simulator_command(settings, topic, 7, MESSAGES, START, 2000)
    drain = [sys.executable, "-m", "pipelines.stream", *stream_args(settings, names, tmp_path / "lake")]
    for name, command in (("simulator", send), ("drain", drain), ("simulator", send), ("drain", drain)):
        child = children.start(name, command)
        assert holds_within(lambda: not child.alive, RUN_DEADLINE_S) and child.process.returncode == 0, child.tail()
    copies = Counter(message_id for message_id, _ in lake_message_ids(str(tmp_path / "lake")))
    assert len(copies) == MESSAGES
    assert max(copies.values()) == 1, f"{sum(count > 1 for count in copies.values())} message ids in the lake twice"
