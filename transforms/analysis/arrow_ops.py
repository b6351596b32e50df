"""Pure Arrow helpers the analysis runs on: stable hashing, splitting, de-duplication, grouping.

The analysis moves whole Arrow tables between its steps, never single rows, so a step's
cost is a few vectorised kernels per table instead of Python work per row. Hashes here
are computed from the bytes alone (no per-process salt), so every worker sends the same
id to the same bucket.

Tables cross a ``GroupByKey`` as Arrow IPC bytes (:func:`to_ipc` / :func:`from_ipc`), not as
pickled objects: bytes need no pickler on either side, so any runner moves them as they are.
(Elements lost at a ``GroupByKey`` in the local runner's ``multi_threading`` mode were first
blamed on pickled tables; plain integers lose them too, ``docs/repro/``, so the analysis runs
``in_memory`` locally: see :mod:`runners.presets`.)
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.lib.stride_tricks import as_strided

NEW_YORK = "America/New_York"

_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
# _KEEP_BYTES[k] keeps the low k bytes of a little-endian word.
_KEEP_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], dtype=np.uint64)


def mix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: spreads nearby integers (consecutive summons numbers) over all bits."""
    mixed = values.astype(np.uint64, copy=True)
    mixed ^= mixed >> np.uint64(30)
    mixed *= _MIX_1
    mixed ^= mixed >> np.uint64(27)
    mixed *= _MIX_2
    mixed ^= mixed >> np.uint64(31)
    return mixed


def string_hash64(strings: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash per string from its length and its first 16 and last 8 bytes; null hashes as "".

    Equal strings always hash alike, which is all bucketing needs; plates and message ids
    differ within those bytes, so buckets stay even. Vectorised over the byte buffer: each
    word is one gather of 8 bytes per string, masked to the string's own bytes.
    """
    array = pc.fill_null(_combined(strings).cast(pa.large_string()), "")
    if len(array) == 0:
        return np.zeros(0, dtype=np.uint64)
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    first, last = int(offsets[0]), int(offsets[-1])
    data = np.zeros(last - first + 8, dtype=np.uint8)
    if last > first:
        data[: last - first] = np.frombuffer(data_buffer, dtype=np.uint8)[first:last]
    windows = as_strided(data, shape=(last - first + 1, 8), strides=(1, 1), writeable=False)
    starts = offsets[:-1] - first
    lengths = np.diff(offsets)

    def word(at: np.ndarray, keep: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(windows[at]).view("<u8").ravel() & _KEEP_BYTES[np.clip(keep, 0, 8)]

    head = word(starts, lengths)
    middle = word(np.minimum(starts + 8, last - first), lengths - 8)
    tail = word(np.maximum(starts, starts + lengths - 8), lengths)
    return mix64(head ^ mix64(middle ^ mix64(tail ^ lengths.astype(np.uint64))))


def stable_buckets(keys: pa.Array | pa.ChunkedArray, buckets: int) -> np.ndarray:
    """Bucket number in ``[0, buckets)`` per key: equal keys always share a bucket, on any worker."""
    array = _combined(keys)
    if pa.types.is_integer(array.type):
        hashes = mix64(pc.fill_null(array.cast(pa.int64()), 0).to_numpy(zero_copy_only=False))
    elif pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        hashes = string_hash64(array)
    else:
        raise TypeError(f"cannot bucket keys of type {array.type}")
    return (hashes % np.uint64(buckets)).astype(np.int64)


def split_by_bucket(table: pa.Table, buckets: np.ndarray, count: int) -> Iterator[tuple[int, bytes]]:
    """``(bucket, rows of that bucket as IPC bytes)`` for each bucket that has rows.

    The rows are put in bucket order with one ``take``, and each bucket is a slice of that:
    IPC writes only a slice's own rows. Bucket numbers are sorted as the smallest integer
    type that holds them, for which numpy's stable sort is a radix sort (5× faster).
    """
    order = np.argsort(buckets.astype(np.min_scalar_type(count)), kind="stable")
    ends = np.cumsum(np.bincount(buckets, minlength=count))
    in_order = table.take(pa.array(order))
    start = 0
    for bucket, end in enumerate(ends.tolist()):
        if end > start:
            yield bucket, to_ipc(in_order.slice(start, end - start))
        start = end


def to_ipc(table: pa.Table) -> bytes:
    """A table as one Arrow IPC stream: what a shuffle carries."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(payload: bytes) -> pa.Table:
    return pa.ipc.open_stream(payload).read_all()


def concat_ipc(payloads: Iterable[bytes]) -> pa.Table:
    """The tables of a group's IPC payloads as one table."""
    return concat(from_ipc(payload) for payload in payloads)


def first_of_each(table: pa.Table, key: str) -> pa.Table:
    """One row per distinct ``key``: the first seen. Replays copy a row whole, so any copy will do."""
    if table.num_rows == 0:
        return table
    seen_before = pd.Series(table.column(key).to_pandas(types_mapper=pd.ArrowDtype)).duplicated().to_numpy()
    return table.filter(pa.array(~seen_before)) if seen_before.any() else table


def concat(tables: Iterable[pa.Table]) -> pa.Table:
    """One table from many with the same columns (types already pinned by the reader)."""
    return pa.concat_tables(list(tables)).combine_chunks()


def ny_local(timestamps: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """UTC instants as New York wall-clock times (daylight saving included), zone dropped."""
    return pc.local_timestamp(timestamps.cast(pa.timestamp("ms", tz=NEW_YORK)))


def group_counts(table: pa.Table, keys: list[str]) -> list[tuple[tuple[Any, ...], int]]:
    """``((key values…), row count)`` per group of ``keys``; a null key is a group of its own.

    A day key comes out as ISO text (``"2016-07-01"``), as answers and the report use it:
    cast after grouping, a few hundred days rather than every row.
    """
    if table.num_rows == 0:
        return []
    grouped = table.select(keys).group_by(keys, use_threads=False).aggregate([([], "count_all")])
    columns = [_day_as_text(grouped.column(name)).to_pylist() for name in keys]
    counts = grouped.column("count_all").to_pylist()
    return [(tuple(column[i] for column in columns), counts[i]) for i in range(grouped.num_rows)]


def _day_as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column.cast(pa.string()) if pa.types.is_date(column.type) else column


def _combined(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        return array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    return array
