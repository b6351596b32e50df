"""Load one NYPD history CSV into Kafka, a batch of records per message, resumable after any crash.

The file is streamed in batches (:mod:`csv_ingest.batches`), each record checked and
typed by :mod:`csv_ingest.records`, and every ``batch_lines`` valid records of a region
of the file become one message (:mod:`transforms.history_contract`) keyed
``<fingerprint>:<first line>``. Worker processes do that reading and encoding
(:mod:`csv_ingest.workers`); this one sends. Batch boundaries depend only on the file
and ``batch_lines``, so a batch sent twice — once before a crash, once after — has the
same key and the same bytes, and downstream keeps one copy.

Nothing is skipped: the checkpoint moves only to the end of a batch that the broker
acknowledged *and* whose predecessors were all acknowledged (acks of different
partitions arrive out of order), and a run resumes by seeking to that byte offset.
Rejected records go to the rejects file, which is cut back to its checkpointed length
on resume so no reject is written twice. The producer retries for as long as the broker
is away (``message.timeout.ms=0``) and holds at most :data:`MAX_IN_FLIGHT_BYTES`
unacknowledged, so an outage pauses the load instead of failing it or filling memory; a
producer that fails for good, or gets no acknowledgement for :data:`STALL_RESTART_S`,
is replaced by a new one that resends from the last acknowledged batch.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import orjson
from confluent_kafka import KafkaError, KafkaException

from csv_ingest.batches import REGION_BYTES
from csv_ingest.checkpoint import (
    Checkpoint,
    CheckpointError,
    Counters,
    fingerprint,
    load_checkpoint,
    save_checkpoint,
)
from csv_ingest.records import (
    DateWindow,
    Layout,
    Rejected,
    UnknownHeader,
    iso_date,
    layout_for_header,
    likely_fiscal_year,
)
from csv_ingest.source import Position, RecordReader, read_header
from csv_ingest.workers import FileBatches, Reading, peak_memory_kb
from transforms.kafka_producer import AcknowledgedProducer, DeliveryFailed
from transforms.kafka_settings import (
    DEFAULT_BROKER_TIMEOUT_S,
    NYPD_HISTORY,
    AuthenticationFailed,
    BrokerUnavailable,
    KafkaSettings,
    ensure_topics,
    wait_for_broker_at_start,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# The workers' memory comes out of the same 150 MB as this queue's.
MAX_IN_FLIGHT_BYTES = 16 * 1024 * 1024
MAX_MESSAGE_BYTES = 1_000_000
CHECKPOINT_INTERVAL_S = 0.25
# Delivery reports are served this often while sending: each poll costs tens of µs on a
# busy machine, and the checkpoint only moves every CHECKPOINT_INTERVAL_S anyway.
REPORT_POLL_INTERVAL_S = 0.01
STOP_DRAIN_S = 5.0
STALL_NOTE_S = 10.0
STALL_RESTART_S = 60.0
CONNECT_TIMEOUT_S = 3.0
MAX_CONNECT_BACKOFF_S = 30.0
FISCAL_YEAR_SAMPLE = 1000
# librdkafka's own log lines would repeat, less clearly, what the loader's notes say.
_LIBRDKAFKA_LOG = logging.getLogger("csv_ingest.librdkafka")
_LIBRDKAFKA_LOG.addHandler(logging.NullHandler())
_LIBRDKAFKA_LOG.propagate = False
PRODUCER_OVERRIDES: dict[str, Any] = {
    # Retry until the broker acknowledges, however long it is away: the loader pauses
    # (bounded by MAX_IN_FLIGHT_BYTES) rather than dropping a batch.
    "message.timeout.ms": 0,
    "queue.buffering.max.kbytes": MAX_IN_FLIGHT_BYTES // 1024,
    "logger": _LIBRDKAFKA_LOG,
}
REJECTS_HEADER = ("line", "reason", "raw")
_OUTAGE_CODES = frozenset({KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE})

Note = Callable[[str], None]


class LoadError(Exception):
    """The load cannot go on; ``str()`` is one line for the user, ``exit_code`` the process status."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


