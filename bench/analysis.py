"""The analysis pipeline vs the same questions in DuckDB, side by side on one generated lake.

    python bench/analysis.py [--rows 5000000] [--runner DirectRunner] [--keep DIR] [pipeline flags…]

Builds a history lake of ``--rows`` summonses in a temporary folder, laid out as the
history pipeline writes it (``history/dt=…/``, four files a day, one per Kafka
partition, plus replayed files that repeat 2 % of the rows), with the city's shapes:
codes drawn by their FY2017 weights, weekday-heavy dates over fiscal year 2017, a
morning peak of violation times, three quarters New York plates and a long tail of
plates ticketed again and again. Then times, each in a process of its own as a user would
run it, (a) ``python -m pipelines.analysis`` (its DirectRunner preset) and (b) DuckDB
answering the same seven history questions from the same files; checks that both give
the same answers, and prints both times and their ratio (target: Beam within 3× of
DuckDB).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from transforms import lake  # noqa: E402
from transforms.violation_codes import violation_codes  # noqa: E402

FISCAL_YEAR_START = date(2016, 7, 1)
FIRST_SUMMONS = 8_000_000_000
KAFKA_PARTITIONS = 4
LOADED_AT_MS = 1_501_545_600_000  # the synthetic year was loaded on 2017-08-01
BOROUGH_SHARES = {"Manhattan": 0.31, "Brooklyn": 0.27, "Queens": 0.24, "Bronx": 0.13, "Staten Island": 0.04, None: 0.01}
STATE_SHARES = {
    "NY": 0.765,
    "NJ": 0.09,
    "PA": 0.028,
    "CT": 0.015,
    "FL": 0.014,
    "MA": 0.007,
    "IN": 0.006,
    "VA": 0.006,
    "NC": 0.005,
    "TX": 0.004,
    "MD": 0.004,
    "GA": 0.003,
    "99": 0.004,
    "OH": 0.003,
    "IL": 0.003,
    "ME": 0.003,
    "AZ": 0.002,
    "CA": 0.002,
    "MI": 0.002,
    "TN": 0.002,
    "SC": 0.002,
    "DE": 0.002,
    "RI": 0.002,
    "MN": 0.002,
    "QB": 0.002,
    "ON": 0.001,
    "OK": 0.001,
    "VT": 0.001,
    None: 0.009,
}
# Relative tickets per hour of the day, a morning peak as in the city's data.
HOUR_WEIGHTS = (6, 4, 3, 2, 2, 3, 8, 25, 55, 80, 85, 95, 90, 88, 70, 50, 38, 30, 25, 22, 20, 14, 10, 8)
WEEKDAY_WEIGHTS = (1.0, 1.05, 1.05, 1.05, 1.0, 0.55, 0.3)  # Monday … Sunday
MONTH_WEIGHTS = (0.8, 0.95, 1.05, 1.05, 1.0, 1.0, 0.9, 0.95, 1.1, 1.05, 1.1, 1.0)  # January … December
REPEAT_PLATES = 40_000  # commercial fleets and habitual parkers, ticketed again and again
REPEAT_SHARE = 0.25
TEXT_POOLS = {
    "plate_type": ["PAS", "PAS", "PAS", "COM", "COM", "OMT", "SRF", "999"],
    "vehicle_body_type": ["SUBN", "4DSD", "VAN", "DELV", "SDN", "PICK"],
    "vehicle_make": ["FORD", "TOYOT", "HONDA", "NISSA", "CHEVR", "FRUEH", "ME/BE", "BMW"],
    "issuing_agency": ["T", "T", "T", "T", "S", "P", "V", "X"],
    "street_name": ["BROADWAY", "W 43rd St", "ALLERTON AVE (W/B) @", "MAIN ST", "3rd Ave", "E 14th St"],
    "vehicle_color": ["GY", "WH", "BK", "WHITE", "BLK", "SILVA", "RED"],
    "violation_county": ["NY", "K", "Q", "BX", "R"],
}


def synthetic_history(rows: int, seed: int = 2017) -> pa.Table:
    """``rows`` summonses of fiscal year 2017 in the lake's history schema (every summons number once)."""
    rng = np.random.default_rng(seed)
    codes = violation_codes()
    code_list = np.array(sorted(codes), dtype=np.int16)
    code_weights = np.array([codes[int(code)].weight for code in code_list])
    violation_code = rng.choice(code_list, size=rows, p=code_weights / code_weights.sum())
    borough = _pick(rng, BOROUGH_SHARES, rows)
    manhattan = np.asarray(borough.cast(pa.string()).to_pandas() == "Manhattan")
    fines = {code: (entry.fine_manhattan_96_below, entry.fine_elsewhere) for code, entry in codes.items()}
    fine_manhattan = np.array([fines[int(code)][0] for code in code_list])
    fine_elsewhere = np.array([fines[int(code)][1] for code in code_list])
    code_index = np.searchsorted(code_list, violation_code)
    fine_amount = np.where(manhattan, fine_manhattan[code_index], fine_elsewhere[code_index])
    issue_date, improbable = _issue_dates(rng, rows)
    minutes = rng.choice(24, size=rows, p=_normalised(HOUR_WEIGHTS)) * 60 + rng.integers(0, 60, rows)
    violation_time = pa.array(minutes * 60_000, pa.int32(), mask=rng.random(rows) < 0.004).cast(pa.time32("ms"))
    columns: dict[str, pa.Array] = {
        "summons_number": pa.array(FIRST_SUMMONS + rng.permutation(rows).astype(np.int64) * 3),
        "issue_date": issue_date,
        "violation_time": violation_time,
        "violation_code": pa.array(violation_code),
        "violation_precinct": pa.array(rng.integers(1, 124, rows).astype(np.int16)),
        "issuer_precinct": pa.array(rng.integers(1, 124, rows).astype(np.int16)),
        "vehicle_year": pa.array(rng.integers(1995, 2018, rows).astype(np.int16)),
        "improbable_date": pa.array(improbable),
        "fine_amount": pa.array(fine_amount),
        "plate_id": _plates(rng, rows),
        "registration_state": _pick(rng, STATE_SHARES, rows).cast(pa.string()),
        "borough": borough.cast(pa.string()),
        "source_file": pa.array(np.full(rows, "synthetic-fy2017", dtype=object), pa.string()),
        "source_line": pa.array(np.arange(2, rows + 2, dtype=np.int64)),
        "loaded_at": pa.array(np.full(rows, LOADED_AT_MS, dtype=np.int64)).cast(lake.UTC_MILLIS),
    }
    for name, pool in TEXT_POOLS.items():
        indices = pa.array(rng.integers(0, len(pool), rows).astype(np.int32))
        columns[name] = pa.DictionaryArray.from_arrays(indices, pa.array(pool)).cast(pa.string())
    every_column = {field.name: columns.get(field.name, pa.nulls(rows, field.type)) for field in lake.HISTORY_SCHEMA}
    return pa.table(every_column, schema=lake.HISTORY_SCHEMA)


