"""The three ways a Kafka-fed pipeline runs: one drain, repeated drains, or a real stream.

Each pipeline module (``pipelines.stream``, ``pipelines.history``) builds its own graph
from a :class:`Reading` — what to read, whether it ends, and how offsets are committed —
and this driver owns the rest: the drain plan, the watermark one drain leaves to the
next (the one thing Beam cannot carry across separate runs), the commit after a drain,
and the run summary.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Callable, Iterator

import apache_beam as beam
import orjson
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines.options import KafkaSourceOptions, RunModeOptions
from runners.maven import JavaUnavailable
from runners.presets import batch_runner, runner_name
from runners.prism import PrismUnavailable
from transforms import drain_state, lake
from transforms.event_time import DEFAULT_MAX_DELAY_MS
from transforms.kafka_producer import DeliveryFailed
from transforms.kafka_settings import (
    BrokerUnavailable,
    KafkaSettings,
    KafkaSettingsError,
    ensure_topics,
    wait_for_broker_at_start,
)
from transforms.kafka_source import MAX_RECORDS_PER_BATCH, KafkaReadError, PartitionSpan, ReadKafkaBatches, commit_offsets, plan_spans
from transforms.landed_offsets import CommitLandedOffsets
from transforms.metrics import TO_WRITE, WRITTEN, WROTE_PARTITION_PREFIX, counters, newest_event_ms_by_partition, wrote_partitions

MAX_DRAIN_ATTEMPTS = 3
# Runners whose streaming jobs outlive the process that submitted them (a Flex Template
# launcher must exit once its job is submitted).
SUBMIT_AND_EXIT_RUNNERS = frozenset({"DataflowRunner"})


class IncompleteDrain(RuntimeError):
    """A drain could not land every record it read; its offsets stay uncommitted."""


class UsageError(Exception):
    """A wrong combination of flags: printed as one line, exit code 2."""


@dataclass(frozen=True)
class Reading:
    """What a pipeline reads and how its progress is kept.

    ``source`` gives raw batches; ``bounded`` says whether it ends (a drain) or not (a
    stream); ``commit`` — given only when streaming from Kafka — takes what the writers
    landed and commits the offsets below it. A drain commits after its run instead.
    """

    source: beam.PTransform
    bounded: bool
    commit: beam.PTransform | None = None


@dataclass(frozen=True)
class KafkaJob:
    """What a Kafka-fed pipeline tells the driver about itself (topics as resolved from flags)."""

    name: str
    topic: str
    output_topics: tuple[str, ...]
    default_group_id: str
    build: Callable[..., beam.Pipeline]  # (options, reading, runner=None): the pipeline's whole graph
    slice_records: int = 250_000  # Kafka records a drain reads at once, unless --slice_records says
    batch_records: int = MAX_RECORDS_PER_BATCH  # offsets of one batch a drain's reader hands on
    # Once after a drain's last slice, given the partitions (history days) written since the last merge, this
    # drain's and those a killed drain left unmerged (None: not known, so every one); its summary's entries.
    after_drain: Callable[[PipelineOptions, list[str] | None], dict[str, Any]] | None = None


def source_topic(options: PipelineOptions, default: str) -> str:
    return options.view_as(KafkaSourceOptions).topic or default


def run(job: KafkaJob, options: PipelineOptions) -> int:
    """Run ``job`` in the mode the options ask for; return the process exit code."""
    mode = options.view_as(RunModeOptions)
    streaming = options.view_as(StandardOptions).streaming
    if sum((mode.drain, mode.follow, streaming)) > 1:
        raise UsageError("choose one of --drain, --follow and --streaming")
    if options.view_as(KafkaSourceOptions).source == "pubsub" and not streaming:
        raise UsageError("--source=pubsub reads an endless stream: run it with --streaming")
    # What reads and writes the lake from here (plans, state, the sweep) needs the object
    # store's options (an S3 endpoint, a region), as a Pipeline's own construction gives them.
    FileSystems.set_options(options)
    swept = lake.sweep_abandoned_temp_files(mode.output)
    if swept:
        sys.stderr.write(f"{job.name}: deleted {swept} temporary file(s) an interrupted write left in {mode.output}\n")
    source = options.view_as(KafkaSourceOptions)
    if source.source == "kafka":
        wait_for_broker_at_start(source.kafka_settings(), source.broker_timeout, partial(tell, job.name))
    if streaming:
        return run_streaming(job, options)
    if mode.follow:
        return run_follow(job, options)
    print_summary(run_drain(job, options))
    return 0


def tell(name: str, text: str) -> None:
    """A line for the user on stderr, named after the pipeline."""
    sys.stderr.write(f"{name}: {text}\n")
    sys.stderr.flush()


def group_id(job: KafkaJob, options: PipelineOptions) -> str:
    return options.view_as(KafkaSourceOptions).group_id or job.default_group_id


def run_drain(job: KafkaJob, options: PipelineOptions) -> dict[str, Any]:
    """Read every partition up to its end as of now, a slice at a time; return the summary.

    Each slice is written and its offsets committed before the next is read, so memory
    is bounded by the slice, not the backlog, and a killed drain resumes at the first
    uncommitted slice. Then the job's ``after_drain`` (the history's merge) runs once over
    the partitions the slices wrote, and those an earlier drain wrote but did not live to
    merge (the drain state keeps them until a merge has covered them).
    """
    started = time.monotonic()
    settings = options.view_as(KafkaSourceOptions).kafka_settings()
    ensure_topics(settings, [job.topic, *job.output_topics])
    group = group_id(job, options)
    max_records = options.view_as(RunModeOptions).slice_records or job.slice_records
    remaining = plan_spans(settings, job.topic, group)
    totals: dict[str, int] = {"read": 0}
    slices = 0
    while True:
        plan, counts = drain_slice(job, options, group, remaining, max_records)
        if not plan:
            break
        slices += 1
        totals["read"] += sum(span.stop - span.start for span in plan)
        for name, value in counts.items():
            totals[name] = totals.get(name, 0) + value
        done = {(span.topic, span.partition): span.stop for span in plan}
        remaining = [replace(span, start=max(span.start, done.get((span.topic, span.partition), span.start))) for span in remaining]
    merged = merge_after_drain(job, options, group)
    return {
        "pipeline": job.name,
        **totals,
        "slices": slices,
        **merged,
        "output": options.view_as(RunModeOptions).output,
        "seconds": round(time.monotonic() - started, 3),
    }


def merge_after_drain(job: KafkaJob, options: PipelineOptions, group: str) -> dict[str, Any]:
    """Run the job's ``after_drain`` over the partitions still unmerged, then forget them; its summary entries."""
    if job.after_drain is None:
        return {}
    output = options.view_as(RunModeOptions).output
    state = drain_state.load_state(output, job.name, group)
    if state.unmerged == []:
        return {}
    merged = job.after_drain(options, state.unmerged)
    state.unmerged = []
    drain_state.save_state(output, job.name, group, state)
    return merged


