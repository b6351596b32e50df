"""What the fault scenarios found, kept for the table printed at the end of the session.

Each scenario compares what came out of the system (lake rows, dead letters, desk alerts,
rejects) with its ground truth and records, per kind of output, how many records were
lost, how many were there more than once, and how many were wrong (not in the ground
truth at all, or there with another reason). It also counts crashes: a component that
died or hung without being killed (a pipeline that gave up when the broker restarted
under it, say) loses nothing by itself, but it is a fault the system did not survive.
The session's terminal summary prints one line per scenario, so a run with many rounds
shows at a glance what was injected and whether anything leaked.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterable, Mapping

import pytest

EXAMPLES_KEPT = 3


@dataclass
class Tally:
    """One kind of output against its ground truth."""

    what: str
    expected: int
    lost: int
    duplicated: int
    wrong: int
    examples: list[str] = field(default_factory=list)

    def describe(self) -> str:
        counts = f"{self.lost} lost, {self.duplicated} duplicated, {self.wrong} wrong"
        text = f"{self.what}: {self.expected:,} expected, {counts}"
        return text + (f" (e.g. {'; '.join(self.examples)})" if self.examples else "")


def tally(what: str, expected: Mapping[Hashable, object], found: Iterable[tuple[Hashable, object]]) -> Tally:
    """Compare ``found`` (key, value) pairs with the ``expected`` value of each key.

    Lost: expected keys never found. Duplicated: every extra copy of a key found more than
    once. Wrong: found keys that are not expected, or found with another value (a dead
    letter with the wrong reason, say); each such key counts once.
    """
    counts: Counter = Counter()
    mismatched: dict[Hashable, object] = {}
    for key, value in found:
        counts[key] += 1
        if key not in expected or expected[key] != value:
            mismatched.setdefault(key, value)
    lost = [key for key in expected if key not in counts]
    doubled = {key: count for key, count in counts.items() if count > 1}
    examples = [f"lost {key!r}" for key in lost[:EXAMPLES_KEPT]]
    examples += [f"{key!r} ×{count}" for key, count in list(doubled.items())[:EXAMPLES_KEPT]]
    for key, value in list(mismatched.items())[:EXAMPLES_KEPT]:
        examples.append(f"{key!r}={value!r}, expected {expected.get(key, 'nothing')!r}")
    duplicated = sum(count - 1 for count in doubled.values())
    return Tally(what, len(expected), len(lost), duplicated, len(mismatched), examples)


@dataclass
class ScenarioRecord:
    """One scenario's rounds, the faults it injected and what its checks found."""

    name: str
    seed: int
    rounds: int = 0
    faults: Counter = field(default_factory=Counter)
    tallies: list[Tally] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    def fault(self, kind: str, said: str) -> None:
        """Count one injected fault and say what it was, so a failing run can be followed."""
        self.faults[kind] += 1
        print(f"[{self.name}] round {self.rounds}: {said}", flush=True)

    def note(self, said: str) -> None:
        """Something worth knowing that is no failure (a drain that gave up while the storage was away)."""
        self.notes.append(said)
        print(f"[{self.name}] {said}", flush=True)

    def crash(self, said: str) -> None:
        """A component died or hung on its own: the scenario fails, whatever the tallies say."""
        self.crashes.append(said)
        print(f"[{self.name}] CRASH {said}", flush=True)

    @property
    def clean(self) -> bool:
        return self.lost == self.duplicated == self.wrong == len(self.crashes) == 0

    @property
    def lost(self) -> int:
        return sum(item.lost for item in self.tallies)

    @property
    def duplicated(self) -> int:
        return sum(item.duplicated for item in self.tallies)

    @property
    def wrong(self) -> int:
        return sum(item.wrong for item in self.tallies)

    def verdict(self) -> str:
        """Everything a failed assertion should show: the seed to rerun with, each tally, the notes."""
        lines = [
            f"{self.name}: seed {self.seed} (rerun with DRONECOP_FAULT_SEED={self.seed}), {self.rounds} rounds, "
            f"faults {self.fault_summary()}"
        ]
        lines += [f"  {item.describe()}" for item in self.tallies]
        lines += [f"  crash: {crash}" for crash in self.crashes]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def fault_summary(self) -> str:
        return ", ".join(f"{kind} {count}" for kind, count in sorted(self.faults.items())) or "none"


@dataclass
class FaultLedger:
    """Every scenario of the session, in the order they ran."""

    seed: int
    rounds: int
    scenarios: list[ScenarioRecord] = field(default_factory=list)

    def open(self, name: str, seed: int) -> ScenarioRecord:
        record = ScenarioRecord(name, seed)
        self.scenarios.append(record)
        print(f"[{name}] seed {seed}, {self.rounds} rounds", flush=True)
        return record

    def table(self) -> list[str]:
        header = ("scenario", "rounds", "faults injected", "checked", "lost", "duplicated", "wrong", "crashes", "seconds")
        rows = [header]
        for record in self.scenarios:
            checked = ", ".join(f"{item.expected:,} {item.what}" for item in record.tallies) or "not reached"
            counts = (record.lost, record.duplicated, record.wrong, len(record.crashes))
            rows.append((record.name, str(record.rounds), record.fault_summary(), checked, *map(str, counts), f"{record.seconds:.0f}"))
        widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
        lines = [f"seed {self.seed} (DRONECOP_FAULT_SEED), {self.rounds} rounds per scenario (DRONECOP_FAULT_ROUNDS)"]
        lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
        return lines


LEDGER = pytest.StashKey[FaultLedger]()
# What the ``scenario`` fixture gives a test: open a scenario by name, get its record and its random generator.
OpenScenario = Callable[[str], tuple[ScenarioRecord, random.Random]]
