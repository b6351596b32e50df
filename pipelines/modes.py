"""The three ways a Kafka-fed pipeline runs: one drain, repeated drains, or a real stream.

Shared by every Kafka-fed pipeline (drone stream, NYPD history): each supplies a
function that wires its transforms onto the PCollection of raw Kafka batches, and this
module owns offsets, the drain plan, the watermark between drains and the run summary.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines.options import KafkaSourceOptions, RunModeOptions
from transforms import drain_state, lake
from transforms.kafka_settings import ensure_topics
from transforms.kafka_source import PartitionSpan, ReadKafkaBatches, commit_offsets, plan_spans
from transforms.messages import METRICS_NAMESPACE, TO_WRITE, WRITTEN, Lateness

# (pipeline, raw batches, lateness, bounded) -> None: wires a pipeline's own transforms.
WireTransforms = Callable[[beam.Pipeline, beam.PCollection, Lateness, bool], None]


MAX_DRAIN_ATTEMPTS = 3


class IncompleteDrain(RuntimeError):
    """A drain could not land every record it read; its offsets stay uncommitted."""


class UsageError(Exception):
    """A wrong combination of flags: printed as one line, exit code 2."""


@dataclass(frozen=True)
class KafkaJob:
    """What a Kafka-fed pipeline tells the driver about itself (topics as resolved from flags)."""

    name: str
    topic: str
    output_topics: tuple[str, ...]
    default_group_id: str
    wire: WireTransforms


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
    if streaming:
        return run_streaming(job, options)
    if mode.follow:
        return run_follow(job, options)
    print_summary(run_drain(job, options))
    return 0


def group_id(job: KafkaJob, options: PipelineOptions) -> str:
    return options.view_as(KafkaSourceOptions).group_id or job.default_group_id


def run_drain(job: KafkaJob, options: PipelineOptions) -> dict[str, Any]:
    """Read every partition up to its end as of now, write, then commit; return the summary."""
    started = time.monotonic()
    source = options.view_as(KafkaSourceOptions)
    mode = options.view_as(RunModeOptions)
    settings = source.kafka_settings()
    group = group_id(job, options)
    ensure_topics(settings, [job.topic, *job.output_topics])
    state = drain_state.load_state(mode.output, job.name, group)
    plan = drain_state.resumable_plan(state, plan_spans(settings, job.topic, group))
    state.pending = plan
    drain_state.save_state(mode.output, job.name, group, state)
    lateness = Lateness(state.watermark_ms, mode.allowed_lateness_minutes * 60_000)

    result, counts = run_until_every_record_landed(job, options, plan, lateness)
    commit_offsets(settings, group, plan)
    state.watermark_ms = next_watermark(result, state.watermark_ms)
    state.pending = []
    drain_state.save_state(mode.output, job.name, group, state)
    return {
        "pipeline": job.name,
        "read": sum(span.stop - span.start for span in plan),
        **counts,
        "output": mode.output,
        "seconds": round(time.monotonic() - started, 3),
    }


def run_until_every_record_landed(
    job: KafkaJob, options: PipelineOptions, plan: list[PartitionSpan], lateness: Lateness
) -> tuple[Any, dict[str, int]]:
    """Run the planned drain, and run it again if any routed record did not reach a file.

    Re-running the same plan rewrites the same files under the same names, so a repeat is
    harmless; committing offsets past a record that never landed would lose it. Beam's
    Python batch runner has been seen to drop whole groups at a GroupByKey under load.
    """
    source = options.view_as(KafkaSourceOptions)
    for attempt in range(1, MAX_DRAIN_ATTEMPTS + 1):
        pipeline = beam.Pipeline(options=options)
        batches = pipeline | "ReadKafka" >> ReadKafkaBatches(source.kafka_settings(), group_id(job, options), plan, bounded=True)
        job.wire(pipeline, batches, lateness, True)
        result = pipeline.run()
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
    """Drain again every ``--poll_seconds`` until SIGINT/SIGTERM: the local stand-in for streaming."""
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
    """Unbounded read for runners that stream (Flink, Dataflow, Prism)."""
    runner = (options.view_as(StandardOptions).runner or "DirectRunner").split(".")[-1]
    source = options.view_as(KafkaSourceOptions)
    # Beam's DirectRunner streams Beam's own Pub/Sub read (BundleBasedDirectRunner), not our Kafka source.
    if runner in ("DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner") and source.source != "pubsub":
        raise UsageError(
            "--streaming needs a streaming runner (FlinkRunner, DataflowRunner, PrismRunner); "
            "on this machine's DirectRunner use --follow, which drains repeatedly"
        )
    mode = options.view_as(RunModeOptions)
    group = group_id(job, options)
    if source.source == "kafka":
        ensure_topics(source.kafka_settings(), [job.topic, *job.output_topics])
    pipeline = beam.Pipeline(options=options)
    batches = pipeline | "ReadKafka" >> unbounded_reader(source, job.topic, group)
    job.wire(pipeline, batches, Lateness(None, mode.allowed_lateness_minutes * 60_000), False)
    pipeline.run().wait_until_finish()
    return 0


def unbounded_reader(source: KafkaSourceOptions, topic: str, group: str) -> beam.PTransform:
    """Our Python source from the committed offsets, Beam's Java KafkaIO, or Pub/Sub."""
    settings = source.kafka_settings()
    if source.source == "pubsub":
        from transforms.pubsub_source import ReadPubSubBatches

        if not source.subscription:
            raise UsageError("--source=pubsub needs --subscription=projects/…/subscriptions/…")
        return ReadPubSubBatches(source.subscription)
    if source.kafka_io == "java":
        from runners.maven import resolve_jar
        from transforms.kafka_java import ReadKafkaWithJava, expansion_service_coordinate

        jar = resolve_jar(expansion_service_coordinate())
        return ReadKafkaWithJava(settings, topic, group, str(jar))
    spans = [PartitionSpan(span.topic, span.partition, span.start) for span in plan_spans(settings, topic, group)]
    return ReadKafkaBatches(settings, group, spans, bounded=False)


def counters(result: Any) -> dict[str, int]:
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    totals: dict[str, int] = {}
    for counter in query["counters"]:
        name = counter.key.metric.name
        totals[name] = totals.get(name, 0) + (counter.committed or counter.attempted or 0)
    return totals


def next_watermark(result: Any, previous_ms: int | None) -> int | None:
    """The oldest of the partitions' newest event times: what every partition has reached."""
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    newest = [
        (dist.committed or dist.attempted).max
        for dist in query["distributions"]
        if dist.key.metric.name.startswith("event_ms_p") and (dist.committed or dist.attempted)
    ]
    candidates = [value for value in (min(newest) if newest else None, previous_ms) if value is not None]
    return max(candidates) if candidates else None


def print_summary(summary: dict[str, Any]) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    sys.stdout.flush()


def main(job: KafkaJob, options: PipelineOptions) -> int:
    """Run and turn the errors a user can fix into one line on stderr and exit code 2."""
    from runners.maven import JavaUnavailable
    from transforms.kafka_settings import BrokerUnavailable, KafkaSettingsError
    from transforms.kafka_source import KafkaReadError

    try:
        return run(job, options)
    except (UsageError, BrokerUnavailable, KafkaSettingsError, KafkaReadError, JavaUnavailable, IncompleteDrain) as error:
        sys.stderr.write(f"{job.name}: {error}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"{job.name}: interrupted; offsets of the unfinished drain were not committed\n")
        return 130
