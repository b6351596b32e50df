"""Soak: the stream pipeline under steady load, watched for lag, memory and loss.

    python bench/soak.py [--mode streaming|follow] [--rate 5000] [--minutes 10] [--max_lag_seconds S]   # make soak

On an embedded broker (loopback only), the drone simulator sends ``--rate`` messages a
second for ``--minutes`` while ``pipelines.stream`` writes a lake in a temporary folder:
``--streaming`` on Prism with one-minute windows (the default), or ``--follow``. Every
``--sample_seconds`` it records the consumer group's lag (messages on the broker not yet
committed by the pipeline: streaming commits only what the lake holds, so an open window
counts as lag) and the pipeline's resident memory (its process tree, Prism included, also per process name).
When the simulator is done, a streaming soak sends one message an hour of event time
later, which closes the last windows (as further traffic would); then it waits for the
lag to reach that message alone, stops the pipeline with SIGINT, and compares the lake
with the topic: every message on the broker exactly once in the lake. Exit 1 when the
lag ever exceeds ``--max_lag_seconds`` of traffic, when memory in the last third of the
run is more than 25 % (+50 MB) above the first third, or when anything is lost or doubled.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pyarrow.dataset as ds

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.common import embedded_broker  # noqa: E402
from tests.support.kafka_io import produce_all  # noqa: E402
from transforms.contract import DroneMessage, encode_message  # noqa: E402
from transforms.kafka_settings import KafkaSettings, ensure_topics  # noqa: E402
from transforms.kafka_source import plan_spans  # noqa: E402

DRAIN_DEADLINE_S = 300
CLOSING_ID = "soak-closing"
# How much lag each mode may show, in seconds of traffic: a drain's poll, or a stream's open window and its landing.
DEFAULT_MAX_LAG_S = {"follow": 30.0, "streaming": 120.0}
MEMORY_GROWTH = 1.25
MEMORY_SLACK_MB = 50


@dataclass(frozen=True)
class Sample:
    seconds: float
    lag: int
    rss_mb_by_process: dict[str, float]  # by process name: which one grows, Prism or our Python

    @property
    def rss_mb(self) -> float:
        return sum(self.rss_mb_by_process.values())


def tree_rss_mb(pid: int) -> dict[str, float]:
    """Resident memory of a process and all its descendants, from /proc, summed per process name."""
    by_name: dict[str, float] = {}
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            status = Path(f"/proc/{current}/status").read_text()
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            name = fields["Name"].strip()
            by_name[name] = by_name.get(name, 0.0) + int(fields["VmRSS"].split()[0]) / 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
    return by_name


def early_and_late(values: list[float]) -> tuple[float, float]:
    """The median of the first third of ``values`` and of the last third."""
    third = max(len(values) // 3, 1)
    return statistics.median(values[:third]), statistics.median(values[-third:])


def growth_by_process(samples: list[Sample]) -> dict[str, tuple[float, float]]:
    """Each process name's median RSS in the first and the last third of the samples."""
    names = sorted({name for sample in samples for name in sample.rss_mb_by_process})
    return {name: early_and_late([sample.rss_mb_by_process.get(name, 0.0) for sample in samples]) for name in names}


def group_lag(settings: KafkaSettings, topic: str, group_id: str) -> int:
    """Messages on the broker past the group's committed offsets."""
    return sum(span.stop - span.start for span in plan_spans(settings, topic, group_id))


def message_ids_on_topic(settings: KafkaSettings, topic: str) -> list[str]:
    from tests.support.kafka_io import read_all

    ids = [orjson.loads(record.value)["message_id"] for record in read_all(settings, topic)]
    return [message_id for message_id in ids if message_id != CLOSING_ID]


def send_closing_message(settings: KafkaSettings, topic: str) -> None:
    """One valid message an hour after now in event time: the watermark passes every window of the load."""
    moment = datetime.fromtimestamp(time.time() + 3600, tz=timezone.utc)
    message = DroneMessage(CLOSING_ID, "drone-soak", moment, 40.75, -73.99)
    produce_all(settings, topic, [(message.drone_id.encode(), encode_message(message), message.event_ms)])


def message_ids_in_lake(lake: Path) -> list[str]:
    drone = lake / "drone"
    if not drone.is_dir():
        return []
    files = [str(path) for path in drone.rglob("*.parquet") if not any(part.startswith("_") for part in path.parts)]
    return ds.dataset(files, format="parquet").to_table(columns=["message_id"]).column("message_id").to_pylist()


def memory_is_flat(samples: list[Sample]) -> tuple[bool, float, float]:
    early, late = early_and_late([sample.rss_mb for sample in samples])
    return late <= early * MEMORY_GROWTH + MEMORY_SLACK_MB, early, late


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(DEFAULT_MAX_LAG_S), default="streaming")
    parser.add_argument("--rate", type=int, default=5000, help="messages per second (default: %(default)s)")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the load lasts (default: %(default)s)")
    parser.add_argument("--sample_seconds", type=float, default=10.0)
    parser.add_argument(
        "--max_lag_seconds", type=float, default=None, help="lag allowed, in seconds of traffic (default: 30 following, 120 streaming)"
    )
    parser.add_argument("--poll_seconds", type=float, default=1.0, help="the pipeline's --poll_seconds, following")
    args = parser.parse_args()
    if args.max_lag_seconds is None:
        args.max_lag_seconds = DEFAULT_MAX_LAG_S[args.mode]
    return args


