"""The ``nypd-history`` topic's message: one batch of the CSV loader's records, column by column.

The loader encodes and the history pipeline decodes here, so the format has one owner::

    {"file": "<fingerprint>", "first_line": 2, "last_line": 51,
     "columns": {"line": [2, 3, …], "summons_number": [1283294138, …], "plate_id": ["GBB9093", …], …}}

Every column holds one value per record, in the order of the file. The loader's record
rules (``csv_ingest.records``) say what each column holds: typed columns (integers, ISO
dates, ``HH:MM`` times, borough names) carry None for a missing value; text columns carry
the field as the file has it, ``""`` when empty. The key is ``<fingerprint>:<first line>``,
so the same lines of the same file always make the same key and the same bytes.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import orjson

# A violation time on the wire: ``HH:MM`` on the 24-hour clock, as ``csv_ingest.records.clock_time`` writes it.
CLOCK_TIME = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class BadHistoryBatch(ValueError):
    """A Kafka message on the history topic that is not a batch the loader could have sent.

    The message starts with a reason word (``bad_json``, ``not_a_history_batch``) and a colon.
    """


def encode_history_batch(file_fingerprint: str, columns: Mapping[str, Sequence[Any]]) -> tuple[bytes, bytes]:
    """The Kafka key and value of one batch (``columns`` must hold ``line`` and at least one record)."""
    lines = columns["line"]
    first_line, last_line = lines[0], lines[-1]
    value = orjson.dumps({"file": file_fingerprint, "first_line": first_line, "last_line": last_line, "columns": columns})
    return f"{file_fingerprint}:{first_line}".encode(), value


def decode_history_columns(raw: bytes) -> tuple[str, dict[str, list[Any]]]:
    """The source fingerprint and the columns of one batch; BadHistoryBatch otherwise."""
    try:
        batch = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadHistoryBatch(f"bad_json: {error}") from None
    columns = batch.get("columns") if isinstance(batch, dict) else None
    if not isinstance(columns, dict) or not isinstance(batch.get("file"), str):
        raise BadHistoryBatch("not_a_history_batch: needs 'file' and 'columns'")
    if not all(isinstance(values, list) for values in columns.values()):
        raise BadHistoryBatch("not_a_history_batch: every column must be a list")
    if len({len(values) for values in columns.values()}) > 1:
        raise BadHistoryBatch("not_a_history_batch: columns of different lengths")
    if not columns.get("line"):
        raise BadHistoryBatch("not_a_history_batch: needs at least one record in 'line'")
    return batch["file"], columns


def decode_history_batch(raw: bytes) -> tuple[str, list[dict[str, Any]]]:
    """The source fingerprint and the records (one dict each) of one batch; BadHistoryBatch otherwise."""
    source_file, columns = decode_history_columns(raw)
    names = list(columns)
    return source_file, [dict(zip(names, values)) for values in zip(*columns.values())]
