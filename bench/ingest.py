"""The CSV loader vs a plain produce-every-line loop, side by side on the same synthetic file.

    python bench/ingest.py [--rows 1000000] [--workers N] [--engine kafka|tansu] [--bootstrap_servers HOST:PORT]

Writes a file of ``--rows`` rows in the FY2017 layout to a temporary folder (value shapes
sampled column by column from ``../shared/data/pvi_fy2017_sample.csv`` when it is there,
synthesised otherwise), then times (a) ``python -m csv_ingest`` with 50 records per
message and (b) a plain confluent-kafka loop producing each raw line as one message,
both with the same idempotent acks=all producer settings, to the same broker (an
embedded broker of --engine, by default the machine's default, on a free port unless
--bootstrap_servers is given), after one untimed warm-up load. Prints both rates and their ratio; the target
is loader ≥ 0.5 × plain loop.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import orjson
from confluent_kafka import Producer

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from csv_ingest.records import FY2017_COLUMNS  # noqa: E402
from runners.brokers import ENGINES  # noqa: E402
from transforms.kafka_settings import KafkaSettings, ensure_topics  # noqa: E402

SAMPLE = REPO_ROOT.parent / "shared" / "data" / "pvi_fy2017_sample.csv"
FY2017_HEADER = (
    "Summons Number,Plate ID,Registration State,Plate Type,Issue Date,Violation Code,Vehicle Body Type,"
    "Vehicle Make,Issuing Agency,Street Code1,Street Code2,Street Code3,Vehicle Expiration Date,"
    "Violation Location,Violation Precinct,Issuer Precinct,Issuer Code,Issuer Command,Issuer Squad,"
    "Violation Time,Time First Observed,Violation County,Violation In Front Of Or Opposite,House Number,"
    "Street Name,Intersecting Street,Date First Observed,Law Section,Sub Division,Violation Legal Code,"
    "Days Parking In Effect    ,From Hours In Effect,To Hours In Effect,Vehicle Color,Unregistered Vehicle?,"
    "Vehicle Year,Meter Number,Feet From Curb,Violation Post Code,Violation Description,"
    "No Standing or Stopping Violation,Hydrant Violation,Double Parking Violation"
)
TEMPLATES = 4096
FIRST_SUMMONS = 7_000_000_000
_SYNTHETIC_POOLS: dict[str, list[str]] = {
    "plate_id": ["GZH7067", "FZX9232", "66623ME", "HPB7516", "T630177C", "XCVB12", "92011JP"],
    "registration_state": ["NY"] * 8 + ["NJ", "PA", "CT", "FL"],
    "plate_type": ["PAS"] * 6 + ["COM"] * 3 + ["OMT", "SRF", "999"],
    "violation_code": ["21", "38", "14", "36", "37", "20", "46", "71", "7", "40", "5", "99"],
    "vehicle_body_type": ["SUBN", "4DSD", "VAN", "DELV", "SDN", "PICK", ""],
    "vehicle_make": ["FORD", "TOYOT", "HONDA", "NISSA", "CHEVR", "FRUEH", "ME/BE", "BMW"],
    "issuing_agency": ["T"] * 6 + ["S", "P", "V", "X"],
    "street_code1": ["0", "10610", "34330", "25645", "97530", "13610"],
    "vehicle_expiration_date": ["20180630", "0", "88888888", "20170915"],
    "violation_location": ["", "14", "19", "115", "0033"],
    "violation_precinct": ["0", "14", "19", "115", "33", "123"],
    "issuer_code": ["0", "359594", "47911", "921043", "589219"],
    "issuer_command": ["", "T102", "0972", "0302", "T401"],
    "issuer_squad": ["", "J", "A", "0000", "L"],
    "time_first_observed": [""] * 12 + ["2050P", "1635P"],
    "violation_county": ["NY", "NY", "K", "Q", "BX", "BK", "QN", "R", "ST", "MN", ""],
    "violation_in_front_of_or_opposite": ["F", "O", ""],
    "house_number": ["", "330", "712", "30-12", "201"],
    "street_name": ["BROADWAY", "W 43rd St", "ALLERTON AVE (W/B) @", "MAIN ST", "LGA TERMINAL D"],
    "intersecting_street": ["", "", "BARNES AVE", "10ft E/of 7th Ave"],
    "date_first_observed": ["0"] * 9 + ["20170614"],
    "law_section": ["408", "408", "1180", "1111"],
    "sub_division": ["D", "C", "l2", "F1", "I4", "D5"],
    "violation_legal_code": ["", "", "T"],
    "days_parking_in_effect": ["BBBBBBB", "YYYYYYY", "YYYYYYB", ""],
    "from_hours_in_effect": ["", "ALL", "0700A"],
    "to_hours_in_effect": ["", "ALL", "0700P"],
    "vehicle_color": ["GY", "WH", "BK", "WHITE", "BLK", "SILVA", "RED"],
    "unregistered_vehicle": ["", "0"],
    "vehicle_year": ["0", "2001", "2007", "2013", "2015", "2017"],
    "meter_number": ["", "-", "144-1345"],
    "feet_from_curb": ["0"],
    "violation_post_code": ["", "4", "A 12"],
    "violation_description": ["", "FAILURE TO STOP AT RED LIGHT", "BUS LANE VIOLATION", "64-No STD Ex Con/DPL, D/S Dec"],
    "no_standing_or_stopping_violation": [""],
    "hydrant_violation": [""],
    "double_parking_violation": [""],
}
_SYNTHETIC_POOLS["street_code2"] = _SYNTHETIC_POOLS["street_code3"] = _SYNTHETIC_POOLS["street_code1"]
_SYNTHETIC_POOLS["issuer_precinct"] = _SYNTHETIC_POOLS["violation_precinct"]


def value_pools(sample: Path | None = SAMPLE) -> dict[str, list[str]]:
    """Values per column: the real sample's when it is there (shapes and spellings as the city writes them)."""
    if sample is None or not sample.is_file():
        return _SYNTHETIC_POOLS
    with open(sample, newline="", encoding="utf-8", errors="replace") as handle:
        rows = [row for row in list(csv.reader(handle))[1:] if len(row) == len(FY2017_COLUMNS)]
    return {column: [row[index] for row in rows] for index, column in enumerate(FY2017_COLUMNS)}


