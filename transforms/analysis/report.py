"""The analysis report people read: ``report.md``, one PNG chart per question and ``index.html``.

The pipeline writes ``report.json``; everything here is rendered from that file alone, so a
report can be re-rendered without re-running the analysis. Each question becomes a
:class:`Section` — a sentence that answers it, tables, and a chart — and the three
outputs (Markdown, HTML, terminal summary) are views of the same sections.
"""

from __future__ import annotations

import html
import io
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from apache_beam.io.filesystems import FileSystems

from transforms import lake
from transforms.contract import UNSAFE_TEXT

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
INDEX_HTML = "index.html"
DATASET_LABELS = {"history": "NYPD history", "drone": "Drones", "drone_risk": "Maintenance scores"}
# What the analysis counts of each dataset's rows read: replays dropped, and for drones only sightings.
COUNTED_ROWS = {"history": "distinct summonses", "drone": "distinct rows that carry a violation", "drone_risk": "distinct scores"}
DATASET_COLOURS = {"history": "#1f5f99", "drone": "#d9822b"}
MAX_TABLE_ROWS = 25

Draw = Callable[[Any], None]  # fills a matplotlib Figure


@dataclass(frozen=True)
class Table:
    caption: str
    headers: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    more: int = 0  # rows left out (they are all in report.json)


@dataclass(frozen=True)
class Section:
    """One question as the reader sees it."""

    name: str
    title: str
    sentences: list[str]
    tables: list[Table] = field(default_factory=list)
    draw: Draw | None = None

    @property
    def chart_file(self) -> str:
        return f"{self.name}.png"


def read_report(folder: str) -> dict[str, Any]:
    with FileSystems.open(lake.join(folder, REPORT_JSON)) as handle:
        return json.loads(handle.read())


def render_report(report: dict[str, Any], folder: str) -> list[str]:
    """Writes the Markdown, the charts and the HTML page next to ``report.json``; returns the files' names."""
    built = sections(report)
    written = [REPORT_JSON]
    for section in built:
        if section.draw is not None:
            write_bytes(lake.join(folder, section.chart_file), chart_png(section))
            written.append(section.chart_file)
    write_bytes(lake.join(folder, REPORT_MD), markdown(report, built).encode())
    write_bytes(lake.join(folder, INDEX_HTML), html_page(report, built).encode())
    return [REPORT_MD, *written, INDEX_HTML]


def summary_lines(report: dict[str, Any]) -> list[str]:
    """What the terminal shows: one line per answered question."""
    return [f"{section.title}: {' '.join(section.sentences)}" for section in sections(report)]


def sections(report: dict[str, Any]) -> list[Section]:
    return [SECTION_BUILDERS[name](report[name]) for name in SECTION_BUILDERS if name in report]


def write_bytes(path: str, payload: bytes) -> None:
    if "://" not in path:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with FileSystems.create(path) as handle:
        handle.write(payload)


def fresh_sibling(folder: str) -> str:
    """A new, unused folder beside ``folder`` (``parent/.name.<random>``) for one run's report to be written into."""
    parent, _, name = folder.rstrip("/").rpartition("/")
    return lake.join(parent, f".{name}.{uuid.uuid4().hex[:12]}") if parent else f".{name}.{uuid.uuid4().hex[:12]}"


def swap_in(fresh: str, folder: str) -> None:
    """Make ``fresh`` the report at ``folder``: what ``folder`` held before goes whole, so two runs never mix.

    A local folder is renamed into place (the old one renamed away first, then deleted). An
    object store has no folders to rename: the old report's files are deleted, then the
    new ones renamed in.
    """
    if "://" not in folder:
        retired = f"{fresh}.old"
        if os.path.lexists(folder):
            os.rename(folder, retired)
        os.rename(fresh, folder)
        shutil.rmtree(retired, ignore_errors=True)
        return
    discard(folder)
    written = files_in(fresh)
    FileSystems.rename(written, [lake.join(folder, path.rsplit("/", 1)[-1]) for path in written])


