"""The lake's layout: datasets, Arrow schemas, Hive partitions, file names and atomic writes.

Everything that writes to or reads from the lake goes through this module, so the
layout (``drone/dt=YYYY-MM-DD/hour=HH/``, ``drone_risk/dt=…/hour=…/``, ``dead_letter/dt=…/``, ``history/dt=…/``, and
beside them the drones' photos in ``images/dt=…/``, ``_state/`` and ``_tmp/``, which no
reader of a dataset sees) is defined once. Files are written through Beam's FileSystems to a temporary name and
renamed into place, so local folders, ``gs://`` and ``s3://`` behave alike and readers
never see half a file. File names are derived from what a file holds, so writing the
same rows twice replaces a file instead of duplicating rows.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import hashlib
import io
import os
import re
import time
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from transforms.contract import is_image_id
from transforms.object_store import prepare_for

if TYPE_CHECKING:
    from apache_beam.io.filesystem import FileMetadata

DRONE = "drone"
DRONE_RISK = "drone_risk"
DEAD_LETTER = "dead_letter"
HISTORY = "history"
IMAGES = "images"
PHOTO_SUFFIX = ".jpg"
STATE_FOLDER = "_state"
SPOOL_FOLDER = "_spool"  # a history drain's slices, waiting for its merge (``transforms.history_spool``)
TEMP_FOLDER = "_tmp"
COMPACTION = "compaction"
# A temporary file lives for the moment between its write and its rename; one older than
# this was left by a writer killed in between, and nothing will ever rename it.
ABANDONED_TEMP_AGE_S = 3600.0
M_ARENA_MAX = -8  # glibc's mallopt parameter: how many malloc arenas the threads share
MALLOC_ARENAS = 2

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
        # Where the lake keeps the violation's photo (image_path); null without a violation.
        pa.field("image_uri", pa.string()),
        pa.field("battery_pct", pa.float64()),
        pa.field("altitude_m", pa.float64()),
        pa.field("speed_mps", pa.float64()),
        pa.field("motor_temp_c", pa.float64()),
        # Wear readings and the message's kind (null: a routine report; "fault": the drone's last message
        # before repair), which predictive maintenance trains on. Files written before them read as nulls.
        pa.field("vibration_g", pa.float64()),
        pa.field("flight_hours", pa.float64()),
        pa.field("kind", pa.string()),
        pa.field("resolves_message_id", pa.string()),
        pa.field("kafka_partition", pa.int32(), nullable=False),
        pa.field("kafka_offset", pa.int64(), nullable=False),
    ]
)

# The stream's maintenance scores (with a model: pipelines.stream --maintenance_model): a drone's probability of
# failing within the model's horizon, scored on one of its messages, partitioned by that message's event time
# as the drone dataset is. A dataset of its own, so the drone rows are written exactly as without a model.
RISK_SCHEMA = pa.schema(
    [
        pa.field("message_id", pa.string(), nullable=False),
        pa.field("drone_id", pa.string(), nullable=False),
        pa.field("timestamp", UTC_MILLIS, nullable=False),
        pa.field("failure_risk", pa.float64(), nullable=False),
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

# The NYPD history, one row per summons, partitioned by issue date (``history/dt=…/``).
# Codes and precincts are integers, the violation time a time of day, the borough one of
# the five names, fines joined from our DOF code table; everything else is kept as text.
HISTORY_TEXT_FIELDS = (
    "plate_id",
    "registration_state",
    "plate_type",
    "vehicle_body_type",
    "vehicle_make",
    "issuing_agency",
    "vehicle_expiration_date",
    "violation_location",
    "issuer_code",
    "issuer_command",
    "issuer_squad",
    "time_first_observed",
    "violation_county",
    "borough",
    "house_number",
    "street_name",
    "intersecting_street",
    "date_first_observed",
    "law_section",
    "sub_division",
    "violation_legal_code",
    "days_parking_in_effect",
    "from_hours_in_effect",
    "to_hours_in_effect",
    "vehicle_color",
    "unregistered_vehicle",
    "meter_number",
    "violation_post_code",
    "violation_description",
    "no_standing_or_stopping_violation",
    "hydrant_violation",
    "double_parking_violation",
    "community_board",
    "community_council",
    "census_tract",
    "bin",
    "bbl",
    "nta",
)
HISTORY_SCHEMA = pa.schema(
    [
        pa.field("summons_number", pa.int64(), nullable=False),
        pa.field("issue_date", pa.date32(), nullable=False),
        pa.field("violation_time", pa.time32("ms")),  # Parquet keeps times in ms at the coarsest
        pa.field("violation_code", pa.int16()),
        pa.field("violation_precinct", pa.int16()),
        pa.field("issuer_precinct", pa.int16()),
        pa.field("street_code1", pa.int64()),
        pa.field("street_code2", pa.int64()),
        pa.field("street_code3", pa.int64()),
        pa.field("vehicle_year", pa.int16()),
        pa.field("feet_from_curb", pa.int16()),
        pa.field("latitude", pa.float64()),
        pa.field("longitude", pa.float64()),
        pa.field("improbable_date", pa.bool_(), nullable=False),
        pa.field("fine_amount", pa.float64()),
        *(pa.field(name, pa.string()) for name in HISTORY_TEXT_FIELDS),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_line", pa.int64(), nullable=False),
        # When the loader sent the row (its Kafka record's time): of two loads of one summons,
        # the later one's row is the one the lake keeps.
        pa.field("loaded_at", UTC_MILLIS, nullable=False),
    ]
)

# Hive partition columns as readers should type them.
DRONE_PARTITIONING = pa.schema([pa.field("dt", pa.date32()), pa.field("hour", pa.int8())])
DATE_PARTITIONING = pa.schema([pa.field("dt", pa.date32())])
PARTITIONING = {DRONE: DRONE_PARTITIONING, DRONE_RISK: DRONE_PARTITIONING, DEAD_LETTER: DATE_PARTITIONING, HISTORY: DATE_PARTITIONING}
COMPACTED_NAME = re.compile(r"compacted-(?P<digest>[0-9a-f]{16})-(?P<index>\d+)-of-(?P<count>\d+)\.parquet")


def is_local(path: str) -> bool:
    """A path on this machine's disks, not ``gs://`` or ``s3://``."""
    return "://" not in path