def drain_slice(
    job: KafkaJob, options: PipelineOptions, group: str, remaining: list[PartitionSpan], max_records: int
) -> tuple[list[PartitionSpan], dict[str, int]]:
    """Plan (or resume) one slice, run it until every record landed, commit it: ``(its spans, counters)``.

    No spans: nothing was left to read.
    """
    output = options.view_as(RunModeOptions).output
    settings = options.view_as(KafkaSourceOptions).kafka_settings()
    state = drain_state.load_state(output, job.name, group)
    plan = drain_state.resumable_plan(state, drain_state.first_slice(remaining, max_records))
    if all(span.is_empty for span in plan):
        return [], {}
    state.pending = plan
    drain_state.save_state(output, job.name, group, state)
    source = ReadKafkaBatches(settings, group, plan, bounded=True, watermark_ms=state.watermark_ms, chunk_records=job.batch_records)
    reading = Reading(source, bounded=True)
    result, counts = run_until_every_record_landed(job, options, reading)
    if job.after_drain is not None:  # saved before the commit: a slice committed is a slice whose partitions are known
        state.unmerged = drain_state.with_unmerged(state.unmerged, wrote_partitions(counts))
        drain_state.save_state(output, job.name, group, state)
    commit_offsets(settings, group, plan)
    state.watermark_ms = next_watermark(newest_event_ms_by_partition(result), state.watermark_ms)
    state.pending = []
    drain_state.save_state(output, job.name, group, state)
    return plan, {name: value for name, value in counts.items() if not name.startswith(WROTE_PARTITION_PREFIX)}


