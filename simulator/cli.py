"""``python -m simulator``: send a simulated fleet's messages to Kafka and/or a JSON Lines file.

Ends with one JSON line on stdout: sent, violations, alerts, seconds, rate. Progress goes
to stderr on a terminal. The producer is idempotent with acks=all: a brief broker outage
delays messages, never loses or doubles them; a message the broker finally refuses is
counted and makes the exit code 1.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Any, Iterator

import orjson

from simulator.fleet import FleetSettings, fleet_messages
from transforms.contract import HUMAN_REVIEW_CODE, parse_timestamp
from transforms.kafka_settings import (
    DRONE_MESSAGES,
    BrokerUnavailable,
    add_kafka_arguments,
    ensure_topics,
    settings_from_args,
)

EXIT_USAGE = 2
PACE_EVERY = 500


@dataclass
class Counts:
    sent: int = 0
    violations: int = 0
    alerts: int = 0
    failed: int = 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    parser.add_argument("--drones", type=positive_int, default=50)
    parser.add_argument("--rate", type=non_negative_float, default=100.0, help="fleet messages per second; 0 = flat out")
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--duration", type=non_negative_float, help="seconds of simulated traffic")
    amount.add_argument("--count", type=positive_int, help="number of messages")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start_time", type=rfc3339, default=None, help="first event time (RFC 3339); default now")
    parser.add_argument("--violation_ratio", type=ratio, default=0.05)
    parser.add_argument("--human_ratio", type=ratio, default=0.01, help="share of violations with code 100")
    parser.add_argument("--topic", default=DRONE_MESSAGES)
    parser.add_argument("--out", default=None, help="write JSON Lines to this file instead of Kafka")
    parser.add_argument("--also_kafka", action="store_true", help="with --out: send to Kafka as well")
    add_kafka_arguments(parser)
    return parser.parse_args(argv)


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive whole number")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be zero or more")
    return value


def ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def rfc3339(text: str) -> datetime:
    try:
        return parse_timestamp(text if text[-1:] in "Zz" or "+" in text[19:] or "-" in text[19:] else text + "Z")
    except ValueError:
        raise argparse.ArgumentTypeError("must be RFC 3339, e.g. 2026-11-28T17:00:00Z") from None


def message_budget(args: argparse.Namespace) -> int | None:
    """How many messages to send: --count, --duration × rate, or None for until Ctrl-C."""
    if args.count is not None:
        return args.count
    if args.duration is not None:
        return int(args.duration * (args.rate or 20_000))
    return None


class KafkaSink:
    """An idempotent producer that counts what the broker refused."""

    def __init__(self, args: argparse.Namespace, counts: Counts) -> None:
        from confluent_kafka import Producer

        settings = settings_from_args(args)
        ensure_topics(settings, [args.topic])
        self._producer = Producer(settings.producer_config(log_level=0))
        self._topic = args.topic
        self._counts = counts

    def send(self, key: bytes, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(self._topic, value, key, on_delivery=self._delivered)
                return
            except BufferError:
                self._producer.poll(0.05)

    def poll(self) -> None:
        self._producer.poll(0)

    def close(self) -> None:
        while self._producer.flush(5):
            sys.stderr.write("simulator: waiting for the broker to acknowledge the last messages…\n")

    def _delivered(self, error: Any, _message: Any) -> None:
        if error is not None:
            self._counts.failed += 1


def run(args: argparse.Namespace, stop: threading.Event) -> Counts:
    counts = Counts()
    start = args.start_time or datetime.now(timezone.utc)
    settings = FleetSettings(args.drones, args.seed, int(start.timestamp() * 1000), args.rate,
                             args.violation_ratio, args.human_ratio)
    with contextlib.ExitStack() as stack:
        out: IO[bytes] | None = stack.enter_context(open(args.out, "wb")) if args.out else None
        kafka = KafkaSink(args, counts) if (out is None or args.also_kafka) else None
        if kafka is not None:
            stack.callback(kafka.close)
        began = time.monotonic()
        progress = Progress(counts) if sys.stderr.isatty() else None
        for key, value, code in limited(fleet_messages(settings), message_budget(args)):
            if out is not None:
                out.write(value + b"\n")
            if kafka is not None:
                kafka.send(key, value)
            counts.sent += 1
            if code is not None:
                counts.violations += 1
                counts.alerts += code == HUMAN_REVIEW_CODE
            if counts.sent % PACE_EVERY == 0:
                if kafka is not None:
                    kafka.poll()
                if progress is not None:
                    progress.show()
                if stop.is_set():
                    break
                pace(began, counts.sent, args.rate, stop)
    return counts


def limited(messages: Iterator[Any], budget: int | None) -> Iterator[Any]:
    return messages if budget is None else itertools.islice(messages, budget)


def pace(began: float, sent: int, rate: float, stop: threading.Event) -> None:
    """Keep to ``rate`` messages per second of wall clock (no waiting at rate 0)."""
    if rate > 0:
        ahead = sent / rate - (time.monotonic() - began)
        if ahead > 0:
            stop.wait(ahead)


class Progress:
    def __init__(self, counts: Counts) -> None:
        self._counts = counts
        self._began = time.monotonic()
        self._shown = 0.0

    def show(self) -> None:
        now = time.monotonic()
        if now - self._shown >= 1.0:
            self._shown = now
            rate = self._counts.sent / max(now - self._began, 1e-9)
            sys.stderr.write(f"\rsent {self._counts.sent:,}  violations {self._counts.violations:,}  "
                             f"alerts {self._counts.alerts:,}  {rate:,.0f} msg/s ")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    began = time.monotonic()
    try:
        counts = run(args, stop)
    except BrokerUnavailable as error:
        sys.stderr.write(f"simulator: {error}\n")
        return EXIT_USAGE
    seconds = time.monotonic() - began
    report = {"sent": counts.sent, "violations": counts.violations, "alerts": counts.alerts,
              "failed": counts.failed, "seconds": round(seconds, 3), "rate": round(counts.sent / max(seconds, 1e-9))}
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    sys.stdout.write(orjson.dumps(report).decode() + "\n")
    if counts.failed:
        sys.stderr.write(f"simulator: the broker refused {counts.failed} messages\n")
        return 1
    return 0
