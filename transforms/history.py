"""The NYPD history from Kafka into the lake: loader batches → ``history/dt=…/`` Parquet.

The CSV loader sends batches of records it already typed, column by column
(``transforms.history_contract``); here Arrow's JSON reader makes the lake's columns
from a few hundred messages at once (message by message where one is not plainly what
the loader sends), with fines joined from our code table. What one bundle
read — in a drain, a reader's share of a slice — becomes one file per issue date,
named after the offsets it holds: the same offsets read again after a crash rewrite
the same files under the same names. Readers of one partition's sub-ranges (a drain
splits a span every 200,000 offsets) run in parallel, each naming its files after its
own offsets, so none writes another's file. A summons loaded twice (a resent batch,
an overlapping file, a republished year) lands in two files; the drain's merge
(``pipelines.compact``, one merge of a day at a time) then keeps the later load's row.
"""

from __future__ import annotations

import io
import re
from dataclasses import astuple
from typing import Any, Iterator, Mapping, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from csv_ingest.records import SENT_COLUMNS
from transforms import lake
from transforms.compaction import DAYS_MERGED, CompactPartition, Settings, latest_per_key_rows
from transforms.dead_letters import DeadLetter, DeadLetterBatch
from transforms.history_contract import CLOCK_TIME, BadHistoryBatch, decode_history_columns
from transforms.history_spool import read_spooled_days, write_spool_file
from transforms.kafka_source import RawBatch
from transforms.landed_offsets import BatchSpan, Landed
from transforms.messages import DEAD_LETTERS
from transforms.metrics import counter, to_write_counter, written_counter, wrote_partition_counter
from transforms.violation_codes import fines

# Integer columns and the range their lake type holds: a value beyond it (a code of 99999 in
# an int16 column) is unreadable as that column, so it is stored as null and the row kept.
INTEGER_FIELDS = {
    field.name: field.type
    for field in lake.HISTORY_SCHEMA
    if pa.types.is_integer(field.type) and field.name not in ("summons_number", "source_line")
}
FLOAT_FIELDS = ("latitude", "longitude")
MESSAGES_PER_TABLE = 200  # loader batches decoded together into one Arrow table (10,000 rows at 50 a batch)
# The loader's columns as Arrow reads them off the wire (``transforms.history_contract``): a list of values each.
ARROW_TYPE_OF_JSON = {int: pa.int64(), float: pa.float64(), bool: pa.bool_(), str: pa.string()}
WIRE_COLUMNS = pa.struct([pa.field(name, pa.list_(ARROW_TYPE_OF_JSON[kind])) for name, kind in SENT_COLUMNS.items()])
WIRE_MESSAGE = pa.schema(
    [
        pa.field("file", pa.string()),
        pa.field("first_line", pa.int64()),
        pa.field("last_line", pa.int64()),
        pa.field("columns", WIRE_COLUMNS),
    ]
)
# Strict: a field the schema does not name, a value of another type, makes the read fail rather than guess.
WIRE_PARSING = pa_json.ParseOptions(explicit_schema=WIRE_MESSAGE, unexpected_field_behavior="error")
COLUMN_SET_TO_NULL = re.compile(rb'":\s*null')  # a field whose value is null, not a null inside a list


def history_table(
    columns: Mapping[str, Sequence[Any] | pa.Array],
    source_file: str | Sequence[str] | pa.Array,
    loaded_at_ms: int | Sequence[int] | pa.Array,
) -> pa.Table:
    """The lake rows of loader records: typed columns, empty text as null, the fine joined by code and borough.

    A column is a list of values or an Arrow array of its wire type (:data:`WIRE_COLUMNS`).
    ``source_file`` and ``loaded_at_ms`` are one value for every record, or one per record.
    Raises ``pa.ArrowInvalid``/``pa.ArrowTypeError`` (or KeyError) for columns the loader
    could not have sent, which makes the batch a dead letter.
    """
    count = len(columns["line"])
    source_files = [source_file] * count if isinstance(source_file, str) else source_file
    loaded_at = [loaded_at_ms] * count if isinstance(loaded_at_ms, int) else loaded_at_ms
    arrays: dict[str, pa.Array] = {
        "summons_number": _typed(columns["summons_number"], pa.int64()),
        "issue_date": _typed(columns["issue_date"], pa.string()).cast(pa.date32()),
        "violation_time": _millis_of_day(_column(columns, "violation_time", pa.string(), count)),
        "improbable_date": pc.fill_null(_column(columns, "improbable_date", pa.bool_(), count), False),
        "source_file": _typed(source_files, pa.string()),
        "source_line": _typed(columns["line"], pa.int64()),
        "loaded_at": _typed(loaded_at, pa.int64()).cast(lake.UTC_MILLIS),
    }
    for name, lake_type in INTEGER_FIELDS.items():
        arrays[name] = _within(_column(columns, name, pa.int64(), count), lake_type)
    for name in FLOAT_FIELDS:
        arrays[name] = _column(columns, name, pa.float64(), count)
    for name in lake.HISTORY_TEXT_FIELDS:
        arrays[name] = _empty_as_null(_column(columns, name, pa.string(), count))
    arrays["fine_amount"] = fines(arrays["violation_code"], arrays["borough"])
    return pa.table([arrays[field.name] for field in lake.HISTORY_SCHEMA], schema=lake.HISTORY_SCHEMA)


