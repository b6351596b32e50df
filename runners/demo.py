"""``make demo``: the whole system on the embedded stack, until Ctrl-C (or ``--duration``).

Starts the local broker, the stream pipeline (``--streaming`` on Prism, built once by Go;
``--follow`` where Go is missing), the alert desk and the drone simulator — three weeks
of patrols on a fast simulated clock, so the weekday and hour-of-day answers have
something to compare (``--duration N`` stops after N seconds); loads an NYPD
history sample through the CSV loader into the lake; runs the analysis once the first
drone windows are in the lake, and again when the demo stops, so the last report holds
what operators resolved meanwhile; prints where everything is. Everything it started is
stopped on the way out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parents[1]
# The demo patrols three weeks of simulated time, 1,200 × as fast as real time: it reaches
# today after about 25 minutes, and its first hour-long windows close within seconds.
DEMO_PATROL_DAYS = 21
DEMO_TIME_SCALE = 1200
DEMO_WINDOW_MINUTES = 60
FIRST_WINDOWS_WAIT_S = 150
SHARED_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "pvi_fy2017_sample.csv"


def say(text: str) -> None:
    print(f"demo | {text}", flush=True)


def python(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


def run(command: list[str], what: str) -> subprocess.CompletedProcess:
    """Run a step to completion; show its last output line (the tools end with a JSON summary)."""
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    last = (completed.stdout.strip().splitlines() or [""])[-1]
    if completed.returncode != 0:
        say(f"{what} failed: {(completed.stderr.strip().splitlines() or ['no message'])[-1]}")
    elif last:
        say(f"{what}: {last}")
    return completed


@contextlib.contextmanager
def background(command: list[str], what: str, log: Path) -> Iterator[subprocess.Popen]:
    """A long-running step whose output goes to ``log``; SIGINT, then SIGTERM, on the way out."""
    with open(log, "w") as output:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT)
    say(f"{what} started (log: {log})")
    try:
        yield process
    finally:
        for signum, grace in ((signal.SIGINT, 60), (signal.SIGTERM, 10)):
            if process.poll() is None:
                process.send_signal(signum)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(grace)
        if process.poll() is None:
            process.kill()
        say(f"{what} stopped")


def lake_rows(lake: Path, dataset: str) -> int:
    import pyarrow.dataset as ds

    folder = lake / dataset
    return ds.dataset(folder, format="parquet", partitioning="hive").count_rows() if folder.exists() else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("DRONECOP_DEMO_PORT", "9092")))
    parser.add_argument("--desk_port", type=int, default=8080)
    parser.add_argument("--rate", type=int, default=200, help="simulated messages per second")
    parser.add_argument("--duration", type=float, default=0, help="seconds to run; 0 = until Ctrl-C")
    parser.add_argument("--lake", default="./lake")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    state = REPO_ROOT / ".dronecop"
    state.mkdir(exist_ok=True)
    bootstrap = f"127.0.0.1:{args.port}"
    lake = (REPO_ROOT / args.lake).resolve()
    began = time.monotonic()

    if run(python("runners.local", "up", f"--port={args.port}"), "broker").returncode != 0:
        return 2
    try:
        with contextlib.ExitStack() as stack:
            mode = stream_mode()
            stack.enter_context(
                background(
                    python(
                        "pipelines.stream",
                        mode,
                        f"--window_minutes={DEMO_WINDOW_MINUTES}",
                        f"--bootstrap_servers={bootstrap}",
                        f"--output={lake}",
                    ),
                    f"stream pipeline ({mode})",
                    state / "demo-stream.log",
                )
            )
            token = secrets.token_urlsafe(16)
            stack.enter_context(
                background(
                    python(
                        "alert_desk",
                        f"--bootstrap_servers={bootstrap}",
                        f"--port={args.desk_port}",
                        f"--lake={lake}",
                        f"--db=sqlite:///{state / 'alerts.db'}",
                        f"--token=operator={token}",
                    ),
                    f"alert desk on http://127.0.0.1:{args.desk_port}/ — sign in with token {token}",
                    state / "demo-desk.log",
                )
            )
            stack.enter_context(
                background(
                    python(
                        "simulator",
                        f"--bootstrap_servers={bootstrap}",
                        f"--rate={args.rate}",
                        "--drones=50",
                        f"--lake={lake}",
                        f"--duration={args.duration or 10**9}",
                        f"--time_scale={DEMO_TIME_SCALE}",
                        f"--start_time={patrols_start():%Y-%m-%dT%H:%M:%SZ}",
                    ),
                    f"drone simulator ({args.rate} messages/s, {DEMO_PATROL_DAYS} days of patrols from "
                    f"{patrols_start():%Y-%m-%d} at {DEMO_TIME_SCALE} × real time)",
                    state / "demo-simulator.log",
                )
            )
            load_history(bootstrap, lake, state)
            if wait_for_drone_rows(lake, stop):
                analyse(lake)
            say(f"lake: {lake} — drone rows {lake_rows(lake, 'drone'):,}, history rows {lake_rows(lake, 'history'):,}")
            say(f"alerts: {open_alerts(args.desk_port, token)} open on the desk (topic drone-alerts on {bootstrap})")
            say("Ctrl-C stops everything")
            stop.wait(max(0.0, args.duration - (time.monotonic() - began)) if args.duration else None)
        say("rebuilding the report with everything stored and resolved")
        analyse(lake)
        say(f"final lake: drone rows {lake_rows(lake, 'drone'):,}, history rows {lake_rows(lake, 'history'):,}")
    finally:
        run(python("runners.local", "down"), "broker")
    return 0


def patrols_start() -> datetime:
    """Midnight UTC, :data:`DEMO_PATROL_DAYS` days ago: where the demo's simulated clock starts."""
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=DEMO_PATROL_DAYS)