def join(root: str, *parts: str) -> str:
    """Join lake path parts with ``/`` for every filesystem (local, gs://, s3://)."""
    return "/".join([root.rstrip("/"), *(part.strip("/") for part in parts)])


def drone_partition(root: str, moment: datetime, dataset: str = DRONE) -> str:
    """``root/drone/dt=YYYY-MM-DD/hour=HH`` for a UTC event time (``drone_risk/…`` for the risk scores)."""
    utc = moment.astimezone(timezone.utc)
    return join(root, dataset, f"dt={utc:%Y-%m-%d}", f"hour={utc:%H}")


def spool_folder(root: str, dataset: str, group_id: str) -> str:
    """``root/_spool/<dataset>/<group>``: where one consumer group's drain spools its slices before merging them."""
    return join(root, SPOOL_FOLDER, dataset, group_id)


def date_partition(root: str, dataset: str, day: str) -> str:
    """``root/<dataset>/dt=YYYY-MM-DD`` for datasets partitioned by day only."""
    return join(root, dataset, f"dt={day}")


def image_path(root: str, moment: datetime, image_id: str) -> str:
    """``root/images/dt=YYYY-MM-DD/<image_id>.jpg``: where the photo of a violation seen at ``moment`` is kept.

    The day is the sighting's UTC day, as the drone partitions', so a day's photos are one folder
    to keep or expire. Only an image id the contract accepts (a file name, never a path) has a
    place: anything else is a ValueError, whoever asks.
    """
    if not is_image_id(image_id):
        raise ValueError(f"not an image id: {image_id[:40]!r}")
    return join(date_partition(root, IMAGES, f"{moment.astimezone(timezone.utc):%Y-%m-%d}"), image_id + PHOTO_SUFFIX)