def _typed(values: Sequence[Any] | pa.Array, wire_type: pa.DataType) -> pa.Array:
    return values.cast(wire_type) if isinstance(values, pa.Array) else pa.array(values, wire_type)


def _column(columns: Mapping[str, Sequence[Any] | pa.Array], name: str, wire_type: pa.DataType, count: int) -> pa.Array:
    """Column ``name`` as ``wire_type``; all null where the loader did not send it."""
    values = columns.get(name)
    return pa.nulls(count, wire_type) if values is None else _typed(values, wire_type)


def _within(values: pa.Array, lake_type: pa.DataType) -> pa.Array:
    """``values`` as ``lake_type``, null where a value lies beyond what it holds."""
    low, high = -(2 ** (lake_type.bit_width - 1)), 2 ** (lake_type.bit_width - 1) - 1
    fits = pc.and_(pc.greater_equal(values, low), pc.less_equal(values, high))
    return pc.if_else(fits, values, pa.scalar(None, pa.int64())).cast(lake_type)


def _empty_as_null(texts: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(texts, ""), pa.scalar(None, pa.string()), texts)


def _millis_of_day(texts: pa.Array) -> pa.Array:
    """``"HH:MM"`` → milliseconds since midnight as a time of day; null for anything else."""
    valid = pc.fill_null(pc.match_substring_regex(texts, CLOCK_TIME), False)
    clean = pc.if_else(valid, texts, pa.scalar("00:00"))
    hours = pc.cast(pc.utf8_slice_codeunits(clean, 0, 2), pa.int32())
    minutes = pc.cast(pc.utf8_slice_codeunits(clean, 3, 5), pa.int32())
    millis = pc.multiply(pc.add(pc.multiply(hours, 60), minutes), 60_000)
    return pc.if_else(valid, millis.cast(pa.int32()), pa.scalar(None, pa.int32())).cast(pa.time32("ms"))


def in_day_order(table: pa.Table, rows: pa.Array | None = None) -> pa.Table:
    """``table``'s rows (only ``rows``, when given) by issue date, then source file and line.

    The chosen rows are copied once, in their final order, rather than once to choose them
    and again to order them.
    """
    keys = table.select(["issue_date", "source_file", "source_line"])
    keys = keys if rows is None else keys.take(rows)
    order = pc.sort_indices(keys, sort_keys=[("issue_date", "ascending"), ("source_file", "ascending"), ("source_line", "ascending")])
    return table.take(order if rows is None else rows.take(order))