class ProducerFailed(Exception):
    """The producer hit a fatal error (e.g. a restarted broker forgot its idempotence state).

    Not the end of the load: a new producer resends from ``resume``, the last batch the
    broker acknowledged, exactly as a rerun of the command would.
    """

    def __init__(self, message: str, resume: "BatchEnd"):
        super().__init__(message)
        self.resume = resume


@dataclass(frozen=True)
class LoadOptions:
    """What to load and where to; see ``python -m csv_ingest --help``."""

    path: Path
    settings: KafkaSettings
    checkpoint: Path
    rejects: Path
    topic: str = NYPD_HISTORY
    batch_lines: int = 50
    rate: float = 0.0
    progress: bool = False
    workers: int = 0
    broker_timeout: float = DEFAULT_BROKER_TIMEOUT_S


@dataclass(frozen=True)
class Summary:
    """Totals over the whole file (across resumed runs), this run's time and speed, and its peak memory.

    Peak memory adds the loader's own peak to its workers' (known when they ran to the file's end).
    """

    counters: Counters
    seconds: float
    rows_this_run: int
    already_loaded: bool = False
    interrupted: bool = False
    workers_peak_rss_kb: int = 0

    def to_json(self) -> bytes:
        if self.already_loaded:
            return orjson.dumps({"already_loaded": True, **self.totals()})
        return orjson.dumps(
            {
                **self.totals(),
                "seconds": round(self.seconds, 3),
                "rows_per_s": round(self.rows_this_run / self.seconds, 1) if self.seconds > 0 else 0.0,
                "peak_rss_mb": round((peak_memory_kb() + self.workers_peak_rss_kb) / 1024, 1),
            }
        )

    def totals(self) -> dict[str, int]:
        """What the whole file gave, across every run that loaded part of it."""
        return {
            "rows_read": self.counters.rows_read,
            "sent": self.counters.sent,
            "rejected": self.counters.rejected,
            "batches": self.counters.batches,
        }


@dataclass(frozen=True, slots=True)
class BatchEnd:
    """Where the checkpoint stands once this batch, and every one before it, is acknowledged."""

    position: Position
    rejects_bytes: int
    counters: Counters


@dataclass(frozen=True)
class Plan:
    """Everything decided before the first record is read: layout, fingerprint, where to start, the region grid."""

    layout: Layout
    fingerprint: str
    fiscal_year: int | None
    start: Position
    counters: Counters
    rejects_bytes: int | None
    previous: Checkpoint | None
    region_bytes: int = REGION_BYTES


def plan_load(options: LoadOptions) -> Plan:
    """Read the header and the checkpoint and decide where to start; LoadError(exit 2) when we must not."""
    path = options.path
    if not path.is_file():
        raise LoadError(f"{path}: no such file", EXIT_USAGE)
    try:
        header, after_header = read_header(path)
        if not header:
            raise LoadError(f"{path}: empty file, no header", EXIT_USAGE)
        layout = layout_for_header(header)
        file_fingerprint = fingerprint(path)
        previous = load_checkpoint(options.checkpoint)
    except UnknownHeader as error:
        raise LoadError(f"{path}: {error}", EXIT_USAGE) from None
    except CheckpointError as error:
        raise LoadError(str(error), EXIT_USAGE) from None
    except OSError as error:
        raise LoadError(f"{path}: {error.strerror}", EXIT_USAGE) from None
    if previous is None:
        return Plan(layout, file_fingerprint, sample_fiscal_year(path, after_header, layout), after_header, Counters(), None, None)
    if previous.fingerprint != file_fingerprint:
        raise LoadError(
            f"{path} is not the file checkpoint {options.checkpoint} was written for (it changed since, or it is "
            f"another file of that name): delete the checkpoint to load this file from the start",
            EXIT_USAGE,
        )
    if previous.batch_lines != options.batch_lines and not previous.complete:
        raise LoadError(
            f"checkpoint {options.checkpoint} was written with --batch_lines {previous.batch_lines}: resume with it "
            f"so that resent batches stay identical, or delete the checkpoint to start over",
            EXIT_USAGE,
        )
    return Plan(
        layout,
        file_fingerprint,
        previous.fiscal_year,
        previous.position,
        previous.counters,
        previous.rejects_bytes,
        previous,
        previous.region_bytes,
    )


