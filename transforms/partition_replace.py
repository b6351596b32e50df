"""Replacing the files of one lake partition by others: at once on a local disk, file by file on object stores.

On a local disk the new files are staged in a folder of their own under ``_tmp/compaction/``
(outside every dataset, on the same filesystem) and that folder trades places with the live
partition folder in one ``renameat2(RENAME_EXCHANGE)``: a reader listing the partition
gets the old files or the new ones, never both and never neither. A reader that listed
the old folder just before the swap finds its files gone when it opens them, and lists
again. So the inputs stay in the old folder for :data:`READER_GRACE_S` after the swap: a
reader that opened the folder just before it, and reads its entries just after, finds
names it cannot open (and lists again) rather than an empty folder. Before the swap a
journal (``_state/compaction/…json``) records the staged folder's inode and the input
files' versions; a rerun after a crash finds the swap done (the live folder is the
staged inode) and finishes it, or not done and rolls it back.

A writer may add a file to the live folder while its inputs are compacted. Right after
the swap, and again when the old folder is emptied, every file of the old folder that is
not an input, as listed (name, size and modification time), moves into the new live
folder; the old folder is removed once it is empty. Between the swap and that move
(microseconds) such a file is out of view.

Object stores have no atomic rename of many objects: the new files are written beside
the old ones, then the inputs are deleted. A reader in between sees both (the analysis
de-duplicates on read); a crash in between leaves both, and the next compaction, whose
file names come from its content, writes the same files again and deletes the rest.
Local filesystems without ``RENAME_EXCHANGE`` (not Linux, or not supporting it) are
replaced the same way, with a warning that says why.

Two compactions of one partition take turns (:func:`partition_lock`): two at once would
each swap in files made from what it listed, and the later swap would keep the earlier's
files as a writer's additions beside its own, every row twice. Two drains merging the
same day, or a drain and ``pipelines.compact``, wait for each other. On object stores there
is no such lock: run one compaction of a bucket's lake at a time (two at once can leave a
partition's rows twice until the next compaction, never lose one).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

from transforms import lake

RENAME_EXCHANGE = 2  # linux/fs.h
AT_FDCWD = -100  # fcntl.h: paths relative to the working directory
# How long a reader may take between opening a partition folder and reading its entries.
READER_GRACE_S = 0.5

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileVersion:
    """One file of a partition as it was listed: a file rewritten since then is another version."""

    name: str
    size: int
    mtime: float


@dataclass(frozen=True)
class NewFile:
    """A file to put in place of a partition's inputs."""

    name: str
    payload: bytes


@dataclass(frozen=True)
class Swapped:
    """A partition swapped at ``at`` (``time.monotonic``) whose old folder still holds its inputs."""

    root: str
    folder: str
    inputs: frozenset[FileVersion]
    at: float


def list_versions(folder: str) -> list[FileVersion]:
    """The data files of a partition folder, sorted by name, with their sizes and modification times."""
    found = lake.matching_files(folder, "*.parquet")
    versions = [FileVersion(meta.path.rsplit("/", 1)[-1], meta.size_in_bytes, meta.last_updated_in_seconds) for meta in found]
    return sorted((version for version in versions if lake.is_data_file(version.name)), key=lambda version: version.name)


@contextlib.contextmanager
def partition_lock(root: str, folder: str) -> Iterator[None]:
    """The one right to compact the partition ``folder`` while the block runs; a second holder waits for it.

    An exclusive ``flock`` on the partition's lock file (``lake.compaction_lock``), which
    the system releases however its holder ends, killed too, so no stale lock outlives a
    crash. Object stores have none: the block runs unguarded.
    """
    if not lake.is_local(root):
        yield
        return
    path = lake.compaction_lock(root, folder)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("%s: waiting for another compaction of it to finish", folder)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def replace_partition(root: str, folder: str, files: Sequence[NewFile], inputs: Sequence[FileVersion]) -> Swapped | None:
    """Put ``files`` in place of ``inputs`` in the partition ``folder``: swapped at once where the disk can.

    Returns the swap whose old folder :func:`finish_all` is to empty, or None when the
    files were replaced one by one and nothing is left to do.
    """
    reason = exchange_unavailable(root) if lake.is_local(root) else "object stores rename one object at a time"
    if reason is not None:
        replace_files(root, folder, files, inputs)
        return None
    return swap_in(root, folder, files, inputs)


