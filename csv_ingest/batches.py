"""Cut the rows the block reader yields into Kafka messages of ``batch_lines`` records each.

Batch boundaries depend only on the file and ``batch_lines`` — never on where a block
started — so a batch sent twice, once before a crash and once after, has the same key and
the same bytes. Rejects are written in file order, each before the batch whose records
come after it is handed out, so the rejects file's length at a batch's end is what a
resume from there must cut it back to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import orjson

from csv_ingest.blocks import Rows
from csv_ingest.records import Rejected
from csv_ingest.source import OnReject, Position

FoundReject = tuple[int, Rejected, str]


@dataclass(frozen=True, slots=True)
class Batch:
    """The records of one message: the JSON array of their arrays, and where reading resumes after them."""

    first_line: int
    last_line: int
    size: int
    rows: bytes
    end: Position


def encode_batch(file_fingerprint: str, fields: Sequence[str], batch: Batch) -> tuple[bytes, bytes]:
    """The Kafka key and value of one batch: same file and lines → same key and same bytes.

    The value names the record fields once and carries each record as the array of its
    values in that order (``transforms.history.parse_history_batch`` reads it back).
    """
    value = orjson.dumps({"file": file_fingerprint, "first_line": batch.first_line, "last_line": batch.last_line,
                          "fields": fields, "rows": orjson.Fragment(batch.rows)})  # fmt: skip
    return f"{file_fingerprint}:{batch.first_line}".encode(), value


class Batcher:
    """Gathers rows across blocks into batches of ``batch_lines``, writing rejects in file order."""

    def __init__(self, batch_lines: int, on_reject: OnReject):
        self._batch_lines = batch_lines
        self._on_reject = on_reject
        self._pieces: list[memoryview] = []
        self._size = 0
        self._first_line = 0
        self._last_line = 0

    def add(self, rows: Rows) -> Iterator[Batch]:
        """Every batch these rows complete; the rows left over wait for the next block."""
        done, rejects = 0, iter(rows.rejects)
        pending = next(rejects, None)
        while done < len(rows):
            if not self._size:
                self._first_line = int(rows.lines[done])
            upto = min(len(rows), done + self._batch_lines - self._size)
            self._pieces.append(rows.json[rows.starts[done] : rows.starts[upto]])
            self._size += upto - done
            self._last_line = int(rows.lines[upto - 1])
            done = upto
            if self._size == self._batch_lines:
                pending = self._write_rejects(pending, rejects, before=done)
                yield self._take(Position(int(rows.end_offsets[done - 1]), int(rows.end_lines[done - 1])))
        self._write_rejects(pending, rejects, before=len(rows) + 1)

    def tail(self, end: Position) -> Batch | None:
        """The last, short batch of the file, if any rows are left; ``end`` is the end of the file."""
        return self._take(end) if self._size else None

    def _take(self, end: Position) -> Batch:
        *pieces, last = self._pieces
        rows = b"".join((b"[", *pieces, last[:-1], b"]"))  # every row is followed by a comma: the last one drops it
        batch = Batch(self._first_line, self._last_line, self._size, rows, end)
        self._pieces, self._size = [], 0
        return batch

    def _write_rejects(self, pending: FoundReject | None, rejects: Iterator[FoundReject], before: int) -> FoundReject | None:
        """Write the rejects with fewer than ``before`` rows ahead of them; the first one not written yet."""
        while pending is not None and pending[0] < before:
            _ahead, rejected, raw = pending
            self._on_reject(rejected, raw)
            pending = next(rejects, None)
        return pending