def stream_mode() -> str:
    """``--streaming`` on Prism where it can be had (built into the cache the first time), else ``--follow``."""
    from runners.prism import PrismUnavailable, prism_binary

    say("stream pipeline: Prism, Beam's streaming runner (built by Go into .dronecop/cache the first time: ~3 min)")
    try:
        prism_binary()
    except PrismUnavailable as reason:
        say(f"{reason}; the stream pipeline drains repeatedly instead (--follow)")
        return "--follow"
    return "--streaming"


def wait_for_drone_rows(lake: Path, stop: threading.Event) -> bool:
    """Until the first drone windows closed and landed (or Ctrl-C); False if stopped first."""
    deadline = FIRST_WINDOWS_WAIT_S
    while not lake_rows(lake, "drone") and deadline > 0:
        if stop.wait(1):
            return False
        deadline -= 1
    return not stop.is_set()


def open_alerts(port: int, token: str) -> str:
    """How many open alerts the desk holds, asked through its API."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/alerts?status=open", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return str(json.load(answer)["total"])
    except (OSError, KeyError, ValueError):
        return "(desk not answering)"


def load_history(bootstrap: str, lake: Path, state: Path) -> None:
    """The FY2017 sample through the loader and the history pipeline, when the sample is here."""
    if not SHARED_SAMPLE.exists():
        say(f"history: no sample at {SHARED_SAMPLE}; load your own with `python -m csv_ingest FILE.csv`")
        return
    checkpoint, rejects = state / "demo-history.ckpt", state / "demo-history.rejects.csv"
    if forget_load_the_lake_lost(lake, checkpoint, rejects):
        say("history: the lake holds none of the sample loaded before: loading it again")
    run(
        python("csv_ingest", str(SHARED_SAMPLE), f"--bootstrap_servers={bootstrap}", f"--checkpoint={checkpoint}", f"--rejects={rejects}"),
        "CSV loader",
    )
    run(python("pipelines.history", "--drain", f"--bootstrap_servers={bootstrap}", f"--output={lake}"), "history pipeline")


def forget_load_the_lake_lost(lake: Path, checkpoint: Path, rejects: Path) -> bool:
    """Delete the loader's checkpoint (and rejects) when the lake has no history rows; True if it did.

    Otherwise a demo run after ``lake/`` was deleted would find the sample "already loaded"
    and show no history. Loading again is safe: the same lines make the same batches, and
    the history lake keeps each summons number once.
    """
    if not checkpoint.exists() or lake_rows(lake, "history"):
        return False
    checkpoint.unlink()
    rejects.unlink(missing_ok=True)
    return True


def analyse(lake: Path) -> None:
    """The analysis of what the demo stored: its answers on the terminal, the report's address."""
    report = REPO_ROOT / "reports" / "latest"
    completed = run(python("pipelines.analysis", f"--input={lake}", f"--output={report}"), "analysis")
    if completed.returncode == 0:
        for line in completed.stdout.strip().splitlines()[:-1]:
            say(f"  {line}")
        say(f"report: {report / 'index.html'}")


if __name__ == "__main__":
    sys.exit(main())
