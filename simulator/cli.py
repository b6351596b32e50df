"""``python -m simulator``: send a simulated drone fleet's messages to Kafka, a file, or both.

Where messages go: to Kafka (--topic, keyed by drone id) by default; with --out FILE to
FILE as JSON Lines instead; with --out FILE --also_kafka to both.

Wear: each drone wears out as it flies (motors hotter, battery drain faster, vibration_g
higher) and, past its hidden threshold, sends a last message of kind "fault" and falls silent
for four simulated hours of repair; --wear_scale speeds that up. With --out the file is a
labelled history: its fault lines are the failures `python -m pipelines.train_maintenance
--input FILE.jsonl` learns to predict.

How many: --count N messages, or --duration S seconds of traffic (S × rate messages, whose
event times span S seconds; at --rate 0, as many as fit in S seconds of wall clock), or
until Ctrl-C. Event times run on a simulated clock from --start_time, --time_scale times
as fast as the traffic is sent, so --seed, --start_time and --time_scale fix every byte.

Photos: with --photos violations (the default) each violation's photo, a small JPEG, is
stored in the lake at --lake (a folder, gs://… or s3://…, as the pipelines' --output) under
images/dt=YYYY-MM-DD/<image_id>.jpg before its message is sent, so a message on the topic
always has its photo; --photos none sends the messages alone.

It ends with one JSON line on stdout: sent, violations, alerts, photos, failed, seconds, rate.
Progress goes to stderr on a terminal. Ctrl-C stops sending, waits for the broker to
acknowledge what was sent, reports, and exits 0 (Ctrl-C again gives up waiting). The
producer is idempotent with acks=all: a broker that is briefly away delays messages but
loses none. A broker restart can make it resend a batch already written (an identical
copy, which the lake keeps once). Exit codes: 0 done, 1 messages the broker never
acknowledged, 2 bad flags, no broker at the start, or a lake that does not take the photos.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import re
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any, Iterable, Iterator

import orjson

from simulator.fleet import FleetSettings, fleet_reports, on_the_wire
from transforms.contract import HUMAN_REVIEW_CODE, DroneMessage, parse_timestamp
from transforms.kafka_producer import AcknowledgedProducer, DeliveryFailed
from transforms.kafka_settings import (
    DRONE_MESSAGES,
    BrokerUnavailable,
    KafkaSettingsError,
    add_broker_timeout_argument,
    add_kafka_arguments,
    ensure_topics,
    settings_from_args,
    wait_for_broker_at_start,
)

if TYPE_CHECKING:  # Pillow is imported only when photos are taken
    from simulator.photos import Camera

EXIT_UNDELIVERED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
CHECKS_PER_SECOND = 50  # how often a paced run looks at the clock and at Ctrl-C
UNPACED_CHECK_EVERY = 500
TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
PHOTO_MODES = ("violations", "none")
PHOTOS_UNDER_WAY = 256


def say_on_stderr(text: str) -> None:
    sys.stderr.write(f"simulator: {text}\n")
    sys.stderr.flush()


class StartFailure(Exception):
    """Nothing could be sent: the message is for the user as is."""


class PhotoFailure(Exception):
    """A photo could not be stored, so its message was not sent and the run stops; the message is for the user as is."""


@dataclass
class Counts:
    sent: int = 0
    violations: int = 0
    alerts: int = 0
    photos: int = 0
    failed: int = 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drones", type=positive_int, default=50, help="fleet size (default: %(default)s)")
    parser.add_argument(
        "--rate", type=non_negative_float, default=100.0, help="fleet messages per second; 0 = as fast as possible (default: %(default)s)"
    )
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--duration", type=positive_float, help="seconds of traffic")
    amount.add_argument("--count", type=positive_int, help="number of messages")
    parser.add_argument("--seed", type=int, default=1, help="(default: %(default)s)")
    parser.add_argument("--start_time", type=rfc3339, default=None, help="event time of the first message, RFC 3339 (default: now)")
    parser.add_argument(
        "--time_scale",
        type=positive_float,
        default=1.0,
        help="simulated seconds per second of traffic, e.g. 1200 for three weeks of patrols in 25 minutes (default: %(default)s)",
    )
    parser.add_argument(
        "--wear_scale",
        type=non_negative_float,
        default=1.0,
        help="how much faster than usual drones wear out and fail (a life is 21-57 flight hours at 1; "
        "10 fails drones within hours, for a short training run; 0 never) (default: %(default)s)",
    )
    parser.add_argument(
        "--violation_ratio", type=ratio, default=0.05, help="share of patrol reports that carry a violation (default: %(default)s)"
    )
    parser.add_argument(
        "--human_ratio", type=ratio, default=0.01, help="share of violations the drone cannot classify: code 100 (default: %(default)s)"
    )
    parser.add_argument("--topic", type=topic_name, default=DRONE_MESSAGES, help="(default: %(default)s)")
    parser.add_argument(
        "--photos",
        choices=PHOTO_MODES,
        default="violations",
        help="store each violation's photo in the lake before sending its message, or none (default: %(default)s)",
    )
    parser.add_argument(
        "--lake",
        default="./lake",
        metavar="ROOT",
        help="lake root the photos go under: a folder, gs://… or s3://…, as the pipelines' --output (default: %(default)s)",
    )
    parser.add_argument("--out", default=None, metavar="FILE.jsonl", help="write JSON Lines to FILE instead of Kafka")
    parser.add_argument("--also_kafka", action="store_true", help="with --out: send to Kafka as well")
    add_broker_timeout_argument(parser)
    parser.add_argument(
        "--delivery_timeout",
        type=positive_float,
        default=300.0,
        help="seconds to keep retrying a message while the broker is away before counting it as failed (default: %(default)s)",
    )
    add_kafka_arguments(parser)
    args = parser.parse_args(argv)
    if args.also_kafka and args.out is None:
        parser.error("--also_kafka needs --out")
    return args


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive whole number")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError("must be zero or more")
    return value


def ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def topic_name(text: str) -> str:
    if not TOPIC_NAME.fullmatch(text) or text in (".", ".."):
        raise argparse.ArgumentTypeError("a Kafka topic name is 1-249 letters, digits, '.', '_' or '-'")
    return text


def rfc3339(text: str) -> datetime:
    try:
        return parse_timestamp(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be RFC 3339 with a timezone, e.g. 2026-11-28T17:00:00Z") from None


@dataclass(frozen=True)
class Budget:
    """When to stop: after ``count`` messages, after ``seconds`` of wall clock, or only on Ctrl-C."""

    count: int | None = None
    seconds: float | None = None


def budget_of(args: argparse.Namespace) -> Budget:
    if args.count is not None:
        return Budget(count=args.count)
    if args.duration is not None and args.rate > 0:
        return Budget(count=round(args.duration * args.rate))
    return Budget(seconds=args.duration)


class KafkaSink:
    """An idempotent producer that counts what the broker refused."""

    def __init__(self, args: argparse.Namespace, counts: Counts) -> None:
        from confluent_kafka import KafkaException

        settings = settings_from_args(args)
        try:
            wait_for_broker_at_start(settings, args.broker_timeout, say_on_stderr)
            ensure_topics(settings, [args.topic])
            overrides = {"message.timeout.ms": round(args.delivery_timeout * 1000), "log_level": 0}
            self._producer = AcknowledgedProducer(settings, args.topic, **overrides)
        except KafkaException as error:
            raise StartFailure(f"cannot send to topic {args.topic}: {error.args[0].str()}") from None
        self._counts = counts

    def send(self, key: bytes, value: bytes, event_ms: int) -> None:
        """Stamped with the message's event time: the stream's watermark follows record timestamps."""
        self._producer.send(key, value, timestamp=event_ms, on_delivery=self._delivered)

    def poll(self) -> None:
        self._producer.poll(0)

    def close(self) -> None:
        """Wait until the broker acknowledged every message; a second Ctrl-C gives up on the rest."""
        try:
            while self._producer.flush(5):
                waiting = self._producer.unacknowledged()
                sys.stderr.write(f"simulator: waiting for the broker to acknowledge {waiting:,} messages…\n")
        except KeyboardInterrupt:
            self._counts.failed += self._producer.unacknowledged()

    def _delivered(self, error: Any, _message: Any) -> None:
        if error is not None:
            self._counts.failed += 1


def camera_for(args: argparse.Namespace) -> Camera | None:
    """The camera that stores each violation's photo in the lake, or None with ``--photos none``."""
    if args.photos == "none":
        return None
    try:
        from simulator.photos import Camera
    except ImportError as missing:
        raise StartFailure(f"photos need {missing.name}: pip install -e '.[simulator]', or run with --photos none") from None
    return Camera(args.lake, args.seed)