def absolute(root: str) -> str:
    """A local root as an absolute path, an object store's URL as it is: what a path recorded in the lake is
    made from, so that a reader started elsewhere finds the file."""
    return os.path.abspath(root) if is_local(root) else root


def content_digest(keys: Iterable[str]) -> str:
    """A short digest of a file's row keys in order: same rows, same file name."""
    return bytes_digest(key.encode("utf-8") + b"\0" for key in keys)


def bytes_digest(chunks: Iterable[bytes]) -> str:
    """16 hex digits of a digest of ``chunks`` in order."""
    digest = hashlib.blake2b(digest_size=8)
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def compacted_file_name(digest: str, index: int, count: int) -> str:
    """``compacted-<digest>-<index>-of-<count>.parquet``: file ``index`` of a compacted partition's ``count``."""
    return f"compacted-{digest}-{index}-of-{count}.parquet"


def is_compacted_set(names: Iterable[str]) -> bool:
    """Whether ``names`` are exactly the files of one compaction: one digest, every index of its count."""
    parsed = [COMPACTED_NAME.fullmatch(name) for name in names]
    matches = [match for match in parsed if match]
    if not matches or len(matches) < len(parsed):
        return False
    compactions = {(match["digest"], int(match["count"])) for match in matches}
    indexes = sorted(int(match["index"]) for match in matches)
    return len(compactions) == 1 and indexes == list(range(int(matches[0]["count"])))


def is_data_file(relative_path: str) -> bool:
    """A Parquet file no part of whose path (below the dataset folder) starts with ``_`` or ``.``."""
    parts = relative_path.split("/")
    return parts[-1].endswith(".parquet") and not any(part.startswith(("_", ".")) for part in parts)


def partition_folders(root: str, dataset: str, days: Iterable[str] = ()) -> list[str]:
    """The partition folders of ``dataset`` that hold data files, sorted; only those of ``days`` when given.

    A history or dead-letter partition is a day (``dt=…``), a drone partition an hour of
    a day (``dt=…/hour=…``).
    """
    from apache_beam.io.filesystems import FileSystems

    folder = join(root, dataset)
    prepare_for(folder)
    patterns = [join(folder, f"dt={day}", "**") for day in days] or [join(folder, "**")]
    try:
        matched = [meta.path for result in FileSystems.match(patterns) for meta in result.metadata_list]
    except Exception:  # noqa: BLE001 — a missing folder or bucket holds no partitions
        return []
    levels = PARTITIONING[dataset].names
    partitions = set()
    for path in matched:
        relative = path[len(folder) :].replace("\\", "/").lstrip("/")
        parts = relative.split("/")[:-1]
        if is_data_file(relative) and [part.split("=", 1)[0] for part in parts] == levels:
            partitions.add(join(folder, *parts))
    return sorted(partitions)


def compaction_temp(root: str, *parts: str) -> str:
    """``root/_tmp/compaction/…``: where compaction stages partitions, beside (not inside) the datasets."""
    return join(root, TEMP_FOLDER, COMPACTION, *parts)


def compaction_staging(root: str, partition: str) -> str:
    """Where the compacted files of ``partition`` are staged: ``root/_tmp/compaction/<dataset>/dt=…``."""
    return compaction_temp(root, _below(root, partition))


def compaction_journal(root: str, partition: str) -> str:
    """The journal of a compaction of ``partition`` under way: ``root/_state/compaction/<dataset>/dt=….json``."""
    return join(root, STATE_FOLDER, COMPACTION, _below(root, partition) + ".json")


def compaction_lock(root: str, partition: str) -> str:
    """The lock file of ``partition``'s compactions, one at a time: ``root/_state/locks/<dataset>/dt=….lock``."""
    return join(root, STATE_FOLDER, "locks", _below(root, partition) + ".lock")