def run_until_every_record_landed(job: KafkaJob, options: PipelineOptions, reading: Reading) -> tuple[Any, dict[str, int]]:
    """Run the planned drain, and run it again if any routed record did not reach a file.

    Re-running the same plan rewrites the same files under the same names, so a repeat is
    harmless; committing offsets past a record that never landed would lose it. Beam's
    ``multi_threading`` runner loses values at a GroupByKey now and then
    (``docs/repro/beam_multi_threading_groupbykey_loss.py``); a drain has none after its read,
    and this check is what would catch a loss anywhere between the read and the files.
    """
    for attempt in range(1, MAX_DRAIN_ATTEMPTS + 1):
        result = job.build(options, reading, batch_runner(options)).run()
        result.wait_until_finish()
        counts = counters(result)
        if counts.get(TO_WRITE, 0) == counts.get(WRITTEN, 0):
            return result, counts
        sys.stderr.write(
            f"{job.name}: attempt {attempt}: {counts.get(WRITTEN, 0)} of {counts.get(TO_WRITE, 0)} records "
            "reached the lake; running the same plan again\n"
        )
    raise IncompleteDrain(f"records kept failing to reach the lake after {MAX_DRAIN_ATTEMPTS} attempts; offsets not committed")


def run_follow(job: KafkaJob, options: PipelineOptions) -> int:
    """Drain again every ``--poll_seconds`` until SIGINT/SIGTERM: the stand-in for streaming without Go."""
    mode = options.view_as(RunModeOptions)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    totals: dict[str, Any] = {}
    while not stop.is_set():
        summary = run_drain(job, options)
        if summary["read"]:
            print_summary(summary)
        for key, value in summary.items():
            if isinstance(value, (int, float)) and key != "seconds":
                totals[key] = totals.get(key, 0) + value
        stop.wait(mode.poll_seconds)
    print_summary({"pipeline": job.name, "mode": "follow", **totals})
    return 0


def run_streaming(job: KafkaJob, options: PipelineOptions) -> int:
    """An unbounded run on a streaming runner (Prism here, Flink or Dataflow at scale) until cancelled."""
    source = options.view_as(KafkaSourceOptions)
    if source.source == "kafka":
        ensure_topics(source.kafka_settings(), [job.topic, *job.output_topics])
    with contextlib.ExitStack() as services:  # what the job needs running beside it (Java KafkaIO's JVM)
        reading = streaming_reading(source, job.topic, group_id(job, options), services, runner_name(options))
        pipeline = job.build(options, reading)
        with children_ignore_ctrl_c():
            result = pipeline.run()
        if runner_name(options) in SUBMIT_AND_EXIT_RUNNERS:
            sys.stdout.write(f"{job.name}: submitted; the job runs on {runner_name(options)} until cancelled there\n")
            return 0
        try:
            result.wait_until_finish()
        except KeyboardInterrupt:
            sys.stderr.write(f"{job.name}: stopped; {stopped_note(source)}\n")
            cancel_quietly(result)
            return 130
        return 0


def stopped_note(source: KafkaSourceOptions) -> str:
    if source.source == "kafka" and source.kafka_io == "java":
        return "Java KafkaIO commits what it read, landed in the lake or not: see the README on --kafka_io=java"
    return "what had not landed in the lake stays uncommitted and is read again next time"