def write_synthetic_csv(path: Path, rows: int, seed: int = 2017, sample: Path | None = SAMPLE) -> list[int]:
    """A FY2017-layout CSV (CRLF, like the city's) of ``rows`` rows; returns their summons numbers.

    Rows are cut from a few thousand templates whose columns are drawn independently, with
    a unique summons number, an issue date in FY2017 and a 12-hour violation time each.
    """
    randomizer = random.Random(seed)
    pools = value_pools(sample)
    before, middle, after = _templates(randomizer, pools)
    days = [(date(2016, 7, 1) + timedelta(days=offset)).strftime("%m/%d/%Y") for offset in range(365)]
    times = [f"{hour:02d}{minute:02d}{half}" for hour in range(1, 13) for minute in range(60) for half in "AP"]
    summons = list(range(FIRST_SUMMONS, FIRST_SUMMONS + rows))
    choice, pick = randomizer.randrange, randomizer.choice
    with open(path, "w", newline="", encoding="utf-8") as handle:
        handle.write(FY2017_HEADER + "\r\n")
        chunk: list[str] = []
        for number in summons:
            template = choice(TEMPLATES)
            chunk.append(f"{number},{before[template]},{pick(days)},{middle[template]},{pick(times)},{after[template]}\r\n")
            if len(chunk) >= 10_000:
                handle.write("".join(chunk))
                chunk.clear()
        handle.write("".join(chunk))
    return summons