def swap_in(root: str, folder: str, files: Sequence[NewFile], inputs: Sequence[FileVersion]) -> Swapped:
    """Stage ``files``, journal the swap, swap the staged folder with the live one, move back what writers added."""
    staging = stage(root, folder, files)
    write_journal(root, folder, staging, inputs)
    exchange(staging, folder)
    swapped = Swapped(root, folder, frozenset(inputs), time.monotonic())
    move_added_files(swapped.root, swapped.folder, swapped.inputs)
    return swapped


def finish_all(swaps: Sequence[Swapped]) -> None:
    """Finish every swap once :data:`READER_GRACE_S` has passed since the last of them."""
    if swaps:
        time.sleep(max(0.0, max(swap.at for swap in swaps) + READER_GRACE_S - time.monotonic()))
    for swap in swaps:
        finish(swap.root, swap.folder, swap.inputs)


def stage(root: str, folder: str, files: Sequence[NewFile]) -> str:
    """Write ``files`` into a fresh staging folder for ``folder``; its path.

    A staging folder left without a journal was never swapped, so it holds only new files
    of a killed run: it is replaced. A journal means a swap under way, which only
    :func:`recover` may touch.
    """
    if os.path.exists(lake.compaction_journal(root, folder)):
        raise RuntimeError(f"{folder}: a compaction of it is under way or was interrupted; run the compaction again to finish it")
    staging = lake.compaction_staging(root, folder)
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    for file in files:
        lake.write_file_atomically(root, lake.join(staging, file.name), file.payload)
    return staging


def write_journal(root: str, folder: str, staging: str, inputs: Sequence[FileVersion]) -> None:
    """Record what a rerun needs to finish or roll back the swap of ``staging`` with ``folder``."""
    journal = {"staged_inode": os.stat(staging).st_ino, "inputs": [[f.name, f.size, f.mtime] for f in inputs]}
    lake.write_file_atomically(root, lake.compaction_journal(root, folder), json.dumps(journal).encode())


def read_journal(root: str, folder: str) -> tuple[int, frozenset[FileVersion]] | None:
    """The staged folder's inode and the input versions of the swap under way in ``folder``, if any."""
    try:
        with open(lake.compaction_journal(root, folder), encoding="utf-8") as handle:
            journal = json.load(handle)
    except FileNotFoundError:
        return None
    return journal["staged_inode"], frozenset(FileVersion(name, size, mtime) for name, size, mtime in journal["inputs"])


def exchange(first: str, second: str) -> None:
    """Swap two paths on one filesystem at once (Linux ``renameat2`` with ``RENAME_EXCHANGE``)."""
    renameat2 = _renameat2()
    if renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), first, None, second)


def move_added_files(root: str, folder: str, inputs: frozenset[FileVersion]) -> None:
    """Move every entry of the swapped-out folder that is not one of ``inputs`` into the live ``folder``."""
    old = lake.compaction_staging(root, folder)
    for version in entries(old):
        if version not in inputs:
            os.rename(os.path.join(old, version.name), os.path.join(folder, version.name))


def finish(root: str, folder: str, inputs: frozenset[FileVersion]) -> None:
    """After the swap: delete the inputs, move what writers added into the live folder, remove the old folder, then the journal.

    The old folder sits where the staging was. It is removed once empty: a writer that
    renamed a file into it meanwhile makes it non-empty, and its file moves on the next turn.
    """
    old = lake.compaction_staging(root, folder)
    while os.path.isdir(old):
        move_added_files(root, folder, inputs)
        for version in entries(old):
            if version in inputs:
                os.remove(os.path.join(old, version.name))
        try:
            os.rmdir(old)
        except OSError as error:
            if error.errno != errno.ENOTEMPTY:
                raise
    os.remove(lake.compaction_journal(root, folder))