def write_history_lake(root: Path, table: pa.Table, replay_share: float = 0.02, seed: int = 1) -> int:
    """The history pipeline's layout: per day one file per Kafka partition, plus replayed copies.

    A replay is a second file in the same day folder holding rows already written:
    what a re-read after a crash would leave if the lake did not merge it. Returns the
    number of files written.
    """
    rng = np.random.default_rng(seed)
    table = table.sort_by("issue_date")
    days = table.column("issue_date").to_numpy()
    bounds = np.flatnonzero(np.r_[True, days[1:] != days[:-1], True])
    written = 0
    for start, end in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        day_rows = table.slice(start, end - start)
        folder = root / lake.HISTORY / f"dt={days[start]}"
        folder.mkdir(parents=True, exist_ok=True)
        partition = day_rows.column("summons_number").to_numpy() % KAFKA_PARTITIONS
        for number in range(KAFKA_PARTITIONS):
            part = day_rows.filter(pa.array(partition == number))
            if part.num_rows:
                pq.write_table(part, folder / f"part-synthetic-c00000-p{number}.parquet", compression="zstd")
                written += 1
        replayed = day_rows.filter(pa.array(rng.random(day_rows.num_rows) < replay_share))
        if replayed.num_rows:
            pq.write_table(replayed, folder / "part-synthetic-c00000-p0-replay.parquet", compression="zstd")
            written += 1
    return written