def _templates(randomizer: random.Random, pools: dict[str, list[str]]) -> tuple[list[str], list[str], list[str]]:
    """Per template, the CSV text before the issue date, between it and the violation time, and after that."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="")
    issue_at, time_at = FY2017_COLUMNS.index("issue_date"), FY2017_COLUMNS.index("violation_time")

    def text(columns: tuple[str, ...]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([randomizer.choice(pools[column]) for column in columns])
        return buffer.getvalue()

    before, middle, after = [], [], []
    for _ in range(TEMPLATES):
        before.append(text(FY2017_COLUMNS[1:issue_at]))
        middle.append(text(FY2017_COLUMNS[issue_at + 1 : time_at]))
        after.append(text(FY2017_COLUMNS[time_at + 1 :]))
    return before, middle, after


def plain_loop(settings: KafkaSettings, topic: str, path: Path) -> int:
    """Produce every raw line (header excluded) as one message and wait for every acknowledgement."""
    producer = Producer(settings.producer_config(log_level=0))
    failures: list[str] = []

    def delivered(error: object, _message: object) -> None:
        if error is not None:
            failures.append(str(error))

    count = 0
    with open(path, "rb") as handle:
        handle.readline()
        for line in handle:
            while True:
                try:
                    producer.produce(topic, line, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
            count += 1
    remaining = producer.flush(300)
    if remaining or failures:
        raise SystemExit(f"plain loop: {remaining} undelivered, failures {failures[:3]}")
    return count


def run_loader(bootstrap: str, topic: str, path: Path, work: Path, workers: list[str]) -> dict[str, float]:
    """``python -m csv_ingest`` as a user runs it; its JSON summary line."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "csv_ingest",
            str(path),
            "--batch_lines",
            "50",
            f"--bootstrap_servers={bootstrap}",
            f"--topic={topic}",
            f"--checkpoint={work / 'bench.ckpt'}",
            f"--rejects={work / 'bench.rejects.csv'}",
            *workers,
        ],
        cwd=REPO_ROOT,
        check=True,
        stdout=subprocess.PIPE,
    )
    return orjson.loads(result.stdout.splitlines()[-1])


def main() -> int:
    from bench.common import embedded_broker

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bootstrap_servers", default=None)
    parser.add_argument("--engine", choices=ENGINES, default=None, help="the embedded broker (default: the machine's)")
    parser.add_argument("--workers", type=int, default=None, help="the loader's --workers (default: its own default)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ingest-")))
        path = work / "pvi_fy2017_synthetic.csv"
        started = time.perf_counter()
        write_synthetic_csv(path, args.rows)
        print(
            f"file                {args.rows:,} rows, {path.stat().st_size / 1e6:,.0f} MB "
            f"(written in {time.perf_counter() - started:.1f} s; shapes from "
            f"{'the FY2017 sample' if SAMPLE.is_file() else 'built-in pools'})"
        )
        bootstrap = args.bootstrap_servers or stack.enter_context(embedded_broker(args.engine))
        settings = KafkaSettings.from_env(bootstrap)
        suffix = uuid.uuid4().hex[:8]
        loader_topic, plain_topic, warm_up_topic = f"bench-ingest-{suffix}", f"bench-lines-{suffix}", f"bench-warm-{suffix}"
        ensure_topics(
            settings, [loader_topic, plain_topic, warm_up_topic], partitions=dict.fromkeys([loader_topic, plain_topic, warm_up_topic], 4)
        )

        # A JVM broker runs its first million messages slower while its JIT compiles: neither
        # side should pay for that, so the broker takes one untimed load first.
        started = time.perf_counter()
        plain_loop(settings, warm_up_topic, path)
        print(f"broker warm-up      {time.perf_counter() - started:7.2f} s  (the plain loop, untimed)")

        started = time.perf_counter()
        summary = run_loader(bootstrap, loader_topic, path, work, [] if args.workers is None else [f"--workers={args.workers}"])
        loader_seconds = time.perf_counter() - started

        started = time.perf_counter()
        plain_rows = plain_loop(settings, plain_topic, path)
        plain_seconds = time.perf_counter() - started

    loader_rate, plain_rate = summary["rows_read"] / loader_seconds, plain_rows / plain_seconds
    print(
        f"csv_ingest          {loader_seconds:7.2f} s  {loader_rate:10,.0f} rows/s  "
        f"({summary['sent']:,} sent in {summary['batches']:,} batches, {summary['rejected']:,} rejected; "
        f"{summary['rows_per_s']:,.0f} rows/s inside the process; peak memory {summary['peak_rss_mb']:.0f} MB "
        "with its workers)"
    )
    print(f"plain line loop     {plain_seconds:7.2f} s  {plain_rate:10,.0f} rows/s  ({plain_rows:,} messages)")
    print(f"ratio (loader / plain): {loader_rate / plain_rate:.2f}  (target ≥ 0.50)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
