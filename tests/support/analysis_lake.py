"""Drone and maintenance-risk lakes written as the stream writes them, with replayed and late files, for the
analysis's tests and the deploy checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from transforms import lake
from transforms.messages import messages_to_table


def write_drone_lake(root: Path, messages: list[Any]) -> None:
    """One file per UTC hour as the stream writes them, a replayed copy of every 20th row, a late file."""
    table = messages_to_table(messages, [0] * len(messages), list(range(len(messages))), str(root))
    hours = pd.Series(table.column("timestamp").to_pandas()).dt.floor("h")
    for hour, indices in hours.groupby(hours).groups.items():
        folder = Path(lake.drone_partition(str(root), hour.to_pydatetime()))
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.take(pa.array(indices)), folder / "part-window.parquet")
    last_folder = Path(lake.drone_partition(str(root), hours.iloc[-1].to_pydatetime()))
    pq.write_table(table.take(pa.array(range(0, table.num_rows, 20))), last_folder / "part-replay.parquet")
    pq.write_table(table.slice(100, 300), last_folder / "part-late.parquet")
    stray = root / lake.DRONE / lake.TEMP_FOLDER
    stray.mkdir(parents=True)
    (stray / "half-written.parquet").write_bytes(b"not parquet")


def risk_scores(messages: list[Any]) -> pa.Table:
    """Scores as the stream writes them to drone_risk, of every third message: the risk a drone's hours flown since
    its repair give (a stand-in for the model: what the question must summarise is the scores, whatever made them)."""
    scored = [
        message for index, message in enumerate(messages) if index % 3 == 0 and not message.is_fault and message.flight_hours is not None
    ]
    return pa.Table.from_pydict(
        {
            "message_id": [message.message_id for message in scored],
            "drone_id": [message.drone_id for message in scored],
            "timestamp": [message.timestamp for message in scored],
            "failure_risk": [round(min(1.0, message.flight_hours / 50), 4) for message in scored],
        },
        schema=lake.RISK_SCHEMA,
    )


def write_risk_lake(root: Path, scores: pa.Table) -> None:
    """One file per UTC hour, and a replayed copy of the first hour's."""
    hours = pd.Series(scores.column("timestamp").to_pandas()).dt.floor("h")
    for hour, indices in hours.groupby(hours).groups.items():
        folder = Path(lake.drone_partition(str(root), hour.to_pydatetime(), lake.DRONE_RISK))
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(scores.take(pa.array(indices)), folder / "part-window.parquet")
        if hour == hours.iloc[0]:
            pq.write_table(scores.take(pa.array(indices)), folder / "part-replay.parquet")
