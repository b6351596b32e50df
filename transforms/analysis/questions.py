"""The questions the analysis answers, one named PTransform each.

A question takes the lake as the reader prepared it — a dict of PCollections:
``history`` (tables of distinct summonses) and ``drone`` (tables of distinct, annotated
sightings) — and yields, per dataset it reads, one element ``((question name, dataset),
combined tallies)``. Datasets missing from the dict are simply not answered.

Every question follows the same path: a few Arrow kernels turn each table into partial
tallies (``Tally``), ``CombineGlobally`` adds the partials up, and a pure function of
:mod:`transforms.analysis.answers` shapes the combined tallies into the answer. The
shaping runs once for the whole report (:func:`answer_all`, with the DOF code table
and the days the drones flew as ``Lookups``), not as steps of each question: every
step after a combine is a stage the local runner schedules on its own, and the
shaping is microseconds of work on small dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain
from typing import Any, ClassVar, Iterable, Iterator, Mapping

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.analysis import answers, arrow_ops
from transforms.analysis.reading import BOROUGH, DEFAULT_BUCKETS, FAULTS, IS_ALERT, NY_DAY, NY_HOUR, PHOTO_MISSING
from transforms.analysis.tallies import Tally, TallyKey
from transforms.maintenance.features import DEFAULT_HORIZON_MINUTES, MINUTE_MS
from transforms.maintenance.training import DEFAULT_RISK_THRESHOLD
from transforms.violation_codes import ViolationCode

HISTORY, DRONE, RISK = "history", "drone", "drone_risk"
ResultKey = tuple[str, str]  # (question name, dataset)


@dataclass(frozen=True)
class Lookups:
    """What shaping needs besides the tallies: the DOF code table, the New York days the drones flew."""

    codes: Mapping[int, ViolationCode]
    drone_days: list[str] = field(default_factory=list)


class Question(beam.PTransform):
    """One question: its name, the columns it needs from each dataset, how each dataset is combined and shaped.

    ``history_columns`` / ``drone_columns`` is None when that dataset cannot answer it.
    ``combined`` is the Beam part (a dataset's tables → one combined element);
    ``shape_part`` and ``assemble`` are the pure last step, run by :func:`answer_all`.
    ``buckets``: what a question that shuffles by key spreads its keys over (``--shuffle_buckets``).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    history_columns: ClassVar[tuple[str, ...] | None] = None
    drone_columns: ClassVar[tuple[str, ...] | None] = None
    risk_columns: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, buckets: int = DEFAULT_BUCKETS) -> None:
        super().__init__()
        self.buckets = buckets

    @classmethod
    def datasets(cls) -> tuple[str, ...]:
        named = ((HISTORY, cls.history_columns), (DRONE, cls.drone_columns), (RISK, cls.risk_columns))
        return tuple(name for name, columns in named if columns is not None)

    def expand(self, lake: dict[str, beam.PCollection]) -> beam.PCollection:
        parts = [
            self.combined(lake, dataset) | f"Key{dataset.title()}" >> beam.WithKeys((self.name, dataset))
            for dataset in self.datasets()
            if dataset in lake
        ]
        return parts | "Parts" >> beam.Flatten()

    def combined(self, lake: dict[str, beam.PCollection], dataset: str) -> beam.PCollection:
        raise NotImplementedError

    @classmethod
    def answer(cls, parts: dict[str, Any], lookups: Lookups) -> dict[str, Any]:
        """The answer from each dataset's combined tallies."""
        return cls.assemble({dataset: cls.shape_part(dataset, combined, lookups) for dataset, combined in parts.items()})

    @staticmethod
    def shape_part(dataset: str, combined: Any, lookups: Lookups) -> Any:
        raise NotImplementedError

    @staticmethod
    def assemble(parts: dict[str, Any]) -> dict[str, Any]:
        """The answer from each dataset's part; by default ``{"history": …, "drone": …}``."""
        return parts


class TalliedQuestion(Question):
    """A question answered by tallying each dataset's rows by key, then shaping the tallies.

    ``keys[dataset]`` picks and keys a dataset's rows; ``shape`` turns the combined
    tallies into that dataset's part of the answer, with the DOF code table as a second
    argument when ``uses_codes``.
    """

    keys: ClassVar[dict[str, TallyKey]]
    uses_codes: ClassVar[bool] = False

    def combined(self, lake: dict[str, beam.PCollection], dataset: str) -> beam.PCollection:
        return lake[dataset] | f"{dataset.title()}Tally" >> Tally(self.keys[dataset])

    @classmethod
    def shape_part(cls, dataset: str, combined: dict[Any, int], lookups: Lookups) -> Any:
        return cls.shape(combined, lookups.codes) if cls.uses_codes else cls.shape(combined)

    @staticmethod
    def shape(tallies: dict[Any, Any], *lookups: Any) -> Any:
        raise NotImplementedError


