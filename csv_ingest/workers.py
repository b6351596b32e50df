"""A CSV file's batches read, checked, typed and encoded in worker processes, handed over in the file's order.

One Python process reads, checks, types and encodes about 300,000 records a second:
less than the broker takes. So the loader's own process only sends, and regions of the
file (:func:`csv_ingest.batches.regions`) are read by ``--workers`` worker processes,
each a plain ``python`` reading region jobs from its stdin and writing the region's
encoded batches to its stdout. A region's batches do not depend on who reads it, so
the messages are the ones one process would send, byte for byte.

Where a region starts is a guess until the region before it is read: the first line
after a grid point is a record's start unless a quoted line break or an overlong line
runs over it. A region read from a wrong guess is read again, in this process, from
where the region before really ended. A worker that fails or dies hands its work back
to this process, which reads on from the last batch handed over.

Workers live in their own session (a Ctrl-C at the terminal is the loader's to handle)
and end when their stdin closes, so they never outlive the loader, however it ends.
"""

from __future__ import annotations

import os
import pickle
import resource
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator, NamedTuple

from csv_ingest.batches import CHUNK_BYTES, REGION_BYTES, Batch, OnReject, Region, read_batches, region_batches, regions
from csv_ingest.records import DateWindow, Layout, Rejected
from csv_ingest.source import Position
from transforms.history_contract import encode_history_batch

# Regions queued per worker: one being read while the loader takes the one before.
JOBS_PER_WORKER = 2
# Below this many regions left to read, starting workers costs more than it saves.
MIN_PARALLEL_REGIONS = 4
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# With one core, a worker only adds copying; beyond two, the sending process is the limit.
USABLE_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
DEFAULT_WORKERS = 2 if USABLE_CORES > 1 else 0


@dataclass(frozen=True, slots=True)
class Reading:
    """How a file is cut into batches and what each message says: everything a worker needs besides its region."""

    path: Path
    layout: Layout
    window: DateWindow
    batch_lines: int
    fingerprint: str
    chunk_bytes: int = CHUNK_BYTES
    region_bytes: int = REGION_BYTES


class EncodedBatch(NamedTuple):
    """One batch as it is sent: the rejects met since the batch before, its message (None when empty) and its end.

    A named tuple: workers hand batches over by the thousand, and a tuple unpickles fastest.
    """

    rejects: list[tuple[Rejected, str]]
    rows: int
    first_line: int
    message: tuple[bytes, bytes] | None
    end: Position


@dataclass(frozen=True, slots=True)
class WorkerFailed:
    """What a worker sends instead of a region's batches when reading it raised."""

    reason: str


def encoded(reading: Reading, read: Callable[[OnReject], Iterator[Batch]]) -> Iterator[EncodedBatch]:
    """The batches ``read`` gives, encoded, each with the rejects met while it was read."""
    rejects: list[tuple[Rejected, str]] = []
    for batch in read(lambda rejected, raw: rejects.append((rejected, raw))):
        met, rejects = rejects, []
        columns = batch.rows.columns
        if len(batch.rows):
            yield EncodedBatch(met, len(batch.rows), columns["line"][0], encode_history_batch(reading.fingerprint, columns), batch.end)
        else:
            yield EncodedBatch(met, 0, batch.end.line, None, batch.end)


def encoded_batches(reading: Reading, start: Position) -> Iterator[EncodedBatch]:
    """Every batch from ``start`` to the file's end, read in this process."""
    return encoded(
        reading,
        lambda on_reject: read_batches(
            reading.path, start, reading.layout, reading.window, reading.batch_lines, on_reject, reading.chunk_bytes, reading.region_bytes
        ),
    )


def encoded_region(reading: Reading, region: Region) -> list[EncodedBatch]:
    """One region's batches: a worker's job."""
    return list(
        encoded(
            reading,
            lambda on_reject: region_batches(
                reading.path, region, reading.layout, reading.window, reading.batch_lines, on_reject, reading.chunk_bytes
            ),
        )
    )


class WorkerLost(Exception):
    """A worker died, or could not read its region."""


