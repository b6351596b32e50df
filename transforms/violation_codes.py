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

import pyarrow as pa
import pyarrow.compute as pc

MANHATTAN = "Manhattan"  # the borough name the CSV loader gives New York County


@dataclass(frozen=True)
class ViolationCode:
    """One DOF code: fines in dollars, ``weight`` its share of the FY2017 sample's tickets."""

    code: int
    description: str
    fine_manhattan_96_below: float
    fine_elsewhere: float
    weight: float

    def fine(self, in_manhattan: bool) -> float:
        """The fine of one ticket: DroneCop's one statement of the Manhattan rule.

        The city's data does not say whether a Manhattan street is below 96th St, where most
        of its tickets are issued, so the Manhattan (≤96th St) fine stands for all of
        Manhattan; every other borough pays the fine elsewhere.
        """
        return self.fine_manhattan_96_below if in_manhattan else self.fine_elsewhere


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


def is_manhattan(borough: str | None) -> bool:
    """Whether a ticket's borough (as the CSV loader names it) is charged the Manhattan fine."""
    return borough == MANHATTAN


def fines(codes: pa.Array, boroughs: pa.Array) -> pa.Array:
    """The fine of each ticket by :meth:`ViolationCode.fine`, a column at a time.

    A code the table lacks (or no code) has no fine: null; an unknown borough is not Manhattan.
    """
    table = violation_codes()
    known = pa.array(list(table), pa.int64())
    at = pc.index_in(pc.cast(codes, pa.int64()), value_set=known)
    manhattan = pc.take(pa.array([entry.fine(in_manhattan=True) for entry in table.values()], pa.float64()), at)
    elsewhere = pc.take(pa.array([entry.fine(in_manhattan=False) for entry in table.values()], pa.float64()), at)
    in_manhattan = pc.fill_null(pc.equal(boroughs, MANHATTAN), False)
    return pc.if_else(in_manhattan, manhattan, elsewhere)
