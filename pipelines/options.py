"""Command-line options of the pipelines, in Beam's PipelineOptions style."""

from __future__ import annotations

import os

from apache_beam.options.pipeline_options import KafkaStreamsRunnerOptions, PipelineOptions

from transforms import lake
from transforms.compaction import DEFAULT_SETTLE_MINUTES, DEFAULT_TARGET_FILE_MB, RULES
from transforms.event_time import DEFAULT_MAX_DELAY_MS
from transforms.kafka_settings import (
    DEFAULT_BOOTSTRAP_SERVERS,
    DEFAULT_BROKER_TIMEOUT_S,
    DRONE_ALERTS,
    DRONE_DEAD_LETTER,
    ENV_BOOTSTRAP_SERVERS,
    SECURITY_FROM_ENV,
    KafkaSettings,
)

# Beam's flags the stream pipelines use, with what each means here (None: Beam's own help says it).
KAFKA_PIPELINE_SHARED_FLAGS: dict[str, str | None] = {
    "--bootstrap_servers": f"Kafka bootstrap servers (default: ${ENV_BOOTSTRAP_SERVERS}, else "
    f"{DEFAULT_BOOTSTRAP_SERVERS}). {SECURITY_FROM_ENV}",
    "--runner": None,
    "--streaming": None,
}


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{text} is not a positive number")
    return value


class KafkaSourceOptions(PipelineOptions):
    """Where to read from: a Kafka topic through a consumer group (or Pub/Sub on Dataflow)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--topic", default=None, help="Topic to read (each pipeline has its default).")
        parser.add_argument("--dead_letter_topic", default=DRONE_DEAD_LETTER, help="Where refused records go.")
        parser.add_argument("--group_id", default=None, help="Consumer group whose committed offsets mark progress.")
        parser.add_argument("--source", choices=("kafka", "pubsub"), default="kafka", help="What to read: Kafka or Pub/Sub.")
        parser.add_argument("--subscription", default=None, help="Pub/Sub subscription, with --source=pubsub.")
        parser.add_argument(
            "--kafka_io",
            choices=("python", "java"),
            default="python",
            help="python: DroneCop's own Kafka source (default); java: Beam's ReadFromKafka (needs Java).",
        )
        parser.add_argument(
            "--max_delay_seconds",
            type=float,
            default=DEFAULT_MAX_DELAY_MS / 1000,
            help="Streaming: seconds a partition's watermark stays behind the newest event time read from it; "
            "a message at most this much older than one already read is on time.",
        )
        parser.add_argument(
            "--broker_timeout",
            type=float,
            default=DEFAULT_BROKER_TIMEOUT_S,
            help="Seconds to wait for a Kafka broker that does not answer at start, then exit 2.",
        )

    def max_delay_ms(self) -> int:
        return round(self.max_delay_seconds * 1000)

    def kafka_settings(self) -> KafkaSettings:
        """``--bootstrap_servers`` is Beam's own flag (KafkaStreamsRunnerOptions); we reuse it.

        SASL/TLS settings come from the DRONECOP_KAFKA_* environment variables.
        """
        given = self.view_as(KafkaStreamsRunnerOptions).bootstrap_servers
        if given == DEFAULT_BOOTSTRAP_SERVERS:
            given = os.environ.get(ENV_BOOTSTRAP_SERVERS, given)
        return KafkaSettings.from_env(given)


class RunModeOptions(PipelineOptions):
    """How long to run: one bounded drain, repeated drains, or a real unbounded stream."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--drain", action="store_true", help="Read what is there, write, commit, exit (default).")
        parser.add_argument("--follow", action="store_true", help="Repeat drains every --poll_seconds until Ctrl-C.")
        parser.add_argument("--poll_seconds", type=float, default=1.0, help="Pause between two drains with --follow.")
        parser.add_argument("--output", default="./lake", help="Lake root: a local folder, gs://… or s3://….")
        parser.add_argument(
            "--slice_records",
            type=positive_int,
            default=None,
            help="Kafka records a drain reads, writes and commits at once: its memory (each pipeline has its default).",
        )
        parser.add_argument("--window_minutes", type=int, default=5, help="Event-time window of each lake file.")
        parser.add_argument(
            "--allowed_lateness_minutes",
            type=int,
            default=120,
            help="Messages later than this behind the watermark go to the dead letter as too_late.",
        )


class DroneStreamOptions(PipelineOptions):
    """Where the drone stream sends messages that need a human, and the model that scores the drones' wear."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--alerts_topic", default=DRONE_ALERTS, help="Where messages that need a human go.")
        parser.add_argument(
            "--maintenance_model",
            default=None,
            help="Model file of pipelines.train_maintenance (local, gs://, s3://) to score drones with, with "
            "--streaming; without one, or where the file is missing, drones are not scored.",
        )
        parser.add_argument(
            "--maintenance_threshold",
            type=float,
            default=0.5,
            help="Failure risk at which a drone gets a maintenance alert (once per episode).",
        )


class CompactOptions(PipelineOptions):
    """Which dataset and days of the lake to compact, into files of which size. ``--input`` is the lake root."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--dataset", choices=sorted(RULES), default=None, help="The dataset to compact.")
        parser.add_argument(
            "--dt",
            action="append",
            default=None,
            help="A day (YYYY-MM-DD) whose partitions to compact; repeat for more (default: every day).",
        )
        parser.add_argument(
            "--target_file_mb",
            type=float,
            default=DEFAULT_TARGET_FILE_MB,
            help="Size of a compacted file, in MB of Arrow memory (Parquet on disk is smaller); a smaller partition becomes one file.",
        )
        parser.add_argument(
            "--settle_minutes",
            type=float,
            default=DEFAULT_SETTLE_MINUTES,
            help=f"A {lake.DRONE} partition whose newest file is younger than this is skipped: a running stream may still write to it.",
        )