def answer_all(
    results: Mapping[ResultKey, Any], questions: Iterable[type[Question]], datasets: Iterable[str], lookups: Lookups
) -> dict[str, dict[str, Any]]:
    """Every question's answer, in the order given, from the combined results of the ``datasets`` read.

    A result missing for a dataset that was read means no row reached its combine (a
    dataset of empty files, drones that saw nothing): that part is answered from ``{}``.
    """
    read = set(datasets)
    return {
        question.name: question.answer(
            {dataset: results.get((question.name, dataset), {}) for dataset in question.datasets() if dataset in read},
            lookups,
        )
        for question in questions
    }


# Row pickers: which rows a question counts, as key columns. ------------------------------


def probable_issue_dates(table: pa.Table) -> pa.Table:
    """Issue dates, without those the loader flagged as improbable (typos years off); only that column is filtered."""
    return pa.table({"day": table.column("issue_date").filter(pc.invert(table.column("improbable_date")))})


def violations(table: pa.Table) -> pa.Table:
    """Drone sightings that are violations: a code the drone or an operator gave, not an alert."""
    return table.filter(pc.invert(table.column(IS_ALERT)))


def drone_violation_days(table: pa.Table) -> pa.Table:
    return pa.table({"day": violations(table).column(NY_DAY)})


def history_borough_hours(table: pa.Table) -> pa.Table:
    return pa.table({"borough": table.column("borough"), "hour": pc.hour(table.column("violation_time")).cast(pa.int8())})


def drone_borough_hours(table: pa.Table) -> pa.Table:
    return violations(table).select([BOROUGH, NY_HOUR])


def borough_codes(table: pa.Table) -> pa.Table:
    return table.select(["borough", "violation_code"])


def drone_borough_codes(table: pa.Table) -> pa.Table:
    return violations(table).select([BOROUGH, "violation_code"])


def states(table: pa.Table) -> pa.Table:
    return table.select(["registration_state"])


def fleet_keys(table: pa.Table) -> pa.Table:
    return pa.table(
        {
            "drone_id": table.column("drone_id"),
            "day": table.column(NY_DAY),
            "alert": table.column(IS_ALERT),
            "correction": pc.is_valid(table.column("resolves_message_id")),
            "photo_missing": table.column(PHOTO_MISSING),
        }
    )


# The questions. -----------------------------------------------------------------------


class WeekdayWeekend(TalliedQuestion):
    """Violations per weekday vs per weekend day, each over the days of its kind in the data."""

    name = "weekday_weekend"
    title = "Weekdays vs weekends"
    history_columns = ("issue_date", "improbable_date")
    drone_columns = ()
    keys = {HISTORY: probable_issue_dates, DRONE: drone_violation_days}

    @staticmethod
    def shape_part(dataset: str, per_day: dict[str, int], lookups: Lookups) -> dict[str, Any]:
        """History counts the days it has tickets on; the drones also the days they flew and found nothing."""
        return answers.weekday_weekend(per_day, lookups.drone_days if dataset == DRONE else per_day)


def hours_part(borough_hours: dict[tuple[str | None, int | None], int]) -> dict[str, Any]:
    """Per-hour counts, per-borough peaks and the count without a time, from (borough, hour) tallies."""
    timed = {key: count for key, count in borough_hours.items() if key[1] is not None}
    per_hour: dict[int, int] = {}
    for (_, hour), count in timed.items():
        per_hour[hour] = per_hour.get(hour, 0) + count
    return {
        "counts": answers.hour_histogram(per_hour),
        "peaks": answers.peak_hours(timed),
        "without_time": sum(borough_hours.values()) - sum(timed.values()),
    }


class HourOfDay(TalliedQuestion):
    """Violations per hour of the day (New York time), and each borough's peak hour."""

    name = "hour_of_day"
    title = "Hour of day"
    history_columns = ("violation_time", "borough")
    drone_columns = ("latitude", "longitude")
    keys = {HISTORY: history_borough_hours, DRONE: drone_borough_hours}
    shape = staticmethod(hours_part)

    @staticmethod
    def assemble(parts):
        return {
            **{dataset: part["counts"] for dataset, part in parts.items()},
            "peak_hour_by_borough": {dataset: part["peaks"] for dataset, part in parts.items()},
            "without_time": {dataset: part["without_time"] for dataset, part in parts.items()},
        }