@contextlib.contextmanager
def children_ignore_ctrl_c() -> Iterator[None]:
    """Start a local runner (Prism) with Ctrl-C ignored, as children inherit it.

    A terminal's Ctrl-C reaches the whole process group: Prism would die under the job
    while it is being cancelled, and every thread talking to it would print a traceback.
    This way the job is cancelled through Prism, which Beam stops when we exit.
    """
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def cancel_quietly(result: Any) -> None:
    """Cancel a job on Ctrl-C; what the runner and its worker threads then report is not for the user.

    Every bundle in flight fails as "pipeline canceled", with a traceback per thread, and
    Beam stops Prism at exit: the process's error output goes to /dev/null from here on.
    """
    import grpc

    sys.stderr.flush()
    quiet = open(os.devnull, "w")
    os.dup2(quiet.fileno(), 2)
    sys.stderr = quiet
    try:
        result.cancel()
    except (ValueError, RuntimeError, grpc.RpcError):
        pass


def streaming_reading(
    source: KafkaSourceOptions,
    topic: str,
    group: str,
    services: contextlib.ExitStack | None = None,
    runner: str | None = None,
) -> Reading:
    """Our Python source from the committed offsets, Beam's Java KafkaIO, or Pub/Sub.

    Java KafkaIO needs its expansion service (and worker pool) running while the job does:
    it is started here and stopped when ``services`` closes.
    """
    settings = source.kafka_settings()
    if source.source == "pubsub":
        from transforms.pubsub_source import ReadPubSubBatches

        if not source.subscription:
            raise UsageError("--source=pubsub needs --subscription=projects/…/subscriptions/…")
        return Reading(ReadPubSubBatches(source.subscription), bounded=False)
    if source.kafka_io == "java":
        from runners.java_kafka import expansion_service
        from transforms.kafka_java import ReadKafkaWithJava

        if services is None:
            raise UsageError("--kafka_io=java reads through a Java expansion service that must run for the job")
        on_prism = runner == "PrismRunner"
        address = services.enter_context(expansion_service(stage_classpath=not on_prism))
        # Prism refuses KafkaIO's commit-on-finalize (its commit step requires stable input).
        commit = "auto" if on_prism else "finalize"
        return Reading(ReadKafkaWithJava(settings, topic, group, address, commit), bounded=False)
    return kafka_stream_reading(settings, group, plan_spans(settings, topic, group, endless=True), source.max_delay_ms())


def kafka_stream_reading(
    settings: KafkaSettings, group: str, starts: list[PartitionSpan], max_delay_ms: int = DEFAULT_MAX_DELAY_MS
) -> Reading:
    """Our Python source, endless from ``starts``, its watermarks ``max_delay_ms`` behind; what landed commits the offsets below it."""
    return Reading(
        ReadKafkaBatches(settings, group, starts, bounded=False, max_delay_ms=max_delay_ms),
        bounded=False,
        commit=CommitLandedOffsets(settings, group, [(span.topic, span.partition, span.start) for span in starts]),
    )


def next_watermark(newest_by_partition: list[int], previous_ms: int | None) -> int | None:
    """The oldest of the partitions' newest event times: what every partition has reached."""
    candidates = [value for value in (min(newest_by_partition, default=None), previous_ms) if value is not None]
    return max(candidates) if candidates else None


def print_summary(summary: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    sys.stdout.flush()


USER_ERRORS = (
    UsageError,
    BrokerUnavailable,
    KafkaSettingsError,
    KafkaReadError,
    DeliveryFailed,
    JavaUnavailable,
    PrismUnavailable,
    IncompleteDrain,
)


def main(name: str, make_job: Callable[[PipelineOptions], KafkaJob], make_options: Callable[[], PipelineOptions]) -> int:
    """Make the options (runner presets may build Prism) and run; errors a user can fix are one line and exit 2."""
    lake.limit_malloc_arenas()
    try:
        options = make_options()
        return run(make_job(options), options)
    except USER_ERRORS as error:
        sys.stderr.write(f"{name}: {error}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"{name}: interrupted; offsets of what had not landed were not committed\n")
        return 130
