"""Where a load stands, kept on disk so that a crash or Ctrl-C loses nothing.

The checkpoint names the last batch the broker acknowledged — every earlier batch was
acknowledged too — by where reading resumes after it (byte offset and physical line),
how long the rejects file was then, and the running counters. It also keeps what cut
the file into batches (``batch_lines`` and the region grid), so a resumed load sends the
same batches whatever a newer loader's defaults. It is replaced atomically
(write a temporary file, fsync it, ``os.replace``, fsync the folder), so after any crash
it is either the previous checkpoint or the new one, never a torn mix.

A checkpoint belongs to one file content, named by :func:`fingerprint`: a SHA-256 of the
file's size and its first and last MiB. That is O(1) in the file's size (a 2 GB export
is fingerprinted in milliseconds, not a full read), it survives a copy or a move (no
path, no mtime), and it changes when the city re-exports, appends to or truncates the
file. An in-place edit of the middle that keeps the size exactly is what it does not
see; the city's exports are never edited that way.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from csv_ingest.batches import REGION_BYTES
from csv_ingest.source import Position

FINGERPRINT_SAMPLE_BYTES = 1 << 20
CHECKPOINT_VERSION = 2
# Version 1 had no region grid: its loads resume on today's (the lake keeps each summons once).
READABLE_VERSIONS = (1, 2)


class CheckpointError(ValueError):
    """The checkpoint file cannot be read; the message is one line meant for the user."""


@dataclass(frozen=True, slots=True)
class Counters:
    """Running totals over the whole file: records read, sent (acknowledged), rejected, batches."""

    rows_read: int = 0
    sent: int = 0
    rejected: int = 0
    batches: int = 0


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The state of one file's load after its last acknowledged batch."""

    fingerprint: str
    file: str
    batch_lines: int
    fiscal_year: int | None
    position: Position
    rejects_bytes: int
    counters: Counters = field(default_factory=Counters)
    complete: bool = False
    region_bytes: int = REGION_BYTES

    def to_json(self) -> bytes:
        return orjson.dumps({"version": CHECKPOINT_VERSION, **asdict(self)}, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, raw: bytes) -> "Checkpoint":
        data: dict[str, Any] = orjson.loads(raw)
        if data.pop("version", None) not in READABLE_VERSIONS:
            raise ValueError("unknown checkpoint version")
        data["position"] = Position(**data["position"])
        data["counters"] = Counters(**data["counters"])
        return cls(**data)


def fingerprint(path: Path) -> str:
    """SHA-256 over the file's size, its first MiB and its last MiB, as 64 hex digits."""
    size = path.stat().st_size
    digest = hashlib.sha256(b"dronecop-csv-fingerprint-v1\0")
    digest.update(size.to_bytes(8, "big"))
    with open(path, "rb") as handle:
        digest.update(handle.read(FINGERPRINT_SAMPLE_BYTES))
        if size > FINGERPRINT_SAMPLE_BYTES:
            handle.seek(max(FINGERPRINT_SAMPLE_BYTES, size - FINGERPRINT_SAMPLE_BYTES))
            digest.update(handle.read(FINGERPRINT_SAMPLE_BYTES))
    return digest.hexdigest()


def load_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path``, None when there is none; CheckpointError when it is unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error.strerror}") from None
    try:
        return Checkpoint.from_json(raw)
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"checkpoint {path} is not one this loader wrote ({error}); delete it to start over") from None


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Atomically replace ``path`` with ``checkpoint``, durable once this returns."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        handle.write(checkpoint.to_json())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