class TopCodes(TalliedQuestion):
    """The most frequent violation codes, described and priced from the DOF code table (a side input)."""

    name = "top_codes"
    title = "Top violation codes"
    history_columns = ("violation_code", "borough")
    drone_columns = ("latitude", "longitude")
    keys = {HISTORY: borough_codes, DRONE: drone_borough_codes}
    uses_codes = True

    @staticmethod
    def shape(borough_codes: dict[tuple[str | None, int | None], int], codes: Mapping[int, ViolationCode]) -> list[dict[str, Any]]:
        return answers.top_codes(answers.codes_by_manhattan(borough_codes), codes)


class Borough(TalliedQuestion):
    """Violations per borough and the three most frequent codes in each."""

    name = "borough"
    title = "Boroughs"
    history_columns = ("borough", "violation_code")
    drone_columns = ("latitude", "longitude")
    keys = {HISTORY: borough_codes, DRONE: drone_borough_codes}
    uses_codes = True
    shape = staticmethod(answers.borough_summary)


class RegistrationState(TalliedQuestion):
    """The share of out-of-state plates and the states tickets come from (history only: drones read no plates)."""

    name = "registration_state"
    title = "Registration states"
    history_columns = ("registration_state",)
    keys = {HISTORY: states}
    shape = staticmethod(answers.state_summary)


class MonthTrend(TalliedQuestion):
    """Tickets per month and per season over the history."""

    name = "month_trend"
    title = "Months and seasons"
    history_columns = ("issue_date", "improbable_date")
    keys = {HISTORY: probable_issue_dates}

    @staticmethod
    def shape(per_day: dict[str, int]) -> dict[str, Any]:
        return answers.month_summary(answers.per_month(per_day))


class DroneFleet(TalliedQuestion):
    """Violations and human-review alerts per drone per day, the share that needed a human, and the alerts
    whose photo is missing from the lake's store."""

    name = "drone_fleet"
    title = "Drone fleet"
    drone_columns = ("drone_id", "resolves_message_id", "image_uri")
    keys = {DRONE: fleet_keys}
    shape = staticmethod(answers.fleet_summary)


class RepeatOffenders(Question):
    """The plates with the most violations, and what their tickets' fines add up to.

    Each vehicle row is sent to a bucket by a stable hash of its plate, so every row of
    one plate meets in one bucket; each bucket tallies its plates and keeps its top in
    the ranking's own order, and the top of those is the answer.
    """

    name = "repeat_offenders"
    title = "Repeat offenders"
    history_columns = ("plate_id", "registration_state", "fine_amount")

    def __init__(self, buckets: int = DEFAULT_BUCKETS, limit: int = answers.TOP_PLATES):
        super().__init__(buckets)
        self._limit = limit

    def combined(self, lake: dict[str, beam.PCollection], dataset: str) -> beam.PCollection:
        return (
            lake[dataset]
            | "PlateRows" >> beam.FlatMap(plate_rows_by_bucket, self.buckets)
            | "GroupPlateBuckets" >> beam.GroupByKey()
            | "TopOfBucket" >> beam.Map(top_of_bucket, self._limit)
            | "TopOfTops" >> beam.CombineGlobally(TopPlates(self._limit)).without_defaults()
        )

    @staticmethod
    def shape_part(dataset: str, ranked: list[answers.PlateTally], lookups: Lookups) -> list[dict[str, Any]]:
        return answers.top_plates(ranked)


class TopPlates(beam.CombineFn):
    """Lists of plate tallies (each plate in one list only) → the ``limit`` best, in the ranking's order."""

    def __init__(self, limit: int = answers.TOP_PLATES):
        super().__init__()
        self._limit = limit

    def create_accumulator(self) -> list[answers.PlateTally]:
        return []

    def add_input(self, best: list[answers.PlateTally], tops: list[answers.PlateTally]) -> list[answers.PlateTally]:
        return answers.rank_plates(chain(best, tops), self._limit)

    def merge_accumulators(self, bests: Iterable[list[answers.PlateTally]]) -> list[answers.PlateTally]:
        return answers.rank_plates(chain(*bests), self._limit)

    def extract_output(self, best: list[answers.PlateTally]) -> list[answers.PlateTally]:
        return best


PLATE, STATE, COUNT, FINES = "plate_id", "registration_state", "count_all", "fine_amount_sum"


def vehicle_rows(table: pa.Table) -> pa.Table:
    """(plate, state, fine) of the rows with a vehicle's plate; an unknown state is ""."""
    plates = table.column(PLATE)
    vehicle = pc.and_(
        pc.and_(pc.is_valid(plates), pc.not_equal(plates, "")),
        pc.invert(pc.is_in(plates, value_set=pa.array(sorted(answers.PLACEHOLDER_PLATES)))),
    )
    rows = table.filter(pc.fill_null(vehicle, False))
    return pa.table({PLATE: rows.column(PLATE), STATE: pc.fill_null(rows.column(STATE), ""), "fine_amount": rows.column("fine_amount")})