def discard(folder: str) -> None:
    """Delete a report folder and what it holds; nothing when it is not there."""
    if "://" not in folder:
        shutil.rmtree(folder, ignore_errors=True)
    elif held := files_in(folder):
        FileSystems.delete(held)


def files_in(folder: str) -> list[str]:
    return [file.path for file in FileSystems.match([lake.join(folder, "*")])[0].metadata_list]


# Formatting ------------------------------------------------------------------------------


def count(value: int | float | None) -> str:
    return "–" if value is None else f"{value:,}"


def money(value: float | None) -> str:
    return "–" if value is None else f"${value:,.2f}"


def percent(value: float | None, places: int = 1) -> str:
    return "–" if value is None else f"{value:.{places}%}"


def plural(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def label(dataset: str) -> str:
    return DATASET_LABELS.get(dataset, dataset)


def datasets_in(answer: dict[str, Any]) -> list[str]:
    return [name for name in DATASET_LABELS if name in answer]


# The questions ---------------------------------------------------------------------------


def weekday_weekend_section(answer: dict[str, Any]) -> Section:
    present = datasets_in(answer)
    sentences = [f"{label(name)}: {weekday_weekend_sentence(answer[name])}" for name in present]
    rows = [
        (
            label(name),
            count(part["weekday_per_day"]),
            count(part["weekend_per_day"]),
            part["weekday_days"],
            part["weekend_days"],
            count(part["weekday_violations"]),
            count(part["weekend_violations"]),
        )
        for name in present
        for part in [answer[name]]
    ]
    table = Table(
        "Violations per day of each kind",
        ("data", "per weekday", "per weekend day", "weekdays", "weekend days", "on weekdays", "at weekends"),
        rows,
    )

    def draw(figure: Any) -> None:
        axes = figure.subplots(1, len(present), squeeze=False)[0]
        for ax, name in zip(axes, present):
            values = [answer[name]["weekday_per_day"] or 0, answer[name]["weekend_per_day"] or 0]
            bars = ax.bar(["weekday", "weekend day"], values, color=[DATASET_COLOURS[name], "#9aa5b1"])
            ax.bar_label(bars, fmt="%.1f")
            ax.set_title(label(name))
            ax.set_ylabel("violations per day")

    return Section("weekday_weekend", "Weekdays vs weekends", sentences, [table], draw)


def weekday_weekend_sentence(part: dict[str, Any]) -> str:
    weekday, weekend = part["weekday_per_day"], part["weekend_per_day"]
    averages = f"{count(weekday)} violations per weekday against {count(weekend)} per weekend day"
    if not weekday or not weekend:
        return f"{averages} — not enough days of both kinds to compare."
    more, ratio = ("weekdays", weekday / weekend) if weekday >= weekend else ("weekends", weekend / weekday)
    return f"{averages}: {ratio:.2f}× as many on {more}."


def hour_of_day_section(answer: dict[str, Any]) -> Section:
    present = datasets_in(answer)
    sentences = [f"{label(name)}: {busiest_hour_sentence(answer[name])}" for name in present]
    hours = Table(
        "Violations per hour (New York time)",
        ("hour", *map(label, present)),
        [(f"{hour:02d}:00", *(count(answer[name][str(hour)]) for name in present)) for hour in range(24)],
    )
    peaks = answer.get("peak_hour_by_borough", {})
    boroughs = sorted({borough for name in present for borough in peaks.get(name, {})})
    peak_table = Table(
        "Peak hour per borough",
        ("borough", *map(label, present)),
        [(borough, *(peak_text(peaks.get(name, {}).get(borough)) for name in present)) for borough in boroughs],
    )

    def draw(figure: Any) -> None:
        ax = figure.subplots()
        for name in present:
            total = sum(answer[name].values()) or 1
            ax.plot(
                range(24),
                [100 * answer[name][str(hour)] / total for hour in range(24)],
                marker="o",
                color=DATASET_COLOURS[name],
                label=label(name),
            )
        ax.set_xticks(range(0, 24, 2))
        ax.set_xlabel("hour of day (New York time)")
        ax.set_ylabel("share of violations (%)")
        ax.legend()

    return Section("hour_of_day", "Hour of day", sentences, [hours, peak_table], draw)


def busiest_hour_sentence(hours: dict[str, int]) -> str:
    total = sum(hours.values())
    if not total:
        return "no violation with a time."
    hour = max(range(24), key=lambda h: (hours[str(h)], -h))
    busiest = hours[str(hour)]
    return f"the busiest hour is {hour:02d}:00–{(hour + 1) % 24:02d}:00 with {busiest:,} violations ({percent(busiest / total)})."


def peak_text(peak: dict[str, int] | None) -> str:
    return "–" if peak is None else f"{peak['hour']:02d}:00 ({peak['count']:,})"


def top_codes_section(answer: dict[str, Any]) -> Section:
    present = datasets_in(answer)
    sentences = [f"{label(name)}: {top_code_sentence(answer[name])}" for name in present]
    tables = [
        Table(
            f"Top violation codes — {label(name)}",
            ("rank", "code", "description", "violations", "in Manhattan", "fine revenue"),
            [
                (
                    rank,
                    entry["code"],
                    entry["description"] or "(not in the DOF table)",
                    count(entry["count"]),
                    count(entry["manhattan_count"]),
                    money(entry["fine_revenue"]),
                )
                for rank, entry in enumerate(answer[name], start=1)
            ],
        )
        for name in present
    ]
    return Section(
        "top_codes",
        "Top violation codes",
        sentences,
        tables,
        horizontal_bars(answer, present, lambda entry: f"{entry['code']} {entry['description'] or ''}".strip(), "count", "violations"),
    )


def top_code_sentence(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "no violation codes."
    first = entries[0]
    revenue = sum(entry["fine_revenue"] or 0 for entry in entries)
    return (
        f"code {first['code']} ({first['description'] or 'not in the DOF table'}) leads with {first['count']:,} "
        f"violations worth {money(first['fine_revenue'])}; the top {len(entries)} codes represent "
        f"{money(revenue)} in fines."
    )


def horizontal_bars(
    answer: dict[str, Any], present: list[str], name_of: Callable[[dict[str, Any]], str], value_key: str, axis_label: str
) -> Draw:
    """A chart of one ranked list per dataset, the first entry on top."""

    def draw(figure: Any) -> None:
        axes = figure.subplots(1, len(present), squeeze=False)[0]
        for ax, name in zip(axes, present):
            entries = list(reversed(answer[name]))
            ax.barh([name_of(entry)[:32] for entry in entries], [entry[value_key] for entry in entries], color=DATASET_COLOURS[name])
            ax.set_title(label(name))
            ax.set_xlabel(axis_label)
            ax.tick_params(axis="y", labelsize=8)

    return draw


def borough_section(answer: dict[str, Any]) -> Section:
    present = datasets_in(answer)
    sentences = [f"{label(name)}: {borough_sentence(answer[name])}" for name in present]
    tables = [
        Table(
            f"Boroughs — {label(name)}",
            ("borough", "violations", "share", "top codes"),
            [
                (
                    borough,
                    count(part["count"]),
                    percent(part["share"]),
                    ", ".join(f"{code['code']} ({code['count']:,})" for code in part["top_codes"]),
                )
                for borough, part in answer[name].items()
            ],
        )
        for name in present
    ]

    def draw(figure: Any) -> None:
        ax = figure.subplots()
        boroughs = sorted({borough for name in present for borough in answer[name]})
        width = 0.8 / max(len(present), 1)
        for index, name in enumerate(present):
            shares = [100 * (answer[name].get(borough, {}).get("share") or 0) for borough in boroughs]
            ax.bar(
                [position + index * width for position in range(len(boroughs))],
                shares,
                width,
                color=DATASET_COLOURS[name],
                label=label(name),
            )
        ax.set_xticks([position + width * (len(present) - 1) / 2 for position in range(len(boroughs))], boroughs)
        ax.set_ylabel("share of violations (%)")
        ax.set_xlabel("borough")
        ax.legend()

    return Section("borough", "Boroughs", sentences, tables, draw)


def borough_sentence(boroughs: dict[str, dict[str, Any]]) -> str:
    if not boroughs:
        return "no violations."
    name, part = next(iter(boroughs.items()))
    top = part["top_codes"][0]["code"] if part["top_codes"] else None
    return f"{name} has the most violations ({percent(part['share'])})" + (f", most often code {top}." if top else ".")


def registration_state_section(answer: dict[str, Any]) -> Section:
    part = answer["history"]
    states = part["top_states"]
    leaders = ", ".join(entry["state"] for entry in states[:4])
    sentence = (
        f"{percent(part['out_of_state_share'])} of tickets with a known state went to out-of-state plates "
        f"({count(part['out_of_state'])} of {count(part['with_state'])}); the top states are {leaders or 'none'}."
    )
    table = Table(
        "Registration states (history)",
        ("rank", "state", "violations", "share"),
        [(rank, entry["state"], count(entry["count"]), percent(entry["share"])) for rank, entry in enumerate(states, start=1)],
    )
    draw = horizontal_bars(
        {"history": [{**entry, "percent": 100 * (entry["share"] or 0)} for entry in states]},
        ["history"],
        lambda entry: entry["state"],
        "percent",
        "share of tickets with a known state (%)",
    )
    return Section("registration_state", "Registration states", [sentence], [table], draw)


def month_trend_section(answer: dict[str, Any]) -> Section:
    part = answer["history"]
    months, seasons = part["months"], part["seasons"]
    if part["busiest_month"]:
        sentence = (
            f"The busiest month is {part['busiest_month']} with {months[part['busiest_month']]:,} violations; "
            f"{part['busiest_season']} is the busiest season ({seasons[part['busiest_season']]:,})."
        )
    else:
        sentence = "No dated violations."
    month_table = Table("Violations per month (history)", ("month", "violations"), [(month, count(n)) for month, n in months.items()])
    season_table = Table("Violations per season (history)", ("season", "violations"), [(season, count(n)) for season, n in seasons.items()])

    def draw(figure: Any) -> None:
        ax = figure.subplots()
        ax.bar(list(months), list(months.values()), color=DATASET_COLOURS["history"])
        ax.set_xlabel("month")
        ax.set_ylabel("violations")
        ax.tick_params(axis="x", labelrotation=60, labelsize=8)

    return Section("month_trend", "Months and seasons", [sentence], [month_table, season_table], draw)


def drone_fleet_section(answer: dict[str, Any]) -> Section:
    part = answer["drone"]
    sentence = (
        f"{plural(part['drones'], 'drone')} over {plural(part['days'], 'day')} found "
        f"{plural(part['violations'], 'violation')} and raised {plural(part['alerts'], 'human-review alert')}: "
        f"{percent(part['human_share'], 2)} of sightings needed a human "
        f"({part['corrections']:,} corrected by operators so far); "
        f"{plural(part['alerts_photo_missing'], 'alert')} without a photo in the store."
    )
    rows = part["per_drone_day"]
    table = Table(
        "Per drone per day (New York days)",
        ("drone", "day", "violations", "alerts"),
        [(row["drone_id"], row["day"], count(row["violations"]), count(row["alerts"])) for row in rows[:MAX_TABLE_ROWS]],
        max(len(rows) - MAX_TABLE_ROWS, 0),
    )

    def draw(figure: Any) -> None:
        per_day: dict[str, list[int]] = {}
        for row in rows:
            tally = per_day.setdefault(row["day"], [0, 0])
            tally[0] += row["violations"]
            tally[1] += row["alerts"]
        days = sorted(per_day)
        top, bottom = figure.subplots(2, 1, sharex=True)
        top.bar(days, [per_day[day][0] for day in days], color=DATASET_COLOURS["drone"])
        top.set_ylabel("violations")
        bottom.bar(days, [per_day[day][1] for day in days], color="#c23b22")
        bottom.set_ylabel("human-review alerts")
        bottom.set_xlabel("day (New York)")
        bottom.tick_params(axis="x", labelrotation=45, labelsize=8)

    return Section("drone_fleet", "Drone fleet", [sentence], [table], draw)


def repeat_offenders_section(answer: dict[str, Any]) -> Section:
    plates = answer["history"]
    if plates:
        first = plates[0]
        sentence = (
            f"Plate {first['plate_id']} ({first['registration_state'] or 'state unknown'}) leads with "
            f"{first['violations']:,} violations, owing {money(first['fines_owed'])}."
        )
    else:
        sentence = "No plates."
    table = Table(
        "Repeat offenders (history)",
        ("rank", "plate", "state", "violations", "fines owed"),
        [
            (rank, plate["plate_id"], plate["registration_state"] or "–", count(plate["violations"]), money(plate["fines_owed"]))
            for rank, plate in enumerate(plates, start=1)
        ],
    )
    draw = horizontal_bars(
        answer, ["history"], lambda plate: f"{plate['plate_id']} {plate['registration_state'] or ''}", "violations", "violations"
    )
    return Section("repeat_offenders", "Repeat offenders", [sentence], [table], draw)


def fleet_health_section(answer: dict[str, Any]) -> Section:
    part = answer["drone_risk"]
    failures, warnings = part["failures"], part["warnings"]
    sentence = (
        f"{plural(part['scores'], 'score')} of {plural(part['drones_scored'], 'drone')}; "
        f"{plural(len(part['at_risk_now']), 'drone')} at risk now (latest risk at least {part['threshold']}). "
        f"Of {plural(failures['observed'], 'failure')} observed, {failures['foretold']:,} were foretold within "
        f"{part['horizon_minutes']} minutes ({percent(failures['recall'])}); of "
        f"{plural(warnings['raised'], 'warning')}, {warnings['followed_by_failure']:,} were followed by a failure "
        f"({percent(warnings['precision'])})."
    )
    at_risk = part["at_risk_now"]
    table = Table(
        "Drones at risk now",
        ("drone", "failure risk", "scored at"),
        [(row["drone_id"], f"{row['failure_risk']:.2f}", row["scored_at"]) for row in at_risk[:MAX_TABLE_ROWS]],
        max(len(at_risk) - MAX_TABLE_ROWS, 0),
    )

    def draw(figure: Any) -> None:
        axes = figure.subplots()
        bins = part["risk_histogram"]
        axes.bar([f"{row['from']:.1f}" for row in bins], [row["scores"] for row in bins], color="#c23b22")
        axes.set_xlabel("failure risk (bin start)")
        axes.set_ylabel("scores")

    return Section("fleet_health", "Fleet health", [sentence], [table], draw)


SECTION_BUILDERS: dict[str, Callable[[dict[str, Any]], Section]] = {
    "weekday_weekend": weekday_weekend_section,
    "hour_of_day": hour_of_day_section,
    "top_codes": top_codes_section,
    "borough": borough_section,
    "registration_state": registration_state_section,
    "month_trend": month_trend_section,
    "drone_fleet": drone_fleet_section,
    "repeat_offenders": repeat_offenders_section,
    "fleet_health": fleet_health_section,
}


# Outputs -----------------------------------------------------------------------------------


def chart_png(section: Section) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 4.8), dpi=100, layout="constrained")
    section.draw(figure)
    figure.suptitle(section.title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def inputs_table(report: dict[str, Any]) -> Table:
    """Files and rows read per dataset, and the rows the answers count (replays dropped; drones: sightings only)."""
    rows = [
        (label(name), count(details.get("files")), count(details.get("rows_read")), counted_rows(name, details.get("distinct_rows")))
        for name, details in report.get("inputs", {}).items()
    ]
    return Table(f"What was read from {report.get('lake', 'the lake')}", ("data", "files", "rows read", "rows counted"), rows)


def counted_rows(dataset: str, number: int | None) -> str:
    return "–" if number is None else f"{number:,} {COUNTED_ROWS.get(dataset, 'distinct rows')}"


def cell_text(cell: Any) -> str:
    """A table cell as text: a value the answer lacks is a dash, as the sentences write it."""
    return "–" if cell is None else str(cell)


def markdown(report: dict[str, Any], built: Iterable[Section]) -> str:
    lines = ["# DroneCop analysis", "", *markdown_table(inputs_table(report))]
    for question, reason in report.get("not_answered", {}).items():
        lines.append(f"- *{question}* not answered: {reason}")
    for section in built:
        lines += ["", f"## {section.title}", "", *section.sentences, ""]
        if section.draw is not None:
            lines += [f"![{section.title}]({section.chart_file})", ""]
        for table in section.tables:
            lines += [*markdown_table(table), ""]
    return "\n".join(lines).rstrip() + "\n"


# In a Markdown table cell, text from the lake (a plate, a drone id) is text: what Markdown or HTML
# would read as markup is escaped, and what would end the row or reorder it on screen is replaced.
MARKDOWN_MARKUP = re.compile(r"([\\`*_\[\]|~#!])")


def markdown_cell(cell: Any) -> str:
    """A table cell as Markdown that shows its text as it is, on one line, in one cell."""
    text = UNSAFE_TEXT.sub("\ufffd", cell_text(cell))
    text = html.escape(text, quote=False)
    return MARKDOWN_MARKUP.sub(r"\\\1", text)


def markdown_table(table: Table) -> list[str]:
    def row(cells: Iterable[Any]) -> str:
        return "| " + " | ".join(map(markdown_cell, cells)) + " |"

    lines = [f"**{table.caption}**", "", row(table.headers), row("---" for _ in table.headers), *map(row, table.rows)]
    if table.more:
        lines += ["", f"… and {table.more:,} more rows in {REPORT_JSON}."]
    return lines


def html_page(report: dict[str, Any], built: Iterable[Section]) -> str:
    parts = ["<h1>DroneCop analysis</h1>", html_table(inputs_table(report))]
    for question, reason in report.get("not_answered", {}).items():
        parts.append(f"<p class='note'>{html.escape(question)} not answered: {html.escape(reason)}</p>")
    for section in built:
        parts.append(f"<section id='{section.name}'><h2>{html.escape(section.title)}</h2>")
        parts += [f"<p>{html.escape(sentence)}</p>" for sentence in section.sentences]
        if section.draw is not None:
            parts.append(f"<img src='{section.chart_file}' alt='{html.escape(section.title)} chart'>")
        parts += [html_table(table) for table in section.tables]
        parts.append("</section>")
    return HTML_FRAME.format(body="\n".join(parts))


def html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in table.headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell_text(cell))}</td>" for cell in row) + "</tr>" for row in table.rows)
    more = f"<p class='note'>… and {table.more:,} more rows in {REPORT_JSON}.</p>" if table.more else ""
    return f"<table><caption>{html.escape(table.caption)}</caption><tr>{head}</tr>{body}</table>{more}"


HTML_FRAME = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DroneCop analysis</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #1d2733; }}
section {{ border-top: 1px solid #d5dbe1; margin-top: 2rem; }}
img {{ max-width: 100%; }}
table {{ border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }}
caption {{ text-align: left; font-weight: 600; padding-bottom: 0.3rem; }}
th, td {{ border: 1px solid #d5dbe1; padding: 0.2rem 0.6rem; text-align: left; }}
.note {{ color: #5b6b7b; font-size: 0.9rem; }}
</style></head>
<body>
{body}
</body></html>
"""
