"""Answers from combined counts: pure functions, the last step of every question.

The pipeline reduces the lake to small tallies (per day, per hour, per code…); these
functions turn a question's tallies into its answer as plain JSON values, so the rules
(what a weekend is, how ties break, which plates count) are written once, in one place,
and tested without a pipeline.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timezone
from typing import Any, Iterable, Mapping

from transforms.violation_codes import ViolationCode, is_manhattan

UNKNOWN_BOROUGH = "Unknown"
HOME_STATE = "NY"
UNKNOWN_STATE = "99"  # the city's code for "state not recorded"
PLACEHOLDER_PLATES = frozenset({"BLANKPLATE"})  # written when a car has no plate: not a vehicle
SEASONS = {
    12: "Winter",
    1: "Winter",
    2: "Winter",
    3: "Spring",
    4: "Spring",
    5: "Spring",
    6: "Summer",
    7: "Summer",
    8: "Summer",
    9: "Autumn",
    10: "Autumn",
    11: "Autumn",
}
TOP_CODES = 10
TOP_CODES_PER_BOROUGH = 3
TOP_STATES = 10
TOP_PLATES = 10


def share(part: int, whole: int) -> float | None:
    """``part / whole`` to four places; None when there is no whole to share."""
    return round(part / whole, 4) if whole else None


def per_day(total: int, days: int) -> float | None:
    return round(total / days, 2) if days else None


def is_weekend(day: str) -> bool:
    return date.fromisoformat(day).weekday() >= 5


def weekday_weekend(day_counts: Mapping[str, int], days_present: Iterable[str]) -> dict[str, Any]:
    """Violations per weekday and per weekend day, each over the days of its kind in the data.

    Days are ISO dates. A day present with no violation (drones flew, found nothing)
    still counts as a day.
    """
    days = set(days_present) | set(day_counts)
    weekend_days = sum(1 for day in days if is_weekend(day))
    weekday_days = len(days) - weekend_days
    weekend = sum(count for day, count in day_counts.items() if is_weekend(day))
    weekday = sum(day_counts.values()) - weekend
    return {
        "weekday_per_day": per_day(weekday, weekday_days),
        "weekend_per_day": per_day(weekend, weekend_days),
        "weekday_days": weekday_days,
        "weekend_days": weekend_days,
        "weekday_violations": weekday,
        "weekend_violations": weekend,
    }


def hour_histogram(hour_counts: Mapping[int, int]) -> dict[str, int]:
    """Counts for every hour "0" … "23", zero where nothing happened."""
    return {str(hour): int(hour_counts.get(hour, 0)) for hour in range(24)}


def peak_hours(borough_hour_counts: Mapping[tuple[str | None, int], int]) -> dict[str, dict[str, int]]:
    """Per borough, the hour with the most violations (the earlier hour on a tie)."""
    best: dict[str, tuple[int, int]] = {}
    for (borough, hour), count in borough_hour_counts.items():
        name = borough or UNKNOWN_BOROUGH
        if name not in best or (count, -hour) > (best[name][1], -best[name][0]):
            best[name] = (hour, count)
    return {name: {"hour": hour, "count": count} for name, (hour, count) in sorted(best.items())}


def code_entry(code: int, count: int, codes: Mapping[int, ViolationCode]) -> dict[str, Any]:
    known = codes.get(code)
    return {"code": code, "description": known.description if known else None, "count": count}


def top_codes(
    code_counts: Mapping[tuple[int, bool], int], codes: Mapping[int, ViolationCode], limit: int = TOP_CODES
) -> list[dict[str, Any]]:
    """The most frequent codes with their fine revenue from the DOF table.

    ``code_counts`` is keyed by (code, issued in Manhattan), each ticket charged
    :meth:`ViolationCode.fine`, as the history pipeline's ``fine_amount`` is. A code the
    table lacks has no description and no revenue.
    """
    manhattan: dict[int, int] = defaultdict(int)
    elsewhere: dict[int, int] = defaultdict(int)
    for (code, in_manhattan), count in code_counts.items():
        (manhattan if in_manhattan else elsewhere)[code] += count
    totals = {code: manhattan[code] + elsewhere[code] for code in set(manhattan) | set(elsewhere)}
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:limit]
    entries = []
    for code, count in ranked:
        known = codes.get(code)
        revenue = (
            round(manhattan[code] * known.fine(in_manhattan=True) + elsewhere[code] * known.fine(in_manhattan=False), 2) if known else None
        )
        entries.append({**code_entry(code, count, codes), "manhattan_count": manhattan[code], "fine_revenue": revenue})
    return entries


def codes_by_manhattan(borough_code_counts: Mapping[tuple[str | None, int | None], int]) -> dict[tuple[int, bool], int]:
    """(borough, code) counts → (code, issued in Manhattan) counts, as :func:`top_codes` takes them.

    Rows without a code are left out; an unknown borough is not Manhattan.
    """
    counts: dict[tuple[int, bool], int] = defaultdict(int)
    for (borough, code), count in borough_code_counts.items():
        if code is not None:
            counts[(code, is_manhattan(borough))] += count
    return dict(counts)


def borough_summary(
    borough_code_counts: Mapping[tuple[str | None, int], int], codes: Mapping[int, ViolationCode]
) -> dict[str, dict[str, Any]]:
    """Per borough (most violations first): its count, share and its three most frequent codes.

    A row without a code counts for its borough but not among the codes.
    """
    per_borough: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for (borough, code), count in borough_code_counts.items():
        per_borough[borough or UNKNOWN_BOROUGH][code] += count
    total = sum(borough_code_counts.values())
    totals = {name: sum(counts.values()) for name, counts in per_borough.items()}
    summary = {}
    for name in sorted(totals, key=lambda name: (-totals[name], name)):
        coded = [(code, count) for code, count in per_borough[name].items() if code is not None]
        ranked = sorted(coded, key=lambda item: (-item[1], item[0]))[:TOP_CODES_PER_BOROUGH]
        summary[name] = {
            "count": totals[name],
            "share": share(totals[name], total),
            "top_codes": [code_entry(code, count, codes) for code, count in ranked],
        }
    return summary


def state_summary(state_counts: Mapping[str | None, int], limit: int = TOP_STATES) -> dict[str, Any]:
    """The share of plates from outside New York, among plates whose state is known, and the top states."""
    known = {state: count for state, count in state_counts.items() if state not in (None, "", UNKNOWN_STATE)}
    with_state = sum(known.values())
    out_of_state = with_state - known.get(HOME_STATE, 0)
    ranked = sorted(known.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return {
        "with_state": with_state,
        "unknown_state": sum(state_counts.values()) - with_state,
        "out_of_state": out_of_state,
        "out_of_state_share": share(out_of_state, with_state),
        "top_states": [{"state": state, "count": count, "share": share(count, with_state)} for state, count in ranked],
    }


def per_month(day_counts: Mapping[str, int]) -> dict[str, int]:
    """Counts per ISO day → counts per month (``YYYY-MM``)."""
    months: dict[str, int] = defaultdict(int)
    for day, count in day_counts.items():
        months[day[:7]] += count
    return dict(months)


def month_summary(month_counts: Mapping[str, int]) -> dict[str, Any]:
    """Counts per month (``YYYY-MM``, in order), per season, and the busiest of each."""
    months = {month: month_counts[month] for month in sorted(month_counts)}
    seasons = {name: 0 for name in ("Winter", "Spring", "Summer", "Autumn")}
    for month, count in months.items():
        seasons[SEASONS[int(month[5:7])]] += count
    return {
        "months": months,
        "seasons": seasons,
        "busiest_month": max(months, key=lambda month: (months[month], month)) if months else None,
        "busiest_season": max(seasons, key=lambda name: seasons[name]) if months else None,
    }


def fleet_summary(counts: Mapping[tuple[str, str, bool, bool, bool], int]) -> dict[str, Any]:
    """Violations and human-review alerts per drone per New York day, the share that needed a human, and how
    many alerts have no photo in the store (an operator has nothing to look at).

    ``counts`` is keyed by (drone, ISO day, is an alert, is an operator's correction, is an
    alert whose photo is missing). A correction carries the code a human chose and counts
    as that violation; its alert counts as an alert. The share is alerts over sightings
    (violations the drone classified itself plus alerts), so it does not wait for operators
    to answer.
    """
    rows: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: {"violations": 0, "alerts": 0})
    violations = alerts = corrections = photos_missing = 0
    for (drone, day, is_alert, is_correction, photo_missing), count in counts.items():
        photos_missing += count if photo_missing else 0
        if is_alert:
            alerts += count
            rows[(drone, day)]["alerts"] += count
        else:
            violations += count
            corrections += count if is_correction else 0
            rows[(drone, day)]["violations"] += count
    per_drone_day = [{"drone_id": drone, "day": day, **tally} for (drone, day), tally in sorted(rows.items())]
    return {
        "violations": violations,
        "alerts": alerts,
        "corrections": corrections,
        "human_share": share(alerts, violations - corrections + alerts),
        "alerts_photo_missing": photos_missing,
        "drones": len({drone for drone, _ in rows}),
        "days": len({day for _, day in rows}),
        "per_drone_day": per_drone_day,
    }


PlateTally = tuple[tuple[str, "str | None"], tuple[int, float]]  # ((plate, state), (violations, fines))


def rank_plates(tallies: Iterable[PlateTally], limit: int = TOP_PLATES) -> list[PlateTally]:
    """The ``limit`` plates with the most violations, then the larger debt, then by plate and state.

    One total order, so the top of each part's top lists is the top of the whole.
    """
    return sorted(tallies, key=lambda item: (-item[1][0], -item[1][1], item[0][0], item[0][1] or ""))[:limit]


def top_plates(ranked: Iterable[PlateTally]) -> list[dict[str, Any]]:
    """Ranked plate tallies → the answer's rows."""
    return [
        {"plate_id": plate, "registration_state": state, "violations": count, "fines_owed": round(fines, 2)}
        for (plate, state), (count, fines) in ranked
    ]