def plate_rows_by_bucket(table: pa.Table, buckets: int) -> Iterator[tuple[int, bytes]]:
    """A table's vehicle rows, each sent to a bucket by a stable hash of its plate.

    Rows, not a tally per table: most plates occur once in a table (in the bench lake a
    tally keeps 78 % of the rows), so tallying before the shuffle costs a ``group_by``
    of every row and saves little.
    """
    rows = vehicle_rows(table)
    if rows.num_rows:
        yield from arrow_ops.split_by_bucket(rows, arrow_ops.stable_buckets(rows.column(PLATE), buckets), buckets)


def top_of_bucket(bucket: tuple[int, list[bytes]], limit: int) -> list[answers.PlateTally]:
    """A bucket's plates tallied (every row of each is here); its ``limit`` best in the ranking's order."""
    _, parts = bucket
    tallies = arrow_ops.concat_ipc(parts).group_by([PLATE, STATE], use_threads=False).aggregate([([], "count_all"), ("fine_amount", "sum")])
    best = contenders(tallies, limit).sort_by([(COUNT, "descending"), (FINES, "descending"), (PLATE, "ascending"), (STATE, "ascending")])
    return [((row[PLATE], row[STATE] or None), (row[COUNT], row[FINES] or 0.0)) for row in best.slice(0, limit).to_pylist()]


def contenders(tallies: pa.Table, limit: int) -> pa.Table:
    """The tallies that can rank among the ``limit`` best: at least the ``limit``-th highest count, ties kept.

    A bucket holds hundreds of thousands of plates, nearly all seen once: sorting only
    these few by the full ranking is what makes the top cheap.
    """
    if tallies.num_rows <= limit:
        return tallies
    counts = tallies.column(COUNT).to_numpy()
    threshold = np.partition(counts, counts.size - limit)[counts.size - limit]
    return tallies.filter(pc.greater_equal(tallies.column(COUNT), threshold))


def risk_points(table: pa.Table) -> Iterator[tuple[str, tuple[int, float]]]:
    """A risk table's scores as ``(drone id, (ms, risk))``."""
    times = pc.cast(table.column("timestamp"), pa.int64()).to_pylist()
    yield from zip(table.column("drone_id").to_pylist(), zip(times, table.column("failure_risk").to_pylist()))


def fault_points(table: pa.Table) -> Iterator[tuple[str, int]]:
    """A fault table's faults as ``(drone id, ms)``."""
    yield from zip(table.column("drone_id").to_pylist(), pc.cast(table.column("timestamp"), pa.int64()).to_pylist())


def judged_drone(keyed: tuple[str, dict[str, Iterable[Any]]]) -> dict[str, Any]:
    drone_id, grouped = keyed
    return answers.drone_health(drone_id, grouped["scores"], grouped["faults"], DEFAULT_RISK_THRESHOLD, DEFAULT_HORIZON_MINUTES * MINUTE_MS)


class FleetHealth(Question):
    """The stream's failure risks: their distribution, the drones at risk now, and failures foretold vs observed.

    Each drone's scores and faults meet in one ``CoGroupByKey``; a pure function judges them
    (:func:`answers.drone_health`) at the stream's default threshold and the model's default horizon.
    """

    name = "fleet_health"
    title = "Fleet health"
    risk_columns = ()

    def combined(self, lake: dict[str, beam.PCollection], dataset: str) -> beam.PCollection:
        scores = lake[dataset] | "Scores" >> beam.FlatMap(risk_points)
        faults = lake[FAULTS] | "Faults" >> beam.FlatMap(fault_points)
        return (
            {"scores": scores, "faults": faults}
            | "ByDrone" >> beam.CoGroupByKey()
            | "JudgeDrone" >> beam.Map(judged_drone)
            | "AllDrones" >> beam.combiners.ToList()
        )

    @staticmethod
    def shape_part(dataset: str, per_drone: list[dict[str, Any]], lookups: Lookups) -> dict[str, Any]:
        return answers.fleet_health(per_drone or [], DEFAULT_RISK_THRESHOLD, DEFAULT_HORIZON_MINUTES)


QUESTIONS: dict[str, type[Question]] = {
    question.name: question
    for question in (WeekdayWeekend, HourOfDay, TopCodes, Borough, RegistrationState, MonthTrend, DroneFleet, RepeatOffenders, FleetHealth)
}