def sample_fiscal_year(path: Path, start: Position, layout: Layout) -> int | None:
    """The fiscal year most of the file's first records are in; the file decides, not its name."""
    dates: list[str] = []
    with RecordReader(path, start) as reader:
        for _line, fields in reader:
            if isinstance(fields, list) and len(fields) == layout.width:
                iso = iso_date(fields[layout.issue_date_at])
                if iso is not None:
                    dates.append(iso)
            if len(dates) >= FISCAL_YEAR_SAMPLE:
                break
    return likely_fiscal_year(dates)


def date_window(fiscal_year: int | None, today: date | None = None) -> DateWindow:
    """Plausible issue dates: around the file's fiscal year, or merely not in the future."""
    today = today or date.today()
    if fiscal_year is None:
        return DateWindow("0001-01-01", today.isoformat())
    return DateWindow.for_fiscal_year(fiscal_year, today)


def reach_broker(options: LoadOptions, stop: threading.Event, note: Note) -> bool:
    """The broker at start, within ``--broker_timeout``: LoadError (exit 2) when none answers; False if stopped.

    Once a load has reached its broker, losing it only pauses the load (:func:`connect` retries for ever).
    """
    try:
        return wait_for_broker_at_start(options.settings, options.broker_timeout, note, stop)
    except BrokerUnavailable as error:
        raise LoadError(str(error), EXIT_USAGE) from None


def connect(settings: KafkaSettings, topic: str, stop: threading.Event, note: Note) -> bool:
    """Make sure the topic exists, retrying with backoff while the broker is away; False if stopped.

    A refused login or an untrusted certificate is no outage: it ends the load at once.
    """
    delay = 1.0
    while not stop.is_set():
        try:
            ensure_topics(settings, [topic], timeout_s=CONNECT_TIMEOUT_S)
            return True
        except AuthenticationFailed as error:
            raise LoadError(str(error), EXIT_USAGE) from None
        except (BrokerUnavailable, KafkaException) as error:
            if isinstance(error, KafkaException) and not error.args[0].retriable():
                raise LoadError(f"cannot create topic {topic}: {error.args[0].str()}") from None
            note(f"broker unavailable at {settings.bootstrap_servers}: retrying in {delay:.0f} s (Ctrl-C to stop)")
            stop.wait(delay)
            delay = min(delay * 2, MAX_CONNECT_BACKOFF_S)
    return False


class RejectsFile:
    """The rejects CSV (line, reason, raw): appended to, and cut back to a checkpointed length on resume."""

    def __init__(self, path: Path, keep_bytes: int | None, note: Note):
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer)
        self.rows = 0
        self._handle = open(path, "r+b" if path.exists() else "w+b")  # noqa: SIM115 - closed by close()
        length = self._handle.seek(0, os.SEEK_END)
        if keep_bytes is not None and length < keep_bytes:
            note(f"rejects file {path} is shorter than the checkpoint says: some earlier rejects are not in it")
        self.size = min(length, keep_bytes or 0)
        self._handle.truncate(self.size)
        self._handle.seek(self.size)
        if self.size == 0:
            self.write_row(REJECTS_HEADER)
        self._synced = self.size

    def write(self, rejected: Rejected, raw: str) -> None:
        self.write_row((rejected.line, rejected.reason, raw))
        self.rows += 1

    def write_row(self, row: Sequence[object]) -> None:
        self._writer.writerow(row)
        encoded = self._buffer.getvalue().encode()
        self._buffer.seek(0)
        self._buffer.truncate()
        self._handle.write(encoded)
        self.size += len(encoded)

    def sync(self) -> None:
        """Make what was written durable: the checkpoint about to name this length must not outlive it."""
        if self._synced != self.size:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._synced = self.size

    def close(self) -> None:
        self.sync()
        self._handle.close()