class Worker:
    """One worker process and its two pipes."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from csv_ingest.workers import serve; serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._jobs: IO[bytes] = self._process.stdin
        self._results: IO[bytes] = self._process.stdout

    @property
    def pid(self) -> int:
        return self._process.pid

    def send(self, job: tuple[Reading, Region] | None) -> None:
        try:
            pickle.dump(job, self._jobs, protocol=pickle.HIGHEST_PROTOCOL)
            self._jobs.flush()
        except OSError as error:
            raise WorkerLost(f"worker {self._process.pid} stopped taking work ({error.strerror})") from None

    def receive(self) -> object:
        try:
            result = pickle.load(self._results)
        except (EOFError, OSError, pickle.UnpicklingError):
            raise WorkerLost(f"worker {self._process.pid} ended (status {self._process.wait()})") from None
        if isinstance(result, WorkerFailed):
            raise WorkerLost(f"worker {self._process.pid} failed: {result.reason}")
        return result

    def close(self) -> None:
        """Close the pipes (the worker ends at its stdin's end) and reap it."""
        for pipe in (self._jobs, self._results):
            try:
                pipe.close()
            except OSError:
                pass
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


class FileBatches:
    """Every batch from ``start`` to the file's end, encoded; iterate once, then :meth:`close`.

    Read by ``workers`` processes when there is enough file left to share, else by this
    one. :attr:`regions_read_again` counts regions whose guessed start was wrong;
    :attr:`workers_peak_rss_kb` is the sum of the workers' peak memory, once they ended
    after the last region.
    """

    def __init__(self, reading: Reading, start: Position, workers: int, note: Callable[[str], None]):
        self._reading = reading
        self._start = start
        self._note = note
        worth_sharing = reading.path.stat().st_size - start.offset >= MIN_PARALLEL_REGIONS * reading.region_bytes
        self._workers = [Worker() for _ in range(workers if worth_sharing else 0)]
        self.regions_read_again = 0
        self.workers_peak_rss_kb = 0

    @property
    def worker_pids(self) -> list[int]:
        return [worker.pid for worker in self._workers]

    def __iter__(self) -> Iterator[EncodedBatch]:
        if not self._workers:
            yield from encoded_batches(self._reading, self._start)
            return
        here = self._start
        try:
            for region, batches in self._read_regions():
                if region.start != here:
                    self.regions_read_again += 1
                    batches = encoded_region(self._reading, Region(here, region.stop))
                for batch in batches:
                    yield batch
                    here = batch.end
            self._stop_workers()
        except WorkerLost as lost:
            self._note(f"{lost}: reading on in this process from line {here.line:,}")
            self.close()
            yield from encoded_batches(self._reading, here)

    def _read_regions(self) -> Iterator[tuple[Region, list[EncodedBatch]]]:
        """Each region with the batches a worker read from its guessed start, in the file's order."""
        upcoming = regions(self._reading.path, self._start, self._reading.region_bytes)
        queued: deque[tuple[Region, Worker]] = deque()
        handed_out = 0

        def hand_out() -> None:
            nonlocal handed_out
            while len(queued) < JOBS_PER_WORKER * len(self._workers):
                region = next(upcoming, None)
                if region is None:
                    return
                worker = self._workers[handed_out % len(self._workers)]
                worker.send((self._reading, region))
                queued.append((region, worker))
                handed_out += 1

        hand_out()
        while queued:
            region, worker = queued.popleft()
            batches = worker.receive()
            hand_out()
            yield region, batches  # type: ignore[misc]

    def _stop_workers(self) -> None:
        """Ask each idle worker for its peak memory, which also ends it."""
        for worker in self._workers:
            worker.send(None)
            self.workers_peak_rss_kb += int(worker.receive())  # type: ignore[call-overload]
        self.close()

    def close(self) -> None:
        for worker in self._workers:
            worker.close()
        self._workers = []


def peak_memory_kb() -> int:
    """This process's peak resident memory since it started its program.

    Linux's ``VmHWM``: ``ru_maxrss`` would also count the pages of the parent it was forked from.
    """
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def serve() -> None:
    """A worker's life: read each region job from stdin, write its batches to stdout; end at stdin's end.

    ``None`` asks for the worker's peak memory (kB), its last answer.
    """
    jobs, results = sys.stdin.buffer, sys.stdout.buffer
    try:
        while (job := pickle.load(jobs)) is not None:
            reading, region = job
            try:
                answer: object = encoded_region(reading, region)
            except Exception as error:  # noqa: BLE001 - handed back: the loader reads the region itself and reports
                answer = WorkerFailed(f"{type(error).__name__}: {error}")
            pickle.dump(answer, results, protocol=pickle.HIGHEST_PROTOCOL)
            results.flush()
        pickle.dump(peak_memory_kb(), results)
        results.flush()
    except (EOFError, BrokenPipeError):
        return
