"""The history pipeline: loader batches on a real topic → history lake, each summons number once."""

from __future__ import annotations

from datetime import date, time as time_of_day
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from pipelines import history
from tests.kafka_io import produce_all, read_all
from transforms import lake
from transforms.history_contract import encode_history_batch
from transforms.history import _millis_of_day, history_file_key, history_row
from transforms.kafka_settings import KafkaSettings

FINGERPRINT = "f" * 64


def record(line: int, summons: int, day: str = "2017-03-14", borough: str | None = "Manhattan", code: int = 21) -> dict:
    return {
        "line": line, "summons_number": summons, "issue_date": day, "violation_code": code, "borough": borough,
        "violation_time": "08:35", "registration_state": "NY", "plate_id": f"P{summons}", "violation_county": "NY",
        "vehicle_year": 2015, "street_code1": 34310, "improbable_date": False,
    }


def loader_batch(first_line: int, records: list[dict]) -> tuple[bytes, bytes]:
    """The message the loader sends for these records (they all have the same keys; ``first_line`` is the first's line)."""
    assert records[0]["line"] == first_line
    return encode_history_batch(FINGERPRINT, {name: [record[name] for record in records] for name in records[0]})


def history_args(settings: KafkaSettings, topic: str, lake_root: Path) -> list[str]:
    return [f"--bootstrap_servers={settings.bootstrap_servers}", f"--topic={topic}", f"--dead_letter_topic={topic}-dead",
            f"--group_id={topic}-group", f"--output={lake_root}", "--drain"]


def history_table(lake_root: Path):
    dataset = ds.dataset(lake_root / lake.HISTORY, format="parquet", partitioning=ds.partitioning(lake.DATE_PARTITIONING, flavor="hive"))
    return dataset.to_table()


def test_history_row_is_typed_and_priced() -> None:
    row = history_row(record(7, 123), FINGERPRINT, lambda code, borough: 65.0 if borough == "Manhattan" else 45.0)
    assert row["issue_date"] == date(2017, 3, 14) and row["violation_time"] == (8 * 3600 + 35 * 60) * 1000
    assert row["fine_amount"] == 65.0 and row["source_line"] == 7 and row["vehicle_year"] == 2015


def test_an_integer_beyond_its_lake_column_is_stored_as_null_and_the_row_kept() -> None:
    """The loader keeps any integer; the lake's int16 code column cannot hold 99999."""
    row = history_row({**record(7, 123), "violation_code": "99999", "violation_precinct": -40_000}, FINGERPRINT,
                      lambda code, borough: None)  # fmt: skip
    assert row["violation_code"] is None and row["violation_precinct"] is None and row["vehicle_year"] == 2015
    pa.Table.from_pylist([row], schema=lake.HISTORY_SCHEMA)


@pytest.mark.parametrize(
    ("text", "millis"),
    [("00:15", 900_000), ("12:40", 45_600_000), ("23:59", 86_340_000), ("24:00", None), ("", None), (None, None), ("7:5", None)],
)
def test_violation_times_become_milliseconds_of_day(text: str | None, millis: int | None) -> None:
    assert _millis_of_day(text) == millis


def test_file_key_groups_one_day_one_chunk_of_lines_and_one_partition() -> None:
    day = date(2017, 3, 14)
    assert history_file_key(FINGERPRINT, day, 5, 0) == history_file_key(FINGERPRINT, day, 99_999, 0)
    assert history_file_key(FINGERPRINT, day, 5, 0) != history_file_key(FINGERPRINT, day, 100_000, 0)
    assert history_file_key(FINGERPRINT, day, 5, 0) != history_file_key(FINGERPRINT, day, 5, 1)


def test_drains_keep_each_summons_once_across_resent_batches(broker: KafkaSettings, topic_name: str, tmp_path: Path) -> None:
    batches = [loader_batch(2 + 50 * i, [record(2 + 50 * i + j, 1000 + 50 * i + j, day=f"2017-03-{10 + (j % 3)}") for j in range(50)]) for i in range(20)]
    produce_all(broker, topic_name, batches[:12])
    lake_root = tmp_path / "lake"
    assert history.main(history_args(broker, topic_name, lake_root)) == 0
    # The loader crashed after the broker acknowledged batches 10 and 11 but before its
    # checkpoint said so: it sends them again, then the rest.
    produce_all(broker, topic_name, [*batches[10:12], *batches[12:], (b"junk", b"not a batch")])
    assert history.main(history_args(broker, topic_name, lake_root)) == 0

    table = history_table(lake_root)
    summons = table.column("summons_number").to_pylist()
    assert sorted(summons) == list(range(1000, 2000))
    assert table.schema.field("violation_time").type == "time32[ms]" and table.schema.field("dt").type == "date32[day]"
    assert set(table.column("violation_time").to_pylist()) == {time_of_day(8, 35)}
    assert all(fine and fine > 0 for fine in table.column("fine_amount").to_pylist())
    dead = read_all(broker, f"{topic_name}-dead")
    assert [record.value for record in dead] == [b"not a batch"] and dead[0].headers["reason"] == b"bad_json"