class Progress:
    """A progress bar on a terminal (bytes for the ETA, rows, rows/s, rejects); notes go to stderr."""

    REFRESH_S = 0.5

    def __init__(self, path: Path, start: Position, enabled: bool):
        self._bar: Any = None
        self._started = time.monotonic()
        self._refreshed = 0.0
        if enabled:
            from tqdm import tqdm

            size = path.stat().st_size
            self._bar = tqdm(
                total=size,
                initial=start.offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=path.name,
                file=sys.stderr,
                dynamic_ncols=True,
                smoothing=0.1,
            )

    def update(self, offset: int, rows: int, rejected: int, rows_this_run: int, force: bool = False) -> None:
        if self._bar is None:
            return
        now = time.monotonic()
        if now - self._refreshed < self.REFRESH_S and not force:
            return
        self._refreshed = now
        self._bar.update(offset - self._bar.n)
        rate = rows_this_run / max(now - self._started, 1e-9)
        self._bar.set_postfix_str(f"rows={rows:,} rows/s={rate:,.0f} rejects={rejected:,}", refresh=False)

    def note(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(f"csv_ingest: {message}", file=sys.stderr)
        else:
            print(f"csv_ingest: {message}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class Sender:
    """Produce batches and know which prefix of them the broker has acknowledged.

    Every batch gets a sequence number; :attr:`acknowledged` is the :class:`BatchEnd` of
    the highest batch such that it and all before it are acknowledged — what the
    checkpoint may say. librdkafka retries on its own for as long as it takes, so a
    delivery error is one retrying cannot fix: it stops the load (LoadError), and a
    rerun resumes after the last acknowledged batch. A fatal producer error, or no
    acknowledgement at all for STALL_RESTART_S while batches wait, raises ProducerFailed,
    after which the loader goes on with a new producer. Memory is bounded
    by librdkafka's queue limit (``queue.buffering.max.kbytes``): when it is full,
    produce waits for acknowledgements.
    """

    def __init__(self, settings: KafkaSettings, topic: str, start: BatchEnd, note: Note, stop: threading.Event):
        self._note = note
        self._stop = stop
        self._producer = AcknowledgedProducer(settings, topic, on_error=self._on_error, **PRODUCER_OVERRIDES)
        self._pending: dict[int, tuple[int, BatchEnd]] = {}
        self._acked: set[int] = set()
        self._next = 0
        self._oldest = 0
        self._refused: str | None = None
        self._last_progress = time.monotonic()
        self._stall_noted = False
        self._polled_at = 0.0
        self.acknowledged = start

    def send(self, first_line: int, key: bytes, value: bytes, end: BatchEnd) -> bool:
        """Queue one batch; False when a stop was asked for while the queue was full (it was not sent)."""
        if len(value) > MAX_MESSAGE_BYTES:
            raise LoadError(
                f"the batch from line {first_line} is {len(value):,} bytes, over the {MAX_MESSAGE_BYTES:,}-byte "
                "message limit: use a smaller --batch_lines",
                EXIT_USAGE,
            )
        try:
            if not self._producer.send(key, value, on_delivery=partial(self._delivered, self._next), stop=self._stop, wait=self.wait):
                return False
        except DeliveryFailed as refusal:
            if self._producer.dead is None:
                self._refused = self._refused or f"{refusal}; rerun the same command to resume"
            self.wait(0)
        if not self._pending:
            self._last_progress = time.monotonic()
        self._pending[self._next] = (first_line, end)
        self._next += 1
        if time.monotonic() - self._polled_at > REPORT_POLL_INTERVAL_S:
            self.wait(0)
        return True

    def wait(self, timeout: float) -> None:
        """Serve delivery reports for up to ``timeout`` s; raise when a batch or the producer failed."""
        self._polled_at = time.monotonic()
        self._producer.poll(timeout)
        if self._producer.dead is not None:
            raise ProducerFailed(self._producer.dead, self.acknowledged)
        if self._refused is not None:
            raise LoadError(self._refused)
        if timeout and self._pending:
            waited = time.monotonic() - self._last_progress
            if waited > STALL_RESTART_S:
                raise ProducerFailed(f"no acknowledgement for {waited:.0f} s", self.acknowledged)
            if waited > STALL_NOTE_S and not self._stall_noted:
                self._note(f"no acknowledgement from the broker for {waited:.0f} s: pausing, batches are kept and retried")
                self._stall_noted = True

    def drain(self, stop: threading.Event | None = None, deadline: float | None = None) -> bool:
        """Wait until every batch is acknowledged (True), or until ``stop``/``deadline`` (False)."""
        while self._pending:
            if (stop is not None and stop.is_set()) or (deadline is not None and time.monotonic() > deadline):
                return False
            self.wait(0.2)
        return True

    def close(self) -> None:
        self._producer.close()  # the checkpoint knows what was acknowledged

    def _delivered(self, sequence: int, error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            if self._producer.dead is None:  # a dead producer's batches are sent again by the next one
                self._refused = self._refused or (
                    f"the broker refused the batch from line {self._pending[sequence][0]}: {error.str()}; "
                    "rerun the same command to resume after the last acknowledged batch"
                )
            return
        self._acked.add(sequence)
        while self._oldest in self._acked:
            self._acked.discard(self._oldest)
            self.acknowledged = self._pending.pop(self._oldest)[1]
            self._oldest += 1
        self._last_progress = time.monotonic()
        if self._stall_noted:
            self._note("the broker acknowledges again: going on")
            self._stall_noted = False

    def _on_error(self, error: KafkaError) -> None:
        """The producer's own errors (a dead producer is the producer's to note): an outage is said once."""
        if error.code() in _OUTAGE_CODES and not self._stall_noted:
            self._note(f"broker unreachable ({error.str()}): pausing, batches are kept and retried")
            self._stall_noted = True


class Checkpointer:
    """Writes the checkpoint when the acknowledged prefix moved, at most every CHECKPOINT_INTERVAL_S."""

    def __init__(self, options: LoadOptions, plan: Plan, rejects: RejectsFile):
        self._path = options.checkpoint
        self._identity = (plan.fingerprint, str(options.path.resolve()), options.batch_lines, plan.fiscal_year, plan.region_bytes)
        self._rejects = rejects
        self._written: BatchEnd | None = None
        self._at = 0.0

    def maybe_save(self, end: BatchEnd) -> None:
        if end is not self._written and time.monotonic() - self._at >= CHECKPOINT_INTERVAL_S:
            self.save(end)

    def save(self, end: BatchEnd, complete: bool = False) -> None:
        self._rejects.sync()
        file_fingerprint, file, batch_lines, fiscal_year, region_bytes = self._identity
        checkpoint = Checkpoint(
            file_fingerprint, file, batch_lines, fiscal_year, end.position, end.rejects_bytes, end.counters, complete, region_bytes
        )
        save_checkpoint(self._path, checkpoint)
        self._written = end
        self._at = time.monotonic()


def load(options: LoadOptions, stop: threading.Event) -> Summary:
    """Load ``options.path`` from its checkpoint on; LoadError for what must stop the load."""
    started = time.monotonic()
    plan = plan_load(options)
    progress = Progress(options.path, plan.start, options.progress)
    rows_before = plan.counters.rows_read
    backoff = 1.0
    try:
        if plan.previous is not None and plan.previous.complete:
            progress.note(already_loaded_note(options, plan.previous.counters))
            return Summary(plan.counters, time.monotonic() - started, 0, already_loaded=True)
        if plan.previous is not None:
            progress.note(f"resuming {options.path.name} at line {plan.start.line:,} from {options.checkpoint}")
        reading = Reading(
            options.path, plan.layout, date_window(plan.fiscal_year), options.batch_lines, plan.fingerprint, region_bytes=plan.region_bytes
        )
        # The workers start while the broker is reached.
        file_batches = FileBatches(reading, plan.start, options.workers, progress.note)
        try:
            reached = reach_broker(options, stop, progress.note)
            while reached and connect(options.settings, options.topic, stop, progress.note):
                try:
                    return _stream(options, plan, file_batches, stop, progress, started, rows_before)
                except ProducerFailed as failure:
                    progress.note(
                        f"Kafka producer failed ({failure}): resending from line {failure.resume.position.line:,} "
                        f"with a new producer in {backoff:.0f} s"
                    )
                    plan = replace(
                        plan, start=failure.resume.position, counters=failure.resume.counters, rejects_bytes=failure.resume.rejects_bytes
                    )
                    file_batches = FileBatches(reading, plan.start, options.workers, progress.note)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_CONNECT_BACKOFF_S)
        finally:
            file_batches.close()
        return Summary(plan.counters, time.monotonic() - started, plan.counters.rows_read - rows_before, interrupted=True)
    finally:
        progress.close()


def already_loaded_note(options: LoadOptions, held: Counters) -> str:
    """What a finished file's checkpoint holds, and how to load the file again."""
    return (
        f"{options.path}: already loaded, nothing sent: {options.checkpoint} holds {held.rows_read:,} records read, "
        f"{held.sent:,} sent in {held.batches:,} batch{'' if held.batches == 1 else 'es'}, {held.rejected:,} rejected; "
        f"delete the checkpoint to load the file again"
    )


def _stream(
    options: LoadOptions, plan: Plan, file_batches: FileBatches, stop: threading.Event, progress: Progress, started: float, rows_before: int
) -> Summary:
    """The hot loop: take the file's batches, send them; checkpoint what the broker acknowledged."""
    rate = options.rate
    rejects = RejectsFile(options.rejects, plan.rejects_bytes, progress.note)
    start = BatchEnd(plan.start, rejects.size, plan.counters)
    sender = Sender(options.settings, options.topic, start, progress.note, stop)
    checkpointer = Checkpointer(options, plan, rejects)
    sent, batches, rejected_before = plan.counters.sent, plan.counters.batches, plan.counters.rejected
    final = start
    try:
        for batch in file_batches:
            for rejected, raw in batch.rejects:
                rejects.write(rejected, raw)
            sent, batches = sent + batch.rows, batches + bool(batch.rows)
            rejected_count = rejected_before + rejects.rows
            counters = Counters(sent + rejected_count, sent, rejected_count, batches)
            final = BatchEnd(batch.end, rejects.size, counters)
            if batch.message is not None and not sender.send(batch.first_line, *batch.message, final):
                return _stop(sender, checkpointer, progress, started, rows_before)
            checkpointer.maybe_save(sender.acknowledged)
            progress.update(batch.end.offset, counters.rows_read, rejected_count, counters.rows_read - rows_before)
            if rate:
                _throttle(sender, stop, started, (counters.rows_read - rows_before) / rate)
            if stop.is_set():
                return _stop(sender, checkpointer, progress, started, rows_before)
        while not sender.drain(stop, deadline=time.monotonic() + CHECKPOINT_INTERVAL_S):
            if stop.is_set():
                return _stop(sender, checkpointer, progress, started, rows_before)
            checkpointer.maybe_save(sender.acknowledged)
        checkpointer.save(final, complete=True)
        done = final.counters
        progress.update(final.position.offset, done.rows_read, done.rejected, done.rows_read - rows_before, force=True)
        return Summary(done, time.monotonic() - started, done.rows_read - rows_before, workers_peak_rss_kb=file_batches.workers_peak_rss_kb)
    except ProducerFailed as failure:
        checkpointer.save(failure.resume)
        raise
    finally:
        file_batches.close()
        sender.close()
        rejects.close()


def _throttle(sender: Sender, stop: threading.Event, started: float, due_s: float) -> None:
    """Hold the rows-per-second rate, serving delivery reports meanwhile."""
    while not stop.is_set():
        remaining = started + due_s - time.monotonic()
        if remaining <= 0:
            return
        sender.wait(min(remaining, 0.2))


def _stop(sender: Sender, checkpointer: Checkpointer, progress: Progress, started: float, rows_before: int) -> Summary:
    """Ctrl-C: give in-flight batches a moment to be acknowledged, checkpoint, and say how to resume."""
    sender.drain(deadline=time.monotonic() + STOP_DRAIN_S)
    end = sender.acknowledged
    checkpointer.save(end)
    progress.note(f"stopped: rerun the same command to resume at line {end.position.line:,}")
    return Summary(end.counters, time.monotonic() - started, end.counters.rows_read - rows_before, interrupted=True)
