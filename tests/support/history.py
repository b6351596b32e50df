"""The history pipeline's input as the tests make it: records as the loader reads them, the batches it sends of them,
and the pipeline's command line; and the history lake read back."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds

from transforms import lake
from transforms.history_contract import encode_history_batch
from transforms.kafka_settings import KafkaSettings

FINGERPRINT = "f" * 64


def record(line: int, summons: int, day: str = "2017-03-14", borough: str | None = "Manhattan", code: int = 21) -> dict:
    return {
        "line": line,
        "summons_number": summons,
        "issue_date": day,
        "violation_code": code,
        "borough": borough,
        "violation_time": "08:35",
        "registration_state": "NY",
        "plate_id": f"P{summons}",
        "violation_county": "NY",
        "vehicle_year": 2015,
        "street_code1": 34310,
        "improbable_date": False,
    }


def loader_batch(first_line: int, records: list[dict]) -> tuple[bytes, bytes]:
    """The message the loader sends for these records (they all have the same keys; ``first_line`` is the first's line)."""
    assert records[0]["line"] == first_line
    return encode_history_batch(FINGERPRINT, {name: [record[name] for record in records] for name in records[0]})


def history_args(settings: KafkaSettings, topic: str, lake_root: Path) -> list[str]:
    return [
        f"--bootstrap_servers={settings.bootstrap_servers}",
        f"--topic={topic}",
        f"--dead_letter_topic={topic}-dead",
        f"--group_id={topic}-group",
        f"--output={lake_root}",
        "--drain",
    ]


def lake_history(lake_root: Path):
    dataset = ds.dataset(lake_root / lake.HISTORY, format="parquet", partitioning=ds.partitioning(lake.DATE_PARTITIONING, flavor="hive"))
    return dataset.to_table()


def columns_of(records: list[dict]) -> dict[str, list]:
    """The columns the loader sends for these records (they all have the same keys)."""
    return {name: [record[name] for record in records] for name in records[0]}


def loader_batches(count: int, first_summons: int = 10_000, days: int = 30, plate: str = "P") -> list[tuple[bytes, bytes]]:
    """``count`` loader batches of 50 records, summons numbers from ``first_summons``, each on a day it alone decides."""
    return [
        loader_batch(
            2 + 50 * i,
            [
                {
                    **record(2 + 50 * i + j, first_summons + 50 * i + j, day=f"2017-04-{1 + (first_summons + 50 * i + j) % days:02d}"),
                    "plate_id": f"{plate}{first_summons + 50 * i + j}",
                }
                for j in range(50)
            ],
        )
        for i in range(count)
    ]