def journaled_partitions(root: str, dataset: str) -> list[str]:
    """The partitions of ``dataset`` (on a local disk) whose compaction left a journal: interrupted, to finish."""
    journals = join(root, STATE_FOLDER, COMPACTION, dataset)
    found = glob.glob(join(glob.escape(journals), "**", "*.json"), recursive=True)
    return sorted(join(root, dataset, os.path.relpath(path, journals)[: -len(".json")]) for path in found)


def _below(root: str, path: str) -> str:
    """``path`` relative to the lake ``root``, with ``/`` between its parts."""
    return path[len(root.rstrip("/")) :].replace("\\", "/").strip("/")


def window_file_prefix(window_start: datetime) -> str:
    """``part-HHMM-``: how every file of one window starts (its folder gives the day and hour)."""
    return f"part-{window_start.astimezone(timezone.utc):%H%M}-"


def window_file_name(window_start: datetime, pane_index: int, kafka_partition: int, digest: str) -> str:
    """``part-HHMM-p<kafka partition>-pane<n>-<digest>.parquet`` for one window's rows."""
    return f"{window_file_prefix(window_start)}p{kafka_partition}-pane{pane_index}-{digest}.parquet"


def risk_file_name(window_start: datetime, pane_index: int, digest: str) -> str:
    """``part-HHMM-pane<n>-<digest>.parquet`` for one window's risk scores (one file per window and pane)."""
    return f"{window_file_prefix(window_start)}pane{pane_index}-{digest}.parquet"


def window_files(root: str, window_start: datetime) -> list[FileMetadata]:
    """Every drone file of one window, with its size and modification time.

    Local folders are globbed by the window's prefix: Beam's local match stats every file
    of the folder, and an hour folder holds thousands when drains run every second (70 ms
    against 10 ms a listing at 14,000 files). Object stores list by prefix through Beam.
    """
    return matching_files(drone_partition(root, window_start), f"{window_file_prefix(window_start)}*.parquet")


def matching_files(folder: str, pattern: str) -> list[FileMetadata]:
    """The files of ``folder`` whose names match the glob ``pattern``, with sizes and modification times."""
    if is_local(folder):
        return [_local_metadata(path) for path in glob.glob(join(glob.escape(folder), pattern))]
    from apache_beam.io.filesystems import FileSystems

    prepare_for(folder)
    return FileSystems.match([join(folder, pattern)])[0].metadata_list


def allocate_arrow_from_the_system() -> None:
    """Make this process's Arrow allocations come from the C library's allocator rather than pyarrow's mimalloc.

    Measured on a history drain slice (250,000 rows): mimalloc kept ~300 MB of freed pages
    after each bundle's write (resident 1,069 MB, Arrow itself holding 150 MB), the system
    allocator 774 MB, at the same speed. Called by the writers that build large tables.
    """
    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())