def photographed(reports: Iterable[DroneMessage], camera: Camera) -> Iterator[DroneMessage]:
    """``reports`` in order, each violation only once its photo is stored: a message is never sent without its photo.

    The reports behind a violation wait with it; once :data:`PHOTOS_UNDER_WAY` photos are
    being stored, the oldest is waited for.
    """
    waiting: deque[tuple[DroneMessage, Future[str] | None]] = deque()
    under_way = 0
    for report in reports:
        photo = None if report.image_id is None else camera.take(report)
        waiting.append((report, photo))
        under_way += photo is not None
        while waiting and (waiting[0][1] is None or waiting[0][1].done() or under_way >= PHOTOS_UNDER_WAY):
            under_way -= waiting[0][1] is not None
            yield stored(*waiting.popleft(), camera.root)
    while waiting:
        yield stored(*waiting.popleft(), camera.root)


def stored(report: DroneMessage, photo: Future[str] | None, lake_root: str) -> DroneMessage:
    """``report`` once its photo (if it has one) is stored; :class:`PhotoFailure` when the store refused it."""
    if photo is not None:
        try:
            photo.result()
        except OSError as error:
            raise PhotoFailure(f"cannot store photos under {lake_root}: {error}") from None
    return report


def fleet_settings(args: argparse.Namespace) -> FleetSettings:
    start = args.start_time or datetime.now(timezone.utc)
    return FleetSettings(
        args.drones,
        args.seed,
        round(start.timestamp() * 1000),
        args.rate,
        args.violation_ratio,
        args.human_ratio,
        args.time_scale,
        args.wear_scale,
    )