def by_issue_date(ordered: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    """``(YYYY-MM-DD, that day's rows)`` for each day of a table :func:`in_day_order` made."""
    if ordered.num_rows == 0:
        return
    days = ordered.column("issue_date").to_numpy()
    starts = [0, *(np.flatnonzero(days[1:] != days[:-1]) + 1).tolist()]
    for begin, end in zip(starts, [*starts[1:], len(days)]):
        yield str(days[begin]), ordered.slice(begin, end - begin)


def history_file_name(spans: list[BatchSpan]) -> str:
    """The files of what one bundle read are named after its offsets: the same reading, the same names."""
    digest = lake.content_digest(f"{span.topic}/{span.partition}/{span.start}-{span.stop}" for span in sorted(spans, key=astuple))
    return f"part-{digest}.parquet"


class WriteHistoryBatches(beam.DoFn):
    """RawBatches of loader messages → files, then Landed reports; dead letters aside.

    A bundle's batches are kept and written together when it finishes. Streaming (no
    ``spool_group``), that is one file per issue date per bundle. A drain's bundle is a
    slice's worth of one reader, written as one spool file of ``spool_group``
    (``transforms.history_spool``) that the drain's merge puts in its days.
    """

    def __init__(self, root: str, spool_group: str | None = None):
        self._root = root
        self._spool_group = spool_group
        self._rows = counter("history_rows")
        self._invalid = counter("invalid")
        self._to_write = to_write_counter()
        self._tables: list[pa.Table] = []
        self._landed: list[tuple[Landed, Timestamp]] = []

    def setup(self) -> None:
        lake.allocate_arrow_from_the_system()

    def start_bundle(self) -> None:
        self._tables, self._landed = [], []

    def process(self, batch: RawBatch, timestamp: Timestamp = beam.DoFn.TimestampParam) -> Iterator[Any]:
        table, valid, dead = self._decoded(batch)
        span = batch.span()
        if dead:
            self._to_write.inc(len(dead))
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, DeadLetterBatch(span, dead))
        if table is not None:
            self._to_write.inc(valid)
            self._tables.append(table)
            self._landed.append((Landed(span, valid), timestamp))

    def finish_bundle(self) -> Iterator[WindowedValue]:
        if not self._tables:
            return
        table, self._tables = pa.concat_tables(self._tables), []
        latest = latest_per_key_rows(table, lake.HISTORY)  # a resent batch read in the same bundle lands once
        name = history_file_name([landed.span for landed, _ in self._landed])
        ordered = in_day_order(table, latest)
        if self._spool_group is not None:
            write_spool_file(self._root, self._spool_group, name, ordered)
        for day, rows in by_issue_date(ordered):
            if self._spool_group is None:
                lake.write_table(self._root, lake.date_partition(self._root, lake.HISTORY, day), name, rows)
            wrote_partition_counter(day).inc()
        self._rows.inc(len(latest))
        for landed, timestamp in self._landed:
            written_counter().inc(landed.count)
            yield WindowedValue(landed, timestamp, [GlobalWindow()])
        self._tables, self._landed = [], []

    def _decoded(self, batch: RawBatch) -> tuple[pa.Table | None, int, list[DeadLetter]]:
        """The batch's valid messages as one table (and how many they were), and the others as dead letters.

        One table per :data:`MESSAGES_PER_TABLE` messages: building Arrow columns message by
        message would cost more than the rest of the drain together, and decoding a whole
        slice into Python lists first would take gigabytes.
        """
        tables: list[pa.Table] = []
        dead: list[DeadLetter] = []
        valid = 0
        for first in range(0, len(batch), MESSAGES_PER_TABLE):
            table, kept, refused = self._chunk_table(batch, range(first, min(first + MESSAGES_PER_TABLE, len(batch))))
            tables.extend([table] if table is not None else [])
            valid += kept
            dead.extend(refused)
        return (pa.concat_tables(tables) if tables else None), valid, dead

    def _chunk_table(self, batch: RawBatch, indexes: range) -> tuple[pa.Table | None, int, list[DeadLetter]]:
        whole = plain_loader_batches(batch, indexes)
        if whole is not None:
            return whole, len(indexes), []
        decoded: list[tuple[int, str, dict[str, list[Any]]]] = []
        dead: list[DeadLetter] = []
        for index in indexes:
            try:
                source_file, columns = decode_history_columns(batch.values[index])
                decoded.append((index, source_file, columns))
            except BadHistoryBatch as error:
                reason, _, detail = str(error).partition(": ")
                dead.append(self._dead_letter(batch, index, reason, detail))
        try:
            table = _one_table(batch, decoded)
        except HISTORY_TABLE_ERRORS:
            table, decoded, refused = _table_without_refused(batch, decoded)
            dead.extend(self._dead_letter(batch, index, "bad_record", detail) for index, detail in refused)
        return table, len(decoded), dead

    def _dead_letter(self, batch: RawBatch, index: int, reason: str, detail: str) -> DeadLetter:
        self._invalid.inc()
        return DeadLetter(batch.values[index], reason, detail, batch.topic, batch.partition, batch.offsets[index], batch.stored_at(index))


HISTORY_TABLE_ERRORS = (KeyError, TypeError, ValueError, pa.ArrowException)


def plain_loader_batches(batch: RawBatch, indexes: range) -> pa.Table | None:
    """The lake rows of messages ``indexes`` of ``batch``, read by Arrow's JSON reader at once; None unless each is plainly a loader batch.

    Turning decoded JSON into Arrow column by column costs most of a drain's time (Python
    objects for every value, then Arrow's conversion of each); Arrow's reader makes the
    columns from the bytes directly. It is stricter than the message-by-message path
    (a field it does not know, an integer written ``1.0``), and where any message is not
    plainly a loader batch the chunk goes that way, so what lands and what is refused is
    the same either way.
    """
    messages = [batch.values[index] for index in indexes]
    joined = b"\n".join(messages)
    if COLUMN_SET_TO_NULL.search(joined):  # to Arrow, as good as a column not sent; message by message, refused
        return None
    try:
        wire = pa_json.read_json(io.BytesIO(joined), parse_options=WIRE_PARSING)
    except pa.ArrowException:
        return None
    columns = wire.column("columns").combine_chunks()
    if wire.num_rows != len(messages) or columns.null_count or wire.column("file").null_count:
        return None
    counts = pc.list_value_length(columns.field("line"))
    if counts.null_count or pc.min(counts).as_py() == 0:
        return None
    flat: dict[str, pa.Array] = {}
    for field, lists in zip(WIRE_COLUMNS, columns.flatten()):
        if lists.null_count == len(lists):  # no message sends it: missing, as message by message
            continue
        sent = pc.is_valid(lists)
        if not pc.all(pc.equal(pc.list_value_length(lists).filter(sent), counts.filter(sent))).as_py():
            return None
        flat[field.name] = _with_nulls_where_not_sent(pc.list_flatten(lists), sent, counts)
    record_of_message = np.repeat(np.arange(len(messages)), counts.to_numpy())
    loaded_at = pa.array([_loaded_at_ms(batch, index) for index in indexes], pa.int64())
    return history_table(flat, wire.column("file").combine_chunks().take(record_of_message), loaded_at.take(record_of_message))


