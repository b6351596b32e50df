"""What the benchmarks share: an embedded broker to run against and simulated traffic."""

from __future__ import annotations

import contextlib
import itertools
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from runners.brokers import broker_command, default_engine, free_port
from runners.local import start, stop
from runners.workspace import using_home
from simulator.fleet import FleetSettings, fleet_messages

BENCH_START = datetime(2026, 11, 28, 17, 0, tzinfo=timezone.utc)


@contextlib.contextmanager
def embedded_broker(engine: str | None = None) -> Iterator[str]:
    """A broker of the default engine on a free loopback port, for the benchmark's lifetime."""
    with tempfile.TemporaryDirectory() as home:
        with using_home(Path(home)):
            command = broker_command(engine or default_engine(), free_port())
        process = start(command)
        try:
            yield f"127.0.0.1:{command.port}"
        finally:
            stop(process)


def print_side_by_side(count: int, ours: tuple[str, float], plain: tuple[str, float], unit: str = "msg/s") -> None:
    """Both timings, their rates and the ratio of ours to the plain baseline, as every benchmark prints them."""
    (our_name, our_seconds), (plain_name, plain_seconds) = ours, plain
    for name, seconds in (ours, plain):
        print(f"{name:<24} {seconds:8.2f} s  {count / seconds:12,.0f} {unit}")
    print(f"ratio ({our_name} / {plain_name}): {plain_seconds / our_seconds:.2f}")


def simulated_messages(count: int, rate: float = 1000.0) -> Iterator[tuple[bytes, bytes, int]]:
    """The simulator's first ``count`` messages (seed 1, fixed start): key, value and event time (ms)."""
    settings = FleetSettings(start_ms=int(BENCH_START.timestamp() * 1000), rate=rate)
    return ((key, value, event_ms) for key, value, _, event_ms in itertools.islice(fleet_messages(settings), count))
