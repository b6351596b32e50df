"""``python -m csv_ingest FILE``: load an NYPD "Parking Violations Issued" CSV into Kafka, resumably.

Run the same command again after a crash or Ctrl-C and it goes on from the last batch
the broker acknowledged; run it on a finished file and it says "already loaded". The
checkpoint and the rejects file default to ``FILE.ckpt`` and ``FILE.rejects.csv`` (the
file's name) in the current directory, not beside the file, so read-only data folders
and mounted buckets load too. Exit status: 0 done, 1 failed, 2 bad input (unknown
header, changed file under an old checkpoint, bad flags, no broker within ``--broker_timeout``
at start), 130 interrupted. A broker lost during the load pauses it until the broker is back.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from csv_ingest.loader import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, LoadError, LoadOptions, load
from csv_ingest.workers import DEFAULT_WORKERS
from transforms.kafka_settings import (
    NYPD_HISTORY,
    KafkaSettingsError,
    add_broker_timeout_argument,
    add_kafka_arguments,
    settings_from_args,
)

MAX_BATCH_LINES = 5000
MAX_WORKERS = 64


def batch_lines(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_BATCH_LINES:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_BATCH_LINES}")
    return value


def workers(text: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_WORKERS}")
    return value


def rate(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 (unlimited) or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m csv_ingest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="the CSV file (43-column FY2017+ or 51-column FY2014-FY2016 layout)")
    parser.add_argument("--batch_lines", type=batch_lines, default=50, help="records per Kafka message (default: 50)")
    add_kafka_arguments(parser)
    add_broker_timeout_argument(parser)
    parser.add_argument("--topic", default=NYPD_HISTORY, help="topic to load into (default: %(default)s)")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint file (default: ./FILE.ckpt)")
    parser.add_argument("--rejects", type=Path, help="rejected records as CSV line,reason,raw (default: ./FILE.rejects.csv)")
    parser.add_argument("--rate", type=rate, default=0.0, help="at most this many rows per second (default: 0, unlimited)")
    parser.add_argument(
        "--workers",
        type=workers,
        default=DEFAULT_WORKERS,
        help="processes that read and check the file while this one sends; 0 reads in this process "
        "(default: %(default)s, from the number of cores)",
    )
    return parser


def options_from_args(args: argparse.Namespace) -> LoadOptions:
    name = args.file.name
    return LoadOptions(
        path=args.file,
        settings=settings_from_args(args),
        checkpoint=args.checkpoint or Path(f"{name}.ckpt"),
        rejects=args.rejects or Path(f"{name}.rejects.csv"),
        topic=args.topic,
        batch_lines=args.batch_lines,
        rate=args.rate,
        workers=args.workers,
        broker_timeout=args.broker_timeout,
        progress=sys.stderr.isatty(),
    )


def stop_on_signals(stop: threading.Event) -> None:
    """First Ctrl-C (or SIGTERM): finish in-flight batches and checkpoint. Second: stop at once."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("csv_ingest: stopping after the batches in flight (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def main(argv: list[str] | None = None) -> int:
    try:
        options = options_from_args(build_parser().parse_args(argv))
    except KafkaSettingsError as error:
        print(f"csv_ingest: {error}", file=sys.stderr)
        return EXIT_USAGE
    stop = threading.Event()
    stop_on_signals(stop)
    try:
        summary = load(options, stop)
    except LoadError as error:
        print(f"csv_ingest: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:
        print(f"csv_ingest: {error.filename or options.path}: {error.strerror}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("csv_ingest: stopped at once; the checkpoint holds the last acknowledged batch", file=sys.stderr)
        return EXIT_INTERRUPTED
    sys.stdout.buffer.write(summary.to_json() + b"\n")
    sys.stdout.flush()
    return EXIT_INTERRUPTED if summary.interrupted else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
