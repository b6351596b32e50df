"""The desk's store on both databases: every test runs on a fresh SQLite file and on a fresh
database of a real PostgreSQL server, through the same calls, expecting the same answers."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import psycopg
import pytest

from alert_desk.alerts import Alert, RefusedAlert, parse_alert
from alert_desk.database import DatabaseUnavailable, dialect_for, redacted
from alert_desk.store import ACKNOWLEDGED, OPEN, RESOLVED, Conflict, NotFound, Store, Transition
from tests.support.alert_desk import (  # noqa: F401 - database_url and postgres_server are fixtures
    ALICE,
    BOB,
    PLACES,
    database_url,
    free_port,
    human_review_message,
    postgres_server,
)
from transforms.contract import AlertReason, DroneMessage, Reason, alert_id_for, encode_alert, parse_message

TOPIC = "drone-alerts"
HOBOKEN = (40.7440, -74.0324)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = Store.open(database_url)
    yield opened
    opened.close()


def as_alerts(messages: list[DroneMessage], first_offset: int = 0) -> list[Alert]:
    """The alerts the consumer would make of these messages, at consecutive offsets of partition 0."""
    alerts = []
    for offset, message in enumerate(messages, start=first_offset):
        parsed = parse_alert(encode_alert(message, datetime.now(timezone.utc), 0, offset), 0, offset)
        assert isinstance(parsed, Alert), parsed
        alerts.append(parsed)
    return alerts


def stocked(store: Store, count: int) -> list[Alert]:
    alerts = as_alerts([human_review_message(f"drone-{index}") for index in range(count)])
    store.ingest(TOPIC, alerts, [], {0: count})
    return alerts


def test_a_batch_is_kept_once_with_its_offsets_which_only_move_forward(store: Store) -> None:
    alerts = as_alerts([human_review_message(f"drone-{index}") for index in range(3)])
    refused = parse_alert(b"{not an alert", 0, 3)
    assert isinstance(refused, RefusedAlert)

    new = store.ingest(TOPIC, alerts, [refused], {0: 4})
    assert [view["alert_id"] for view in new] == [alert.alert_id for alert in alerts]
    assert all(view["status"] == OPEN for view in new)
    assert store.ingest(TOPIC, alerts, [refused], {0: 7}) == [], "a resent alert is kept once"
    store.ingest(TOPIC, [], [], {0: 5, 1: 2})

    assert store.next_offsets(TOPIC) == {0: 7, 1: 2}
    assert store.next_offsets("another-topic") == {}
    assert store.list_alerts([OPEN], None, 100)[1] == 3
    assert store.refused_count() == 1


def test_a_batch_that_fails_half_way_leaves_neither_alerts_nor_offsets(store: Store) -> None:
    good, bad = as_alerts([human_review_message("drone-1"), human_review_message("drone-2")])
    broken = replace(bad, message=replace(bad.message, latitude=None))  # NOT NULL refuses it
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
        store.ingest(TOPIC, [good, broken], [], {0: 2})
    assert store.list_alerts([OPEN], None, 100) == ([], 0)
    assert store.next_offsets(TOPIC) == {}
    assert [view["alert_id"] for view in store.ingest(TOPIC, [good], [], {0: 1})] == [good.alert_id], "still usable"


def test_values_come_back_exactly_as_they_went_in(store: Store) -> None:
    message = replace(human_review_message("drone-exact"), latitude=40.758012345678901, longitude=-73.985512345678901)
    (alert,) = as_alerts([message], first_offset=2**40)
    store.ingest(TOPIC, [alert], [], {0: 2**40 + 1})
    view = store.get(alert.alert_id)
    assert view is not None
    assert (view["latitude"], view["longitude"]) == (message.latitude, message.longitude), "double precision"
    assert store.next_offsets(TOPIC) == {0: 2**40 + 1}, "64-bit offsets"
    assert parse_message(store.message_json(alert.alert_id) or b"") == message


def test_state_changes_check_the_status_and_leave_an_audit_trail(store: Store) -> None:
    first, second = (alert.alert_id for alert in stocked(store, 2))
    acknowledged = store.acknowledge(first, BOB)
    assert acknowledged.previous_status == OPEN and acknowledged.alert["acknowledged_by"] == BOB
    with pytest.raises(Conflict, match=f"already acknowledged by {BOB}"):
        store.acknowledge(first, ALICE)
    assert store.check_resolvable(first)["status"] == ACKNOWLEDGED
    resolved = store.resolve(first, ALICE, 21, "correction-1")
    assert resolved.previous_status == ACKNOWLEDGED
    assert (resolved.alert["status"], resolved.alert["resolved_code"], resolved.alert["resolved_by"]) == (RESOLVED, 21, ALICE)
    with pytest.raises(Conflict, match="stale"):
        store.acknowledge(first, BOB)
    with pytest.raises(Conflict, match="cannot be resolved twice"):
        store.resolve(first, BOB, 14, "correction-2")
    with pytest.raises(Conflict, match="cannot be resolved twice"):
        store.check_resolvable(first)
    with pytest.raises(NotFound, match="no alert with id nope"):
        store.acknowledge("nope", ALICE)

    trail = store.audit_log(first, 10)
    assert [(entry["action"], entry["operator"]) for entry in trail] == [("resolve", ALICE), ("acknowledge", BOB)]
    assert "violation_code=21 correction=correction-1" in trail[0]["detail"]
    assert store.audit_log(second, 10) == []
    assert store.counts() == {OPEN: 1, ACKNOWLEDGED: 0, RESOLVED: 1}


def test_of_operators_acknowledging_at_once_exactly_one_wins(store: Store) -> None:
    operators = [f"operator-{index}" for index in range(6)]
    for alert in stocked(store, 4):
        start = threading.Barrier(len(operators))
        outcomes: list[Transition | Conflict] = []

        def acknowledge(name: str, alert_id: str = alert.alert_id, barrier: threading.Barrier = start) -> None:
            barrier.wait()
            try:
                outcomes.append(store.acknowledge(alert_id, name))
            except Conflict as conflict:
                outcomes.append(conflict)

        threads = [threading.Thread(target=acknowledge, args=(name,)) for name in operators]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        winners = [outcome for outcome in outcomes if isinstance(outcome, Transition)]
        assert len(outcomes) == len(operators) and len(winners) == 1, outcomes
        trail = store.audit_log(alert.alert_id, 10)
        assert [(entry["action"], entry["operator"]) for entry in trail] == [("acknowledge", winners[0].alert["acknowledged_by"])]


def test_a_reopened_store_has_everything_and_resumes_after_its_offsets(database_url: str) -> None:
    first = Store.open(database_url)
    alerts = stocked(first, 5)
    first.acknowledge(alerts[0].alert_id, ALICE)
    first.close()

    again = Store.open(database_url)
    try:
        assert again.next_offsets(TOPIC) == {0: 5}
        assert again.list_alerts([OPEN, ACKNOWLEDGED], None, 100)[1] == 5
        assert again.get(alerts[0].alert_id)["acknowledged_by"] == ALICE  # type: ignore[index]
        assert again.ingest(TOPIC, alerts, [], {0: 5}) == []
    finally:
        again.close()


def test_lists_are_newest_first_and_filtered_by_status_and_borough(store: Store) -> None:
    now = datetime.now(timezone.utc)
    messages = [human_review_message(f"drone-{index}", borough) for index, borough in enumerate(PLACES)]
    outside = replace(human_review_message("drone-nj"), latitude=HOBOKEN[0], longitude=HOBOKEN[1])
    alerts = [replace(alert, raised_at=now - timedelta(minutes=index)) for index, alert in enumerate(as_alerts([*messages, outside]))]
    store.ingest(TOPIC, alerts, [], {0: len(alerts)})
    store.acknowledge(alerts[0].alert_id, ALICE)

    everything, total = store.list_alerts([OPEN, ACKNOWLEDGED, RESOLVED], None, 3)
    assert total == 6 and [view["alert_id"] for view in everything] == [alert.alert_id for alert in alerts[:3]]
    rest, total = store.list_alerts([OPEN, ACKNOWLEDGED, RESOLVED], None, 10, offset=3)
    assert total == 6 and [view["alert_id"] for view in rest] == [alert.alert_id for alert in alerts[3:]]
    assert [view["borough"] for view in store.list_alerts([OPEN], "Queens", 10)[0]] == ["Queens"]
    assert [view["alert_id"] for view in store.list_alerts([OPEN], None, 10, unknown_borough=True)[0]] == [alerts[-1].alert_id]
    assert [view["status"] for view in store.list_alerts([ACKNOWLEDGED], None, 10)[0]] == [ACKNOWLEDGED]


def test_browser_sessions_expire_and_end_with_an_audit_entry(store: Store) -> None:
    store.create_session("live-hash", ALICE, datetime.now(timezone.utc) + timedelta(hours=1))
    store.create_session("expired-hash", BOB, datetime.now(timezone.utc) - timedelta(seconds=1))
    assert store.session_operator("live-hash") == ALICE
    assert store.session_operator("expired-hash") is None
    store.end_session("live-hash")
    store.end_session("never-existed")
    assert store.session_operator("live-hash") is None
    store.record(ALICE, "note", "a detail")
    actions = [(entry["action"], entry["operator"]) for entry in store.audit_log(None, 10)]
    assert actions == [("note", ALICE), ("sign_out", ALICE), ("sign_in", BOB), ("sign_in", ALICE)]


def test_text_a_database_cannot_hold_is_refused_with_a_reason_and_kept_as_refused(store: Store) -> None:
    message = human_review_message("drone-\x00-nul")
    raw = encode_alert(message, datetime.now(timezone.utc), 0, 0)
    refused = parse_alert(raw, 0, 0)
    assert isinstance(refused, RefusedAlert) and refused.reason == AlertReason.BAD_MESSAGE
    assert refused.detail == f"{Reason.BAD_CHARACTERS}: drone_id"
    clean = human_review_message("drone-8")
    clean_raw = encode_alert(clean, datetime.now(timezone.utc), 0, 1)
    forged = parse_alert(clean_raw.replace(alert_id_for(clean.message_id).encode(), b"\\u0000\\nforged"), 0, 1)
    assert isinstance(forged, RefusedAlert) and forged.reason == AlertReason.ALERT_ID_MISMATCH
    assert forged.detail == "\\x00\\x0aforged", "printable, one line"
    store.ingest(TOPIC, [], [refused, forged], {0: 2})
    assert store.refused_count() == 2 and store.next_offsets(TOPIC) == {0: 2}


def test_a_new_sqlite_file_and_its_journal_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'desk' / 'alerts.db'}")
    try:
        store.ingest(TOPIC, as_alerts([human_review_message("drone-1")]), [], {0: 1})
        files = sorted((tmp_path / "desk").iterdir())
        assert {path.name for path in files} >= {"alerts.db", "alerts.db-wal"}
        assert {path.name: oct(path.stat().st_mode & 0o777) for path in files} == {path.name: "0o600" for path in files}
    finally:
        store.close()


# The URL: which database, and what may be printed of it.


def test_a_url_of_neither_kind_is_refused_with_the_forms_that_work() -> None:
    for url in ("mysql://db/alerts", "sqlite:///", "alerts.db", "postgresql://desk:pw-secret@[::1/alerts"):
        with pytest.raises(ValueError, match=r"sqlite:///FILE or postgresql://") as refused:
            dialect_for(url)
        assert "pw-secret" not in str(refused.value)
    with pytest.raises(DatabaseUnavailable, match='invalid integer value "notaport"'):
        Store.open("postgresql://desk@127.0.0.1:notaport/alerts")


def test_a_password_in_the_url_is_never_printed() -> None:
    url = f"postgresql://desk:hunter2-secret@127.0.0.1:{free_port()}/alerts"
    assert redacted(url) == url.replace("hunter2-secret", "***")
    assert "hunter2" not in repr(dialect_for(url))
    with pytest.raises(DatabaseUnavailable) as unavailable:
        Store.open(url)
    assert "hunter2" not in str(unavailable.value) and "***" in str(unavailable.value)
    assert len(str(unavailable.value).splitlines()) == 1
