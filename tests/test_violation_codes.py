"""Our DOF code table: well formed, and in agreement with the city's own table when it is here."""

from __future__ import annotations

import collections
import csv
from pathlib import Path

import pyarrow as pa
import pytest

from transforms.violation_codes import fines, is_known, is_manhattan, violation_codes

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared" / "data"
TABLE = REPO_ROOT / "transforms" / "data" / "violation_codes.csv"


def test_each_code_has_one_row() -> None:
    with open(TABLE, newline="", encoding="utf-8") as handle:
        codes = [int(row["code"]) for row in csv.DictReader(handle)]
    assert len(codes) == len(set(codes)) == len(violation_codes())


def test_codes_are_dof_codes_with_non_negative_fines_and_weights() -> None:
    codes = violation_codes()
    assert len(codes) >= 80 and all(1 <= code <= 99 for code in codes)
    assert all(entry.fine_manhattan_96_below >= 0 and entry.fine_elsewhere >= 0 and entry.weight > 0 for entry in codes.values())
    assert codes[99].fine_elsewhere == 0 and codes[99].fine_manhattan_96_below == 0


def test_lookups() -> None:
    assert is_known(21) and not is_known(41) and not is_known(100)
    priced = fines(pa.array([21, 21, 41, None, 21], pa.int16()), pa.array(["Manhattan", "Queens", "Manhattan", "Manhattan", None]))
    assert priced.to_pylist() == [65, 45, None, None, 45]
    assert violation_codes()[21].fine(in_manhattan=True) == 65 and violation_codes()[21].fine(in_manhattan=False) == 45
    assert is_manhattan("Manhattan") and not is_manhattan("Queens") and not is_manhattan(None)


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is absent")
def test_codes_and_fines_agree_with_the_dof_table() -> None:
    with open(SHARED / "dof_violation_codes.csv", newline="") as handle:
        city = {int(row["CODE"]): row for row in csv.DictReader(handle)}
    ours = violation_codes()
    assert set(ours) == set(city)
    for code, row in city.items():
        assert ours[code].fine_manhattan_96_below == float(row["MANHATTAN_96_AND_BELOW"])
        assert ours[code].fine_elsewhere == float(row["ALL_OTHER_AREAS"])


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is absent")
def test_weights_are_the_codes_shares_of_the_fy2017_tickets() -> None:
    with open(SHARED / "pvi_fy2017_sample.csv", newline="", encoding="utf-8") as handle:
        tickets = collections.Counter(int(row["Violation Code"]) for row in csv.DictReader(handle))
    total = sum(tickets.values())
    floor = min(entry.weight for entry in violation_codes().values())
    for code, entry in violation_codes().items():
        if code in tickets:
            assert entry.weight == pytest.approx(tickets[code] / total, abs=1e-6), code
        else:
            assert entry.weight == floor < 1 / total, code
