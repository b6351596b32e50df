"""DroneCop's reference table of NYC DOF parking violation codes, with fines and frequencies.

Codes and fines are facts from the NYC Department of Finance code table; descriptions
are our own short summaries; ``weight`` is how often a code appears among the city's
tickets (from an FY2017 sample), which the simulator draws from. Code 100 is not a DOF
code: it is the drone's "could not classify", handled by the message contract.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class ViolationCode:
    """One DOF code: fines in dollars, ``weight`` its share of the FY2017 sample's tickets."""

    code: int
    description: str
    fine_manhattan_96_below: float
    fine_elsewhere: float
    weight: float


@cache
def violation_codes() -> dict[int, ViolationCode]:
    """Every code of the table, loaded once."""
    text = resources.files("transforms").joinpath("data", "violation_codes.csv").read_text(encoding="utf-8")
    return {
        int(row["code"]): ViolationCode(
            int(row["code"]),
            row["description"],
            float(row["fine_manhattan_96_below"]),
            float(row["fine_elsewhere"]),
            float(row["weight"]),
        )
        for row in csv.DictReader(text.splitlines())
    }


def is_known(code: int) -> bool:
    return code in violation_codes()


def description(code: int) -> str:
    known = violation_codes().get(code)
    return known.description if known else f"code {code} (not in the DOF table)"


def fine(code: int, manhattan_below_96th: bool) -> float | None:
    """The fine for ``code`` where it was issued; None for a code the table lacks."""
    known = violation_codes().get(code)
    if known is None:
        return None
    return known.fine_manhattan_96_below if manhattan_below_96th else known.fine_elsewhere