# Fleet health: the stream's maintenance scores against the faults the drones reported. ---------------------

RISK_BINS = 10


def drone_health(
    drone_id: str, scores: Iterable[tuple[int, float]], faults: Iterable[int], threshold: float, horizon_ms: int
) -> dict[str, Any]:
    """One drone's scores ``(ms, risk)`` and fault times, judged: its risk histogram, its latest score, its
    warnings (episodes: a first score at or past ``threshold``, until the risk falls below half of it) and
    which of its faults a score at or past the threshold foretold within ``horizon_ms`` before."""
    ordered = sorted(scores)
    fault_times = sorted(set(faults))
    histogram = [0] * RISK_BINS
    warnings, alerted = [], False
    for at_ms, risk in ordered:
        histogram[min(int(risk * RISK_BINS), RISK_BINS - 1)] += 1
        if risk >= threshold and not alerted:
            warnings.append(at_ms)
        alerted = risk >= threshold or (alerted and risk >= threshold / 2)
    foretold = [any(fault - horizon_ms <= at <= fault and risk >= threshold for at, risk in ordered) for fault in fault_times]
    followed = [any(at <= fault <= at + horizon_ms for fault in fault_times) for at in warnings]
    latest = ordered[-1] if ordered else None
    down = latest is not None and any(fault >= latest[0] for fault in fault_times)
    return {
        "drone_id": drone_id,
        "histogram": histogram,
        "latest": None if latest is None or down else {"at_ms": latest[0], "failure_risk": latest[1]},
        "faults": len(fault_times),
        "foretold": sum(foretold),
        "warnings": len(warnings),
        "warnings_followed": sum(followed),
    }


