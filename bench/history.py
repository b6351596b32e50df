"""The NYPD history at city scale: loader → history drain → merge, on one file in one run.

    python bench/history.py [--rows 1000000] [--slice_records N] [--engine kafka|tansu] [history drain flags…]

Writes a FY2017-layout file of ``--rows`` rows (as ``bench/ingest.py`` does: shapes from
the real sample when it is there, 365 issue dates, unique summons numbers), then times,
each as a user runs it and each in its own process: ``python -m csv_ingest`` (50 records
per message) and ``python -m pipelines.history --drain`` over what it sent (its slices,
then its merge into a few files per day). Prints both rates, their ratio (the target is
drain ≥ 0.5 × loader), the drain's peak memory (target ≤ 1 GB for 10,000,000 rows) and
the lake's files per day, and checks that the lake holds every summons number once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.common import embedded_broker  # noqa: E402
from bench.ingest import run_loader, write_synthetic_csv  # noqa: E402
from runners.brokers import ENGINES  # noqa: E402
from transforms import lake  # noqa: E402
from transforms.kafka_settings import NYPD_HISTORY, TOPICS_BY_NAME, KafkaSettings, ensure_topics  # noqa: E402


def run_measured(command: list[str]) -> tuple[dict, float, float]:
    """Run ``command``; its last JSON line, its wall seconds and its peak resident memory in MB."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE)
    output = process.stdout.read() if process.stdout else b""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} exited {process.returncode}")
    return orjson.loads(output.splitlines()[-1]), time.perf_counter() - started, usage.ru_maxrss / 1024


def lake_census(root: Path) -> tuple[int, int, int]:
    """(rows, distinct summons numbers, most files in one day) of the history lake, read as a BI tool would."""
    import duckdb

    pattern = str(root / lake.HISTORY / "**" / "*.parquet")
    rows, distinct = duckdb.sql(
        f"select count(*), count(distinct summons_number) from read_parquet('{pattern}', hive_partitioning=true)"
    ).fetchall()[0]
    most_files = max((len(list(day.glob("*.parquet"))) for day in (root / lake.HISTORY).glob("dt=*")), default=0)
    return rows, distinct, most_files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--slice_records", type=int, default=None, help="the drain's --slice_records (default: its own)")
    parser.add_argument("--engine", choices=ENGINES, default=None, help="the embedded broker (default: the machine's)")
    args, drain_flags = parser.parse_known_args()
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-history-")))
        bootstrap = stack.enter_context(embedded_broker(args.engine))
        path = work / "pvi_fy2017_synthetic.csv"
        write_synthetic_csv(path, args.rows)
        topic = f"bench-history-{os.getpid()}"
        ensure_topics(KafkaSettings(bootstrap), [topic], partitions={topic: TOPICS_BY_NAME[NYPD_HISTORY].partitions})
        started = time.perf_counter()
        loaded = run_loader(bootstrap, topic, path, work, [])
        load_s = time.perf_counter() - started
        slicing = [f"--slice_records={args.slice_records}"] if args.slice_records else []
        drained, drain_s, drain_mb = run_measured(
            [
                sys.executable,
                "-m",
                "pipelines.history",
                "--drain",
                f"--bootstrap_servers={bootstrap}",
                f"--topic={topic}",
                f"--dead_letter_topic={topic}-dead",
                f"--output={work / 'lake'}",
                *slicing,
                *drain_flags,
            ]
        )
        rows, distinct, most_files = lake_census(work / "lake")
    loader_rate, drain_rate = args.rows / load_s, args.rows / drain_s
    print(f"rows                  {args.rows:>12,}   (loader sent {loaded.get('sent', 0):,})")
    print(f"csv_ingest            {loader_rate:>12,.0f} rows/s   ({load_s:.1f} s)")
    print(
        f"history --drain       {drain_rate:>12,.0f} rows/s   ({drain_s:.1f} s, {drained.get('slices')} slices, "
        f"of which the merge {drained.get('merge', {}).get('seconds', '-')} s)"
    )
    print(f"ratio drain/loader    {drain_rate / loader_rate:>12.2f}   (target ≥ 0.5)")
    print(f"drain peak memory     {drain_mb:>12,.0f} MB   (target ≤ 1,024 MB at 10,000,000 rows)")
    print(f"lake                  {rows:>12,} rows, {distinct:,} summons, at most {most_files} file(s) per day")
    return 0 if rows == distinct == args.rows else 1


if __name__ == "__main__":
    sys.exit(main())