def _normalised(weights: tuple[float, ...] | np.ndarray) -> np.ndarray:
    array = np.asarray(weights, dtype=float)
    return array / array.sum()


def _pick(rng: np.random.Generator, shares: dict[str | None, float], rows: int) -> pa.DictionaryArray:
    """Values drawn by share, ``None`` as null, as a dictionary array (cheap to build for millions)."""
    values = list(shares)
    indices = rng.choice(len(values), size=rows, p=_normalised(tuple(shares.values())))
    null_at = values.index(None) if None in values else -1
    return pa.DictionaryArray.from_arrays(
        pa.array(indices.astype(np.int32), mask=indices == null_at), pa.array([value or "" for value in values])
    )


def _issue_dates(rng: np.random.Generator, rows: int) -> tuple[pa.Array, np.ndarray]:
    """Dates of FY2017 weighted by weekday and month; 0.01 % improbable, years off as the city's typos are."""
    days = [FISCAL_YEAR_START + timedelta(days=offset) for offset in range(365)]
    weights = _normalised(np.array([WEEKDAY_WEIGHTS[day.weekday()] * MONTH_WEIGHTS[day.month - 1] for day in days]))
    chosen = np.array(days, dtype="datetime64[D]")[rng.choice(len(days), size=rows, p=weights)]
    improbable = rng.random(rows) < 0.0001
    chosen[improbable] += rng.choice([-3650, 3650, 7300], size=int(improbable.sum())).astype("timedelta64[D]")
    return pa.array(chosen, pa.date32()), improbable


def _plates(rng: np.random.Generator, rows: int) -> pa.Array:
    """A quarter of tickets go to a pool of repeat plates (heavy-tailed), the rest to plates seen about once."""
    repeat = rng.random(rows) < REPEAT_SHARE
    numbers = rng.integers(0, 40 * rows + 1_000_000, rows)
    numbers[repeat] = np.minimum(rng.zipf(1.3, int(repeat.sum())) - 1, REPEAT_PLATES)
    unique_numbers, inverse = np.unique(numbers, return_inverse=True)
    names = pa.array([f"{'F' if number <= REPEAT_PLATES else 'P'}{number:07X}" for number in unique_numbers.tolist()])
    plates = names.take(pa.array(inverse.astype(np.int64)))
    blank = rng.random(rows) < 0.002
    return pa.array(np.where(blank, "BLANKPLATE", plates.to_numpy(zero_copy_only=False)), pa.string())


def duckdb_answers(root: Path) -> dict[str, Any]:
    """The seven history questions' answers from DuckDB: it de-duplicates and tallies, ``answers`` shapes.

    The same shaping functions as the pipeline's, so any difference is in the tallies.
    """
    import duckdb

    from transforms.analysis import answers
    from transforms.analysis.reading import HISTORY, data_files

    files = data_files(str(root), HISTORY)
    codes = violation_codes()
    connection = duckdb.connect()
    connection.execute(
        "CREATE TEMP TABLE h AS SELECT DISTINCT ON (summons_number) summons_number, issue_date, violation_time, "
        "violation_code, borough, registration_state, plate_id, fine_amount, improbable_date FROM read_parquet(?)",
        [files],
    )

    def tally(sql: str) -> dict[Any, Any]:
        rows = connection.execute(sql).fetchall()
        return {(row[0] if len(row) == 2 else tuple(row[:-1])): row[-1] for row in rows}

    per_day = tally("SELECT strftime(issue_date, '%Y-%m-%d'), count(*) FROM h WHERE NOT improbable_date GROUP BY 1")
    borough_hours = tally("SELECT borough, hour(violation_time), count(*) FROM h GROUP BY 1, 2")
    timed = {key: count for key, count in borough_hours.items() if key[1] is not None}
    hours: dict[int, int] = {}
    for (_, hour), count in timed.items():
        hours[hour] = hours.get(hour, 0) + count
    code_counts = tally(
        "SELECT violation_code, coalesce(borough = 'Manhattan', false), count(*) FROM h WHERE violation_code IS NOT NULL GROUP BY 1, 2"
    )
    plates = connection.execute(
        "SELECT plate_id, coalesce(registration_state, ''), count(*) AS n, coalesce(sum(fine_amount), 0) AS fines FROM h "
        "WHERE plate_id IS NOT NULL AND plate_id <> '' AND plate_id NOT IN ('BLANKPLATE') GROUP BY 1, 2 "
        "ORDER BY n DESC, fines DESC, 1, 2 LIMIT ?",
        [answers.TOP_PLATES],
    ).fetchall()
    return {
        "weekday_weekend": {"history": answers.weekday_weekend(per_day, per_day)},
        "hour_of_day": {
            "history": answers.hour_histogram(hours),
            "peak_hour_by_borough": {"history": answers.peak_hours(timed)},
            "without_time": {"history": sum(borough_hours.values()) - sum(timed.values())},
        },
        "top_codes": {"history": answers.top_codes(code_counts, codes)},
        "borough": {"history": answers.borough_summary(tally("SELECT borough, violation_code, count(*) FROM h GROUP BY 1, 2"), codes)},
        "registration_state": {"history": answers.state_summary(tally("SELECT registration_state, count(*) FROM h GROUP BY 1"))},
        "month_trend": {
            "history": answers.month_summary(
                tally("SELECT strftime(issue_date, '%Y-%m'), count(*) FROM h WHERE NOT improbable_date GROUP BY 1")
            )
        },
        "repeat_offenders": {
            "history": answers.top_plates(((plate, state or None), (count, fines)) for plate, state, count, fines in plates)
        },
    }