def _one_table(batch: RawBatch, decoded: list[tuple[int, str, dict[str, list[Any]]]]) -> pa.Table | None:
    """Every decoded message's records in one table; None for none."""
    if not decoded:
        return None
    names = set().union(*(columns for _, _, columns in decoded))
    combined: dict[str, list[Any]] = {name: [] for name in names}
    source_files: list[str] = []
    loaded_at: list[int] = []
    for index, source_file, columns in decoded:
        count = len(columns["line"])
        for name in names:
            values = columns.get(name)
            combined[name].extend(values if values is not None else [None] * count)
        source_files.extend([source_file] * count)
        loaded_at.extend([_loaded_at_ms(batch, index)] * count)
    return history_table(combined, source_files, loaded_at)


def _table_without_refused(
    batch: RawBatch, decoded: list[tuple[int, str, dict[str, list[Any]]]]
) -> tuple[pa.Table | None, list[tuple[int, str, dict[str, list[Any]]]], list[tuple[int, str]]]:
    """Message by message, for a batch some message of which the lake's types refuse: ``(table, kept, (index, why) refused)``."""
    kept, refused = [], []
    for message in decoded:
        try:
            _one_table(batch, [message])
            kept.append(message)
        except HISTORY_TABLE_ERRORS as error:
            refused.append((message[0], f"{type(error).__name__}: {error}"))
    return _one_table(batch, kept), kept, refused


def _with_nulls_where_not_sent(values: pa.Array, sent: pa.Array, counts: pa.Array) -> pa.Array:
    """A column some messages did not send: their records get nulls, as message by message."""
    if pc.all(sent).as_py():
        return values
    sent_by_record = np.repeat(sent.to_numpy(zero_copy_only=False), counts.to_numpy())
    return pc.replace_with_mask(pa.nulls(len(sent_by_record), values.type), pa.array(sent_by_record), values)


def _loaded_at_ms(batch: RawBatch, index: int) -> int:
    """When the loader sent record ``index``: its Kafka timestamp (the broker's time when it has none)."""
    return int(batch.stored_at(index).timestamp() * 1000)


class WriteHistory(beam.PTransform):
    """Raw batches from ``nypd-history`` → files under ``history/dt=…/`` (a drain: its spool), a bundle at a time.

    No shuffle: a batch's rows are written where it was read, so each batch lands (and
    its offsets may be committed) as soon as its files are written, in any mode.
    """

    def __init__(self, root: str, spool_group: str | None = None):
        super().__init__()
        self._root = root
        self._spool_group = spool_group

    def expand(self, batches: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        """``(landed reports, dead-letter batches)``."""
        writer = WriteHistoryBatches(self._root, self._spool_group)
        written = batches | "WriteDays" >> beam.ParDo(writer).with_outputs(DEAD_LETTERS, main="landed")
        return written.landed, written[DEAD_LETTERS]


class MergeSpooledDays(CompactPartition):
    """A run of history days → each day's spooled rows merged with what the lake holds of it (``transforms.history_spool``).

    Each day is compacted as :class:`CompactPartition` does, its spooled rows arriving; a
    day is counted in ``days_merged`` once its files are in place, so the drain deletes its
    spool only when every day it asked for was merged.
    """

    def __init__(self, root: str, settings: Settings, spooled: list[str]):
        super().__init__(root, lake.HISTORY, settings)
        self._spooled = spooled
        self._merged = counter(DAYS_MERGED)

    def process(self, days: list[str]) -> None:
        arriving = dict(by_issue_date(in_day_order(read_spooled_days(self._spooled, days))))
        for day in days:
            self._compact(lake.date_partition(self._root, lake.HISTORY, day), arriving.get(day, lake.HISTORY_SCHEMA.empty_table()))
            self._merged.inc()