def limit_malloc_arenas(count: int = MALLOC_ARENAS) -> None:
    """glibc's ``mallopt(M_ARENA_MAX, count)``, for a process about to start its threads; nothing under another C library.

    glibc gives each busy thread an arena of its own (up to eight per core), and a drain's
    readers, writers and gRPC threads each kept freed pages in theirs: a 1,000,000-row
    drain peaked at 0.9–1.1 GB, with two arenas at 0.73–0.76 GB, as fast. Arenas made
    before the call stay, so it comes first.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_ARENA_MAX, count)
    except (OSError, AttributeError):
        return


def table_to_parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def write_file_atomically(root: str, final_path: str, payload: bytes) -> str:
    """Write ``payload`` to a temporary file under ``root/_tmp`` and rename it to ``final_path``.

    A rename onto an existing path replaces it, which is what makes re-processing the
    same rows idempotent. Returns ``final_path``. A local folder is written with the os's
    own write and rename, which is what Beam's local filesystem does, without importing Beam
    (seconds, for a simulator that stores photos); object stores through Beam's FileSystems.
    """
    temp_path = join(root, TEMP_FOLDER, uuid.uuid4().hex)
    if is_local(root):
        _write_local(temp_path, final_path, payload)
        return final_path
    from apache_beam.io.filesystems import FileSystems

    prepare_for(root)
    with FileSystems.create(temp_path) as handle:
        handle.write(payload)
    FileSystems.rename([temp_path], [final_path])
    return final_path


def sweep_abandoned_temp_files(root: str, now: float | None = None) -> int:
    """Delete the temporary files killed writers left under ``root/_tmp``; return how many.

    Only files older than :data:`ABANDONED_TEMP_AGE_S` go, so a writer running at the same
    time keeps its own.
    """
    from apache_beam.io.filesystems import FileSystems

    prepare_for(root)
    now = time.time() if now is None else now
    matched = FileSystems.match([join(root, TEMP_FOLDER, "*")])[0].metadata_list
    abandoned = [file.path for file in matched if now - file.last_updated_in_seconds > ABANDONED_TEMP_AGE_S]
    if abandoned:
        FileSystems.delete(abandoned)
    return len(abandoned)


def write_table(root: str, folder: str, file_name: str, table: pa.Table) -> str:
    """Write one Parquet file of ``table`` at ``folder/file_name`` atomically."""
    return write_file_atomically(root, join(folder, file_name), table_to_parquet_bytes(table))


def _local_metadata(path: str) -> FileMetadata:
    from apache_beam.io.filesystem import FileMetadata

    status = os.stat(path)
    return FileMetadata(path, status.st_size, status.st_mtime)


def _write_local(temp_path: str, final_path: str, payload: bytes) -> None:
    """Write ``temp_path`` and rename it to ``final_path`` in as few system calls as may be: each one lets the
    other threads take Python's lock, which the simulator's photo writers queue for. A folder is made only
    when a call finds it missing."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        descriptor = os.open(temp_path, flags, 0o666)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(temp_path), exist_ok=True)
        descriptor = os.open(temp_path, flags, 0o666)
    try:
        unwritten = memoryview(payload)
        while unwritten:
            unwritten = unwritten[os.write(descriptor, unwritten) :]
    finally:
        os.close(descriptor)
    try:
        os.replace(temp_path, final_path)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(final_path), exist_ok=True)
        os.replace(temp_path, final_path)


def file_exists(path: str) -> bool:
    """Whether a file is at ``path``: a stat on a local disk, one metadata request to an object store."""
    if is_local(path):
        return os.path.isfile(path)
    from apache_beam.io.filesystems import FileSystems

    prepare_for(path)
    return FileSystems.exists(path)


def read_file(path: str) -> bytes | None:
    """The whole of a small file (a photo), or None where there is none; through Beam's FileSystems off the local disk."""
    if is_local(path):
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
    from apache_beam.io.filesystems import FileSystems

    if not file_exists(path):
        return None
    with FileSystems.open(path) as handle:
        return handle.read()


def read_parquet(path: str, columns: list[str]) -> pa.Table:
    """Local files memory-mapped by Arrow; object stores through Beam's FileSystems.

    A ``ParquetFile`` read on one thread: the lake's files are small (a few thousand rows),
    and ``pq.read_table`` spends twice as long per file setting up a dataset scan and
    threads than it does decoding.
    """
    from apache_beam.io.filesystems import FileSystems

    if is_local(path):
        return pq.ParquetFile(path, memory_map=True).read(columns=columns, use_threads=False)
    with FileSystems.open(path) as handle:
        return pq.ParquetFile(handle).read(columns=columns, use_threads=False)


def pin_types(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``schema``'s columns of ``table``, cast to its types where a file wrote them otherwise.

    A nullable column that a file written before it existed lacks (the drone lake's
    ``image_uri``) reads as nulls, so older lakes stay readable and compactable.
    """
    present = set(table.column_names)  # a list built anew on each call: once, not once per field
    for field in schema:
        if field.nullable and field.name not in present:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    table = table.select(schema.names)
    return table if table.schema.equals(schema) else table.cast(schema)