def run(args: argparse.Namespace, stop: threading.Event) -> Counts:
    """Send until the budget is spent or ``stop`` is set; raise StartFailure if nothing can be sent."""
    counts = Counts()
    budget = budget_of(args)
    check_every = max(1, min(UNPACED_CHECK_EVERY, int(args.rate / CHECKS_PER_SECOND))) if args.rate else UNPACED_CHECK_EVERY
    with contextlib.ExitStack() as stack:
        kafka = KafkaSink(args, counts) if (args.out is None or args.also_kafka) else None
        if kafka is not None:
            stack.callback(kafka.close)
        out = stack.enter_context(open_out(args.out)) if args.out else None
        camera = camera_for(args)
        reports: Iterator[DroneMessage] = itertools.islice(fleet_reports(fleet_settings(args)), budget.count)
        if camera is not None:
            reports = photographed(reports, stack.enter_context(camera))
        began = time.monotonic()
        progress = Progress(counts) if sys.stderr.isatty() else None
        for report in reports:
            key, value, code, event_ms = on_the_wire(report)
            counts.photos += camera is not None and code is not None
            if out is not None:
                out.write(value + b"\n")
            if kafka is not None:
                kafka.send(key, value, event_ms)
            counts.sent += 1
            if code is not None:
                counts.violations += 1
                counts.alerts += code == HUMAN_REVIEW_CODE
            if counts.sent % check_every == 0:
                if kafka is not None:
                    kafka.poll()
                if progress is not None:
                    progress.show()
                elapsed = time.monotonic() - began
                if stop.is_set() or (budget.seconds is not None and elapsed >= budget.seconds):
                    break
                if args.rate > 0:
                    stop.wait(max(0.0, counts.sent / args.rate - elapsed))
    return counts


def open_out(path: str) -> IO[bytes]:
    try:
        return open(path, "wb")
    except OSError as error:
        raise StartFailure(f"cannot write {path}: {error.strerror}") from None


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
            sys.stderr.write(
                f"\rsent {self._counts.sent:,}  violations {self._counts.violations:,}  alerts {self._counts.alerts:,}  {rate:,.0f} msg/s "
            )


def install_stop_handlers(stop: threading.Event) -> None:
    """The first Ctrl-C (or SIGTERM) asks for a clean stop; a second one interrupts the wait."""

    def on_signal(_signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()
    install_stop_handlers(stop)
    began = time.monotonic()
    try:
        counts = run(args, stop)
    except (BrokerUnavailable, KafkaSettingsError, StartFailure, PhotoFailure, DeliveryFailed) as error:
        sys.stderr.write(f"simulator: {error}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("simulator: interrupted twice; stopped without a report\n")
        return EXIT_INTERRUPTED
    seconds = time.monotonic() - began
    report = {
        "sent": counts.sent,
        "violations": counts.violations,
        "alerts": counts.alerts,
        "photos": counts.photos,
        "failed": counts.failed,
        "seconds": round(seconds, 3),
        "rate": round(counts.sent / max(seconds, 1e-9)),
    }
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    sys.stdout.write(orjson.dumps(report).decode() + "\n")
    if counts.failed:
        sys.stderr.write(f"simulator: {counts.failed:,} of {counts.sent:,} messages were never acknowledged by the broker\n")
        return EXIT_UNDELIVERED
    return 0