def entries(folder: str) -> list[FileVersion]:
    """Every entry of ``folder``, data file or not, as a version."""
    found = []
    for entry in os.scandir(folder):
        status = entry.stat(follow_symlinks=False)
        found.append(FileVersion(entry.name, status.st_size, status.st_mtime))
    return found


def recover(root: str, folder: str) -> bool:
    """Finish or roll back the swap a killed run left in ``folder``; whether there was one.

    The live folder being the staged inode means the swap happened: :func:`finish`.
    Otherwise the live folder is untouched and the staging is dropped.
    """
    with partition_lock(root, folder):  # a compaction still running holds its journal: wait for it to finish
        journal = read_journal(root, folder)
        if journal is None:
            return False
        staged_inode, inputs = journal
        if os.stat(folder).st_ino == staged_inode:
            finish(root, folder, inputs)
        else:
            shutil.rmtree(lake.compaction_staging(root, folder), ignore_errors=True)
            os.remove(lake.compaction_journal(root, folder))
        return True


def recover_all(root: str, dataset: str) -> int:
    """Finish or roll back every swap killed runs left in ``dataset``; how many there were."""
    return sum(recover(root, folder) for folder in lake.journaled_partitions(root, dataset))


def replace_files(root: str, folder: str, files: Sequence[NewFile], inputs: Iterable[FileVersion]) -> None:
    """Write ``files`` into ``folder``, then delete the inputs that are still as listed.

    An input a writer rewrote since it was listed is another version, and stays. A new
    file with an input's name replaces it (a rerun writing what a killed run wrote).
    """
    from apache_beam.io.filesystems import FileSystems

    for file in files:
        lake.write_file_atomically(root, lake.join(folder, file.name), file.payload)
    written = {file.name for file in files}
    listed = set(inputs)
    stale = [lake.join(folder, version.name) for version in list_versions(folder) if version in listed and version.name not in written]
    if stale:
        FileSystems.delete(stale)


def exchange_unavailable(root: str) -> str | None:
    """Why the local lake ``root`` cannot swap folders at once, or None when it can.

    Staging sits under ``root/_tmp``, on the datasets' filesystem: every writer of the lake
    renames its files from there into place.
    """
    staging_parent = lake.compaction_temp(root)
    os.makedirs(staging_parent, exist_ok=True)
    return _probe_exchange(staging_parent)


@functools.cache
def _probe_exchange(parent: str) -> str | None:
    """Swap two fresh folders under ``parent`` once per process: None if that worked, else why not."""
    probe = os.path.join(parent, f".probe-{uuid.uuid4().hex}")
    first, second = os.path.join(probe, "first"), os.path.join(probe, "second")
    os.makedirs(os.path.join(first, "marker"))
    os.makedirs(second)
    try:
        exchange(first, second)
        if not (os.path.isdir(os.path.join(second, "marker")) and os.path.isdir(first)):
            return _warn(f"renameat2(RENAME_EXCHANGE) under {parent} returned success but did not swap")
        return None
    except OSError as error:
        return _warn(f"renameat2(RENAME_EXCHANGE) is not available under {parent}: {error.strerror}")
    finally:
        shutil.rmtree(probe, ignore_errors=True)


@functools.cache
def _warn(reason: str) -> str:
    """Log once why partitions are replaced file by file; the reason."""
    log.warning("compaction: %s; partitions there are replaced file by file, and readers may briefly see both", reason)
    return reason


def _renameat2() -> Callable[..., int]:
    """libc's ``renameat2`` (glibc 2.28 and later); ENOSYS where there is none."""
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        function = libc.renameat2
    except AttributeError:
        raise OSError(errno.ENOSYS, "this C library has no renameat2") from None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function