def main() -> int:
    args = parse_args()
    run = uuid.uuid4().hex[:8]
    topic, group_id = f"soak-{run}", f"soak-{run}"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with embedded_broker() as bootstrap, tempfile.TemporaryDirectory(prefix="dronecop-soak-") as work:
        settings = KafkaSettings(bootstrap)
        lake = Path(work) / "lake"
        ensure_topics(settings, [topic, f"{topic}-alerts", f"{topic}-dead"], partitions={topic: 4})
        with open(Path(work) / "pipeline.log", "w") as log:
            mode = (
                ["--streaming", "--window_minutes=1"] if args.mode == "streaming" else ["--follow", f"--poll_seconds={args.poll_seconds}"]
            )
            pipeline = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pipelines.stream",
                    *mode,
                    f"--bootstrap_servers={bootstrap}",
                    f"--topic={topic}",
                    f"--alerts_topic={topic}-alerts",
                    f"--dead_letter_topic={topic}-dead",
                    f"--group_id={group_id}",
                    f"--output={lake}",
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        simulator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "simulator",
                f"--bootstrap_servers={bootstrap}",
                f"--topic={topic}",
                f"--rate={args.rate}",
                f"--duration={args.minutes * 60}",
                "--drones=500",
                "--photos=none",  # the stream is soaked: ten minutes of photos would be 6 GB
                f"--start_time={datetime.now(timezone.utc).isoformat()}",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        try:
            samples = watch(settings, topic, group_id, pipeline, simulator, args)
            if args.mode == "streaming":
                send_closing_message(settings, topic)
            drained_in = wait_for_lag(settings, topic, group_id, pipeline, 1 if args.mode == "streaming" else 0)
        except SystemExit:
            simulator.kill()
            kept = REPO_ROOT / ".dronecop" / "soak-pipeline.log"
            kept.parent.mkdir(exist_ok=True)
            shutil.copyfile(Path(work) / "pipeline.log", kept)
            sys.stderr.write(f"the pipeline's log is kept in {kept}\n")
            raise
        os.killpg(pipeline.pid, signal.SIGINT)
        pipeline.wait(120)
        on_topic, in_lake = message_ids_on_topic(settings, topic), message_ids_in_lake(lake)
    return report(args, samples, drained_in, on_topic, in_lake, simulator.returncode)


def watch(
    settings: KafkaSettings, topic: str, group_id: str, pipeline: subprocess.Popen, simulator: subprocess.Popen, args: argparse.Namespace
) -> list[Sample]:
    """Samples of lag and memory every ``sample_seconds`` while the simulator runs."""
    started, samples = time.monotonic(), []
    print(f"{'time':>6} {'lag (msgs)':>11} {'pipeline RSS':>13}", flush=True)
    while simulator.poll() is None:
        if pipeline.poll() is not None:
            raise SystemExit(f"soak: the pipeline exited with {pipeline.returncode} during the load")
        sample = Sample(time.monotonic() - started, group_lag(settings, topic, group_id), tree_rss_mb(pipeline.pid))
        samples.append(sample)
        parts = ", ".join(f"{name} {mb:.0f}" for name, mb in sorted(sample.rss_mb_by_process.items()))
        print(f"{sample.seconds:5.0f}s {sample.lag:11,} {sample.rss_mb:10.0f} MB  ({parts})", flush=True)
        with contextlib.suppress(subprocess.TimeoutExpired):
            simulator.wait(args.sample_seconds)
    return samples


def wait_for_lag(settings: KafkaSettings, topic: str, group_id: str, pipeline: subprocess.Popen, left: int) -> float:
    """Seconds until the pipeline has committed everything on the topic but ``left`` messages."""
    started = time.monotonic()
    while group_lag(settings, topic, group_id) > left:
        if time.monotonic() - started > DRAIN_DEADLINE_S or pipeline.poll() is not None:
            raise SystemExit(f"soak: the pipeline did not catch up within {DRAIN_DEADLINE_S} s")
        time.sleep(1.0)
    return time.monotonic() - started


def report(
    args: argparse.Namespace, samples: list[Sample], drained_in: float, on_topic: list[str], in_lake: list[str], simulator_exit: int | None
) -> int:
    max_lag = max((sample.lag for sample in samples), default=0)
    flat, early_mb, late_mb = memory_is_flat(samples) if samples else (False, 0.0, 0.0)
    lost = len(set(on_topic) - set(in_lake))
    doubled = len(in_lake) - len(set(in_lake))
    lag_ok = max_lag <= args.max_lag_seconds * args.rate
    print(f"load           {args.rate:,} messages/s for {args.minutes:g} min, --{args.mode}: {len(on_topic):,} messages on the broker")
    print(
        f"lag            max {max_lag:,} messages ({max_lag / args.rate:.1f} s of traffic; limit {args.max_lag_seconds:g} s)"
        f", caught up {drained_in:.1f} s after the load"
    )
    print(f"memory         median {early_mb:.0f} MB in the first third, {late_mb:.0f} MB in the last: {'flat' if flat else 'GROWING'}")
    for name, (early, late) in growth_by_process(samples).items():
        print(f"  {name:<13}{early:6.0f} MB → {late:6.0f} MB")
    print(f"lake           {len(in_lake):,} rows: lost {lost:,}, doubled {doubled:,}")
    healthy = lag_ok and flat and lost == doubled == 0 and simulator_exit == 0
    print("soak: passed" if healthy else "soak: FAILED")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