def beam_answers(root: Path, report: Path, runner: str, pipeline_args: list[str]) -> dict[str, Any]:
    """Runs the analysis as a user would (its own process, its runner's preset) and reads its report."""
    questions = ",".join(name for name in HISTORY_QUESTIONS)
    command = [
        sys.executable,
        "-m",
        "pipelines.analysis",
        f"--input={root}",
        f"--output={report}",
        f"--runner={runner}",
        f"--questions={questions}",
        *pipeline_args,
    ]
    subprocess.run(command, cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL)
    return json.loads((report / "report.json").read_text())


HISTORY_QUESTIONS = ("weekday_weekend", "hour_of_day", "top_codes", "borough", "registration_state", "month_trend", "repeat_offenders")


def duckdb_answers_in_own_process(root: Path) -> dict[str, Any]:
    """DuckDB's answers as a user would get them too: a fresh process that starts, imports and queries."""
    done = subprocess.run(
        [sys.executable, __file__, "--answer_with_duckdb", str(root)], cwd=REPO_ROOT, check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout)


def timed(work: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def differences(beam: dict[str, Any], duck: dict[str, Any]) -> list[str]:
    """Questions whose history answers differ between the two engines."""
    return [name for name in HISTORY_QUESTIONS if {key: value for key, value in beam[name].items() if key != "drone"} != duck[name]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--runner", default="DirectRunner")
    parser.add_argument("--keep", type=Path, help="Build the lake here and keep it (default: a temporary folder).")
    parser.add_argument("--answer_with_duckdb", type=Path, metavar="LAKE", help=argparse.SUPPRESS)
    args, pipeline_args = parser.parse_known_args()
    if args.answer_with_duckdb:
        print(json.dumps(duckdb_answers(args.answer_with_duckdb)))
        return 0
    with contextlib.ExitStack() as stack:
        work = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dronecop-analysis-")))
        root = work / "lake"
        if (root / lake.HISTORY).is_dir():
            print(f"lake: reusing {root}", flush=True)
        else:
            files, build_s = timed(lambda: write_history_lake(root, synthetic_history(args.rows)))
            print(f"lake: {args.rows:,} summonses in {files:,} files (+2 % replayed rows), built in {build_s:.0f} s", flush=True)
        beam, beam_s = timed(lambda: beam_answers(root, work / "report", args.runner, pipeline_args))
        duck, duck_s = timed(lambda: duckdb_answers_in_own_process(root))
    mismatched = differences(beam, duck)
    print(f"Beam {args.runner} {' '.join(pipeline_args)} ({os.cpu_count()} cores): {beam_s:7.1f} s")
    print(f"DuckDB (its own process):  {duck_s:7.1f} s")
    print(f"ratio Beam / DuckDB:       {beam_s / duck_s:7.2f}  (target ≤ 3)")
    print("answers: identical" if not mismatched else f"answers differ: {', '.join(mismatched)}")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