def fleet_health(per_drone: Iterable[dict[str, Any]], threshold: float, horizon_minutes: int) -> dict[str, Any]:
    """The fleet's risk distribution, the drones at risk now (latest score at or past ``threshold``, not down since)
    and failures foretold against those observed, from :func:`drone_health` of every drone."""
    drones = sorted(per_drone, key=lambda drone: drone["drone_id"])
    histogram = [sum(drone["histogram"][index] for drone in drones) for index in range(RISK_BINS)]
    at_risk = sorted(
        (
            {"drone_id": d["drone_id"], "failure_risk": d["latest"]["failure_risk"], "scored_at": iso_ms(d["latest"]["at_ms"])}
            for d in drones
            if d["latest"] is not None and d["latest"]["failure_risk"] >= threshold
        ),
        key=lambda drone: (-drone["failure_risk"], drone["drone_id"]),
    )
    observed, foretold = sum(d["faults"] for d in drones), sum(d["foretold"] for d in drones)
    raised, followed = sum(d["warnings"] for d in drones), sum(d["warnings_followed"] for d in drones)
    return {
        "threshold": threshold,
        "horizon_minutes": horizon_minutes,
        "drones_scored": sum(1 for d in drones if sum(d["histogram"])),
        "scores": sum(histogram),
        "risk_histogram": [
            {"from": round(index / RISK_BINS, 1), "to": round((index + 1) / RISK_BINS, 1), "scores": n} for index, n in enumerate(histogram)
        ],
        "at_risk_now": at_risk,
        "failures": {"observed": observed, "foretold": foretold, "missed": observed - foretold, "recall": share(foretold, observed)},
        "warnings": {
            "raised": raised,
            "followed_by_failure": followed,
            "false_alarms": raised - followed,
            "precision": share(followed, raised),
        },
    }


def iso_ms(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
