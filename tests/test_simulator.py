"""The drone simulator: valid, deterministic, plausible traffic, delivered whole to a real broker."""

from __future__ import annotations

import collections
import dataclasses
import io
import itertools
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image

from simulator.fleet import (
    BOROUGH_BOXES,
    CLIMB_RATE_MPS,
    MAX_SPEED_MPS,
    REPAIR_S,
    FleetSettings,
    beat_of,
    distance_m,
    fleet_messages,
    fleet_reports,
)
from simulator.photos import PHOTO_HEIGHT, PHOTO_WIDTH, PhotoRenderer, plate_text
from tests.support.kafka_io import read_all
from transforms import lake
from transforms.contract import HUMAN_REVIEW_CODE, DroneMessage, encode_message, parse_message
from transforms.kafka_settings import KafkaSettings
from transforms.violation_codes import violation_codes

REPO_ROOT = Path(__file__).resolve().parents[1]
START = "2026-11-28T17:00:00Z"
START_MS = 1_795_885_200_000  # START in epoch milliseconds


def simulate(*args: str, lake: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m simulator`` with photos stored under ``lake``; without one, no photos (nothing is written in the checkout)."""
    photos = [f"--lake={lake}"] if lake is not None else ["--photos=none"]
    return subprocess.run([sys.executable, "-m", "simulator", *photos, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def generated(count: int, **settings: float) -> list[DroneMessage]:
    """The first ``count`` messages as they go on the wire, each parsed back by the contract."""
    messages = []
    for _key, value, _code, _event_ms in itertools.islice(fleet_messages(FleetSettings(**settings)), count):
        message = parse_message(value)
        assert isinstance(message, DroneMessage), message
        messages.append(message)
    return messages


def reports(count: int, **settings: float) -> list[DroneMessage]:
    """The first ``count`` reports before encoding: quicker for properties of large samples."""
    return list(itertools.islice(fleet_reports(FleetSettings(start_ms=START_MS, **settings)), count))


def tracks(messages: list[DroneMessage]) -> dict[str, list[DroneMessage]]:
    by_drone: dict[str, list[DroneMessage]] = collections.defaultdict(list)
    for message in messages:
        by_drone[message.drone_id].append(message)
    return by_drone


def read_report(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_sent_messages_are_all_on_the_topic_valid_and_counted(broker: KafkaSettings, topic_name: str) -> None:
    result = simulate(
        "--count=3000",
        "--rate=0",
        "--violation_ratio=0.3",
        "--human_ratio=0.2",
        f"--topic={topic_name}",
        f"--bootstrap_servers={broker.bootstrap_servers}",
        f"--start_time={START}",
    )
    assert result.returncode == 0, result.stderr
    report = read_report(result.stdout)
    records = read_all(broker, topic_name)
    messages = [parse_message(record.value) for record in records]
    assert all(isinstance(message, DroneMessage) for message in messages)
    assert report["sent"] == len(records) == 3000 and report["failed"] == 0
    assert report["violations"] == sum(message.is_violation for message in messages) > 0
    assert report["alerts"] == sum(message.needs_human for message in messages) > 0
    assert all(record.key == message.drone_id.encode() for record, message in zip(records, messages))
    assert len({message.message_id for message in messages}) == 3000


def test_wire_bytes_are_the_contracts_own_encoding() -> None:
    values = [value for _key, value, _code, _event_ms in itertools.islice(fleet_messages(FleetSettings(violation_ratio=0.5)), 20_000)]
    parsed = [parse_message(value) for value in values]
    assert all(isinstance(message, DroneMessage) for message in parsed)
    assert [encode_message(message) for message in parsed] == values
    assert {message.violation_code is None for message in parsed} == {True, False}


def test_same_seed_and_start_give_the_same_bytes_and_another_seed_or_start_does_not(tmp_path: Path) -> None:
    outputs = []
    for name, seed, start in (("a", 7, START), ("b", 7, START), ("c", 8, START), ("d", 7, "2026-11-28T18:00:00Z")):
        path = tmp_path / f"{name}.jsonl"
        result = simulate("--count=2000", "--rate=0", f"--seed={seed}", f"--start_time={start}", f"--out={path}")
        assert result.returncode == 0 and read_report(result.stdout)["sent"] == 2000, result.stderr
        outputs.append(path.read_bytes())
    assert outputs[0] == outputs[1] and outputs[0] != outputs[2]
    ids = [{orjson.loads(line)["message_id"] for line in output.splitlines()} for output in outputs]
    assert len(ids[0]) == 2000 and not ids[0] & ids[2] and not ids[0] & ids[3], "runs must not reuse message ids"


def test_duration_spans_that_much_event_time(tmp_path: Path) -> None:
    path = tmp_path / "fleet.jsonl"
    result = simulate("--duration=1", "--rate=1000", f"--start_time={START}", f"--out={path}")
    assert result.returncode == 0, result.stderr
    stamps = [parse_message(line).timestamp for line in path.read_bytes().splitlines()]
    assert len(stamps) == read_report(result.stdout)["sent"] == 1000
    assert (stamps[-1] - stamps[0]).total_seconds() == 0.999 and stamps == sorted(stamps)


def test_time_scale_runs_weeks_of_patrols_through_every_hour_and_weekday(tmp_path: Path) -> None:
    path = tmp_path / "fleet.jsonl"
    result = simulate("--count=3000", "--rate=0", "--time_scale=201600", f"--start_time={START}", f"--out={path}")
    assert result.returncode == 0, result.stderr
    stamps = [parse_message(line).timestamp for line in path.read_bytes().splitlines()]
    # Unpaced messages are 1 ms of event time apart: 3,000 of them at 201,600 × are a week of patrols.
    assert (stamps[-1] - stamps[0]).total_seconds() == pytest.approx(7 * 86400, rel=0.001)
    assert {stamp.hour for stamp in stamps} == set(range(24)) and {stamp.weekday() for stamp in stamps} == set(range(7))


def test_every_position_lies_in_the_drones_land_box_across_the_five_boroughs() -> None:
    messages = reports(20_000, drones=40, rate=20)
    for drone_id, track in tracks(messages).items():
        _borough, (south, west, north, east) = beat_of(int(drone_id.removeprefix("drone-")))
        assert all(south <= m.latitude <= north and west <= m.longitude <= east for m in track), drone_id
    assert {beat_of(index)[0] for index in range(40)} == set(BOROUGH_BOXES)


def test_drones_never_teleport_and_report_the_speed_they_fly() -> None:
    for track in tracks(reports(40_000, drones=20, rate=50)).values():
        for before, after in zip(track, track[1:]):
            seconds = (after.timestamp - before.timestamp).total_seconds()
            metres = distance_m((before.latitude, before.longitude), (after.latitude, after.longitude))
            assert after.speed_mps <= MAX_SPEED_MPS and metres <= MAX_SPEED_MPS * seconds + 0.5, (before, after)
            assert abs(metres - after.speed_mps * seconds) <= 0.5 + 0.01 * seconds, (before, after)
            assert abs(after.altitude_m - before.altitude_m) <= CLIMB_RATE_MPS * seconds + 0.1, (before, after)
        assert len({(m.latitude, m.longitude) for m in track}) > len(track) // 2


def test_batteries_drain_in_flight_and_recharge_on_the_ground_at_base() -> None:
    track = tracks(reports(40_000, drones=2, rate=0.5))["drone-0000"]
    levels = [m.battery_pct for m in track]
    assert all(0.0 < level <= 100.0 for level in levels) and min(levels) < 20 and max(levels) > 90
    pairs = list(zip(track, track[1:]))
    charging = [after for before, after in pairs if after.battery_pct > before.battery_pct]
    flying = [after for before, after in pairs if after.battery_pct < before.battery_pct]
    assert len(charging) > 100 and len(flying) > 100, "the battery should both drain in flight and recharge at base"
    assert len({(m.latitude, m.longitude) for m in charging}) == 1, "a drone recharges at its one base"
    assert all(m.altitude_m == 0 and m.speed_mps == 0 for m in charging)
    assert min(m.battery_pct for m in flying) > 5, "a drone turns home while it has the charge to get there"
    assert statistics.mean(m.motor_temp_c for m in flying) > statistics.mean(m.motor_temp_c for m in charging) + 10


def test_violations_follow_the_code_table_and_the_human_ratio() -> None:
    messages = reports(100_000, violation_ratio=1.0, human_ratio=0.01)
    assert all((m.image_id is not None) == m.is_violation for m in messages)
    violations = [m.violation_code for m in messages if m.violation_code is not None]
    assert 0.007 < violations.count(HUMAN_REVIEW_CODE) / len(violations) < 0.013
    table = violation_codes()
    drawn = [code for code in violations if code != HUMAN_REVIEW_CODE]
    assert set(drawn) <= set(table)
    expected = table[21].weight / sum(entry.weight for entry in table.values())
    assert abs(drawn.count(21) / len(drawn) - expected) < 0.01


def life_of(track: list[DroneMessage]) -> tuple[list[DroneMessage], DroneMessage, DroneMessage]:
    """A drone's first life up to its fault, the fault, and its first message after the repair."""
    at = next(index for index, message in enumerate(track) if message.is_fault)
    return track[:at], track[at], track[at + 1]


def test_wear_heats_drains_and_shakes_a_drone_until_it_faults_then_it_is_silent_and_returns_overhauled() -> None:
    # Each of 4 drones reports every 12 simulated seconds for two days; wearing 10 × as fast, each fails within hours.
    fleet = reports(4 * 14_400, drones=4, rate=1, time_scale=3, wear_scale=10)
    by_drone = tracks(fleet)
    for drone_id, track in by_drone.items():
        life, fault, back = life_of(track)
        assert all(not message.is_fault for message in life) and fault.kind == "fault", drone_id
        aloft = [message for message in life if message.altitude_m and message.altitude_m > 0]
        early = [m for m in aloft if m.flight_hours < 0.5]
        late = [m for m in aloft if m.flight_hours > fault.flight_hours - 0.5]
        assert statistics.mean(m.vibration_g for m in late) > statistics.mean(m.vibration_g for m in early) + 0.2, drone_id
        assert statistics.mean(m.motor_temp_c for m in late) > statistics.mean(m.motor_temp_c for m in early) + 3, drone_id
        assert all(m.vibration_g == 0 for m in life if m.altitude_m == 0 and m.speed_mps == 0), "no hum on the ground"
        hours = [m.flight_hours for m in life]
        assert hours == sorted(hours) and fault.flight_hours >= hours[-1] > 1, drone_id
        assert (back.timestamp - fault.timestamp).total_seconds() >= REPAIR_S, "silent while under repair"
        assert back.flight_hours == 0 and back.altitude_m == 0 and not back.is_fault, "back overhauled, on the ground"
        _borough, (south, west, north, east) = beat_of(int(drone_id.removeprefix("drone-")))
        assert south <= back.latitude <= north and west <= back.longitude <= east
    seconds = collections.Counter((b.timestamp - a.timestamp).total_seconds() for a, b in zip(fleet, fleet[1:]))
    assert seconds.most_common(1)[0][0] == 3 and seconds[3] > 0.99 * len(fleet), "the others take a silent drone's turns"


def test_failures_are_reproducible_by_seed_and_absent_without_wear() -> None:
    def faults(**settings: float) -> list[tuple[str, object]]:
        return [(m.drone_id, m.timestamp) for m in reports(20_000, drones=5, rate=1, time_scale=5, **settings) if m.is_fault]

    first = faults(seed=4, wear_scale=10)
    assert len(first) >= 5 and first == faults(seed=4, wear_scale=10) and first != faults(seed=5, wear_scale=10)
    assert faults(seed=4, wear_scale=0) == []


def test_the_out_file_is_a_labelled_history_its_faults_marked(tmp_path: Path) -> None:
    path = tmp_path / "fleet.jsonl"
    result = simulate(
        "--count=20000", "--rate=0", "--drones=5", "--time_scale=5000", "--wear_scale=10", f"--start_time={START}", f"--out={path}"
    )
    assert result.returncode == 0, result.stderr
    messages = [parse_message(line) for line in path.read_bytes().splitlines()]
    assert all(isinstance(message, DroneMessage) for message in messages)
    faults = [message for message in messages if message.is_fault]
    assert faults and all(b'"kind":"fault"' in encode_message(message) for message in faults)
    assert all(message.vibration_g is not None and message.flight_hours is not None for message in messages)


@pytest.mark.parametrize(
    "flag",
    [
        "--rate=-5",
        "--wear_scale=-1",
        "--human_ratio=2",
        "--drones=0",
        "--start_time=yesterday",
        "--count=3 --duration=1",
        "--also_kafka",
        "--topic=no/slash",
        "--count=many",
    ],
)
def test_bad_flags_are_usage_errors_without_traceback(flag: str) -> None:
    result = simulate(*flag.split())
    assert result.returncode == 2 and "Traceback" not in result.stderr and "error:" in result.stderr


def test_an_unwritable_out_file_is_one_line(tmp_path: Path) -> None:
    result = simulate("--count=5", f"--out={tmp_path / 'missing' / 'fleet.jsonl'}")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "cannot write" in result.stderr


def test_an_unreachable_broker_is_one_line() -> None:
    result = simulate("--count=5", "--bootstrap_servers=127.0.0.1:9", "--broker_timeout=3")
    said = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(said) == 2 and "Traceback" not in result.stderr
    assert "python -m runners.local up" in said[0] and "no Kafka broker" in said[1] and "--broker_timeout" in said[1]


def test_ctrl_c_flushes_reports_and_exits_0(broker: KafkaSettings, topic_name: str, tmp_path: Path) -> None:
    path = tmp_path / "fleet.jsonl"
    sender = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator",
            "--rate=500",
            f"--out={path}",
            "--also_kafka",
            f"--topic={topic_name}",
            f"--bootstrap_servers={broker.bootstrap_servers}",
            f"--lake={tmp_path / 'lake'}",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_writing(path, sender)
        sender.send_signal(signal.SIGINT)
        out, err = sender.communicate(timeout=60)
    finally:
        sender.kill()
    assert sender.returncode == 0 and "Traceback" not in err, err
    report = read_report(out)
    assert report["sent"] == len(path.read_bytes().splitlines()) == len(read_all(broker, topic_name)) > 0
    found, missing = photos_missing(tmp_path / "lake", read_all(broker, topic_name))
    assert missing == [] and report["photos"] == report["violations"] == len(found)


def test_a_broker_restart_mid_run_loses_nothing_and_copies_are_identical(tmp_path: Path, topic_name: str) -> None:
    from runners.brokers import BrokerError, broker_command, free_port
    from runners.local import start, stop
    from runners.workspace import using_home

    port = free_port()
    with using_home(tmp_path):
        try:
            broker = start(broker_command("kafka", port))
        except BrokerError as reason:
            pytest.skip(f"needs the durable kafka engine: {reason}")
    settings = KafkaSettings(f"127.0.0.1:{port}")
    sender = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator",
            "--count=20000",
            "--rate=2000",
            f"--topic={topic_name}",
            f"--bootstrap_servers={settings.bootstrap_servers}",
            f"--start_time={START}",
            "--photos=none",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_topic_has(settings, topic_name, 2000)
        stop(broker)
        with using_home(tmp_path):
            broker = start(broker_command("kafka", port))
        out, err = sender.communicate(timeout=300)
        assert sender.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["sent"] == 20000
        distinct = {record.value for record in read_all(settings, topic_name)}
        ids = [orjson.loads(value)["message_id"] for value in distinct]
        assert len(ids) == len(set(ids)) == 20000, "a message lost, or two different records under one message id"
    finally:
        sender.kill()
        stop(broker)


def test_messages_the_broker_never_acknowledges_are_counted_and_fail_the_run(tmp_path: Path, topic_name: str) -> None:
    from runners.brokers import BrokerError, broker_command, free_port
    from runners.local import start, stop

    port = free_port()
    try:
        broker = start(broker_command("tansu", port))
    except BrokerError as reason:
        pytest.skip(f"needs a broker it can stop for good: {reason}")
    path = tmp_path / "fleet.jsonl"
    sender = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator",
            "--rate=500",
            "--delivery_timeout=1",
            f"--out={path}",
            "--also_kafka",
            f"--topic={topic_name}",
            f"--bootstrap_servers=127.0.0.1:{port}",
            "--photos=none",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_writing(path, sender)
        stop(broker)
        sender.send_signal(signal.SIGINT)
        out, err = sender.communicate(timeout=60)
    finally:
        sender.kill()
        stop(broker)
    report = read_report(out)
    assert sender.returncode == 1 and "Traceback" not in err
    assert 0 < report["failed"] <= report["sent"] and "never acknowledged" in err


# Photos.


def photos_missing(lake_root: Path, records: list) -> tuple[list[Path], list[Path]]:
    """The photo paths of the violations among ``records`` (Kafka records or JSON lines): those found, those missing."""
    found, missing = [], []
    for record in records:
        message = parse_message(getattr(record, "value", record))
        if isinstance(message, DroneMessage) and message.image_id is not None:
            path = Path(lake.image_path(str(lake_root), message.timestamp, message.image_id))
            (found if path.is_file() else missing).append(path)
    return found, missing


def assert_is_a_photo(payload: bytes) -> None:
    """A whole baseline JPEG of the photo size, 20–60 KB, that decodes without a complaint."""
    assert 20_000 <= len(payload) <= 60_000, len(payload)
    with Image.open(io.BytesIO(payload)) as image:
        assert (image.format, image.size, image.mode) == ("JPEG", (PHOTO_WIDTH, PHOTO_HEIGHT), "RGB")
        image.load()
    assert payload[:2] == b"\xff\xd8" and payload[-2:] == b"\xff\xd9"


def test_every_violation_sent_has_its_photo_a_jpeg_of_20_to_60_kb(broker: KafkaSettings, topic_name: str, tmp_path: Path) -> None:
    result = simulate(
        "--count=3000",
        "--rate=0",
        "--violation_ratio=0.3",
        f"--topic={topic_name}",
        f"--bootstrap_servers={broker.bootstrap_servers}",
        f"--start_time={START}",
        lake=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = read_report(result.stdout)
    found, missing = photos_missing(tmp_path, read_all(broker, topic_name))
    assert missing == [] and len(found) == report["photos"] == report["violations"] > 500
    for path in found[:50]:
        assert_is_a_photo(path.read_bytes())
    assert {path.parent.name for path in found} == {"dt=2026-11-28"}
    assert not list((tmp_path / lake.TEMP_FOLDER).iterdir()), "every photo was renamed into place"


def test_a_message_is_on_the_topic_only_once_its_photo_is_stored(broker: KafkaSettings, topic_name: str, tmp_path: Path) -> None:
    """Killed mid-run, the simulator leaves photos without messages perhaps, never a message without its photo."""
    sender = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator",
            "--rate=4000",
            "--violation_ratio=0.5",
            f"--topic={topic_name}",
            f"--bootstrap_servers={broker.bootstrap_servers}",
            f"--lake={tmp_path}",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until_topic_has(broker, topic_name, 2000)
    finally:
        sender.kill()
        sender.wait(10)
    found, missing = photos_missing(tmp_path, read_all(broker, topic_name))
    assert missing == [] and len(found) > 500


def test_photos_are_the_same_bytes_for_the_same_seed_and_leave_the_messages_as_they_were(tmp_path: Path) -> None:
    trees = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        result = simulate(
            "--count=600",
            "--rate=0",
            "--violation_ratio=0.5",
            f"--seed={seed}",
            f"--start_time={START}",
            f"--out={tmp_path / name}.jsonl",
            lake=tmp_path / name,
        )
        assert result.returncode == 0, result.stderr
        trees.append({path.name: path.read_bytes() for path in (tmp_path / name / lake.IMAGES).rglob("*.jpg")})
    assert len(trees[0]) > 200 and trees[0] == trees[1]
    assert not set(trees[0]) & set(trees[2]), "another seed, other violations"
    without = simulate(
        "--count=600", "--rate=0", "--violation_ratio=0.5", "--seed=3", f"--start_time={START}", f"--out={tmp_path / 'none'}.jsonl"
    )
    assert without.returncode == 0 and (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "none.jsonl").read_bytes()
    assert not (tmp_path / "none").exists() and read_report(without.stdout)["photos"] == 0


def test_a_photo_shows_its_own_caption_and_plate_on_its_scene() -> None:
    report = next(m for m in reports(200, violation_ratio=0.5) if m.image_id is not None)
    other = dataclasses.replace(report, drone_id="drone-0999", image_id=report.image_id + "-2")
    renderer = PhotoRenderer(1)
    photo = renderer.render(report)
    assert_is_a_photo(photo)
    assert photo == PhotoRenderer(1).render(report) != PhotoRenderer(2).render(report)
    assert plate_text(report.image_id) == plate_text(report.image_id) != plate_text(other.image_id)
    drawn = [np.asarray(Image.open(io.BytesIO(renderer.render(message)))).astype(int) for message in (report, other)]
    caption = slice(0, 32)
    assert np.abs(drawn[0][caption] - drawn[1][caption]).max() > 100, "each caption says its own drone"
    assert drawn[0][caption].max() > 200, "the caption is light on the dark band"


def test_with_photos_none_nothing_is_stored_and_a_lake_that_takes_none_is_one_line(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the lake should be")
    out = tmp_path / "fleet.jsonl"
    result = simulate("--count=500", "--rate=0", f"--out={out}", lake=blocked)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"cannot store photos under {blocked}" in result.stderr and "Traceback" not in result.stderr
    assert all(parse_message(line).image_id is None for line in out.read_bytes().splitlines()), "no message without its photo"


def wait_until_topic_has(settings: KafkaSettings, topic: str, count: int) -> None:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(settings.consumer_config("probe", log_level=0))
    deadline = time.monotonic() + 60
    try:
        while True:
            topics = consumer.list_topics(timeout=5).topics
            if topic in topics:
                ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1] for p in topics[topic].partitions]
                if sum(ends) >= count:
                    return
            assert time.monotonic() < deadline, f"{topic} never reached {count} messages"
            time.sleep(0.05)
    finally:
        consumer.close()


def wait_until_writing(path: Path, sender: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while not (path.exists() and path.stat().st_size > 0):
        assert sender.poll() is None and time.monotonic() < deadline, "the simulator never started writing"
        time.sleep(0.05)
