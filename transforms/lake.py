"""The lake's layout: datasets, Arrow schemas, Hive partitions, file names and atomic writes.

Everything that writes to or reads from the lake goes through this module, so the
layout (``drone/dt=YYYY-MM-DD/hour=HH/``, ``dead_letter/dt=…/``, ``history/dt=…/``)
is defined once. Files are written through Beam's FileSystems to a temporary name and
renamed into place, so local folders, ``gs://`` and ``s3://`` behave alike and readers
never see half a file. File names are derived from what a file holds, so writing the
same rows twice replaces a file instead of duplicating rows.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from datetime import datetime, timezone
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

DRONE = "drone"
DEAD_LETTER = "dead_letter"
HISTORY = "history"
STATE_FOLDER = "_state"
TEMP_FOLDER = "_tmp"

UTC_MILLIS = pa.timestamp("ms", tz="UTC")

DRONE_SCHEMA = pa.schema(
    [
        pa.field("message_id", pa.string(), nullable=False),
        pa.field("drone_id", pa.string(), nullable=False),
        pa.field("timestamp", UTC_MILLIS, nullable=False),
        pa.field("latitude", pa.float64(), nullable=False),
        pa.field("longitude", pa.float64(), nullable=False),
        pa.field("violation_code", pa.int16()),
        pa.field("image_id", pa.string()),
        pa.field("battery_pct", pa.float64()),
        pa.field("altitude_m", pa.float64()),
        pa.field("speed_mps", pa.float64()),
        pa.field("motor_temp_c", pa.float64()),
        pa.field("resolves_message_id", pa.string()),
        pa.field("kafka_partition", pa.int32(), nullable=False),
        pa.field("kafka_offset", pa.int64(), nullable=False),
    ]
)

DEAD_LETTER_SCHEMA = pa.schema(
    [
        pa.field("raw", pa.binary(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("kafka_topic", pa.string(), nullable=False),
        pa.field("kafka_partition", pa.int32(), nullable=False),
        pa.field("kafka_offset", pa.int64(), nullable=False),
        pa.field("received_at", UTC_MILLIS, nullable=False),
    ]
)

# Hive partition columns as readers should type them.
DRONE_PARTITIONING = pa.schema([pa.field("dt", pa.date32()), pa.field("hour", pa.int8())])
DATE_PARTITIONING = pa.schema([pa.field("dt", pa.date32())])


def join(root: str, *parts: str) -> str:
    """Join lake path parts with ``/`` for every filesystem (local, gs://, s3://)."""
    return "/".join([root.rstrip("/"), *(part.strip("/") for part in parts)])


def drone_partition(root: str, moment: datetime) -> str:
    """``root/drone/dt=YYYY-MM-DD/hour=HH`` for a UTC event time."""
    utc = moment.astimezone(timezone.utc)
    return join(root, DRONE, f"dt={utc:%Y-%m-%d}", f"hour={utc:%H}")


def date_partition(root: str, dataset: str, day: str) -> str:
    """``root/<dataset>/dt=YYYY-MM-DD`` for datasets partitioned by day only."""
    return join(root, dataset, f"dt={day}")


def content_digest(keys: Iterable[str]) -> str:
    """A short digest of a file's row keys in order: same rows, same file name."""
    digest = hashlib.blake2b(digest_size=8)
    for key in keys:
        digest.update(key.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def window_file_name(window_start: datetime, pane_index: int, kafka_partition: int, digest: str) -> str:
    """``part-HHMM-p<kafka partition>-pane<n>-<digest>.parquet`` for one window's rows."""
    utc = window_start.astimezone(timezone.utc)
    return f"part-{utc:%H%M}-p{kafka_partition}-pane{pane_index}-{digest}.parquet"


def table_to_parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def write_file_atomically(root: str, final_path: str, payload: bytes) -> str:
    """Write ``payload`` to a temporary file under ``root/_tmp`` and rename it to ``final_path``.

    A rename onto an existing path replaces it, which is what makes re-processing the
    same rows idempotent. Returns ``final_path``.
    """
    from apache_beam.io.filesystems import FileSystems

    temp_path = join(root, TEMP_FOLDER, uuid.uuid4().hex)
    _make_parent_dirs(temp_path)
    _make_parent_dirs(final_path)
    with FileSystems.create(temp_path) as handle:
        handle.write(payload)
    FileSystems.rename([temp_path], [final_path])
    return final_path


def write_table(root: str, folder: str, file_name: str, table: pa.Table) -> str:
    """Write one Parquet file of ``table`` at ``folder/file_name`` atomically."""
    return write_file_atomically(root, join(folder, file_name), table_to_parquet_bytes(table))


def _make_parent_dirs(path: str) -> None:
    """Local paths need their folders; object stores have none to make."""
    if "://" not in path:
        os.makedirs(os.path.dirname(path), exist_ok=True)
