"""The desk's maintenance alerts on a real broker: kept once beside the violations' alerts, listed apart with the
drone's recent health from the lake, and marked sent to maintenance once, with an audit entry."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support.alert_desk import (  # noqa: F401 - database_url and postgres_server are fixtures
    ALICE,
    BOB_TOKEN,
    SCORED_AT,
    Desk,
    alert_record,
    human_review_message,
    maintenance_record,
    module_desk_fixtures,
    wait_until,
    write_health,
)
from tests.support.kafka_io import produce_all
from transforms.contract import DroneMessage, maintenance_alert_id
from transforms.kafka_settings import KafkaSettings

DEADLINE_S = 30.0

topics, desk = module_desk_fixtures("maintenance")


@pytest.fixture(scope="module")
def stocked(desk: Desk, broker: KafkaSettings, topics: tuple[str, str]) -> list[DroneMessage]:
    health = write_health(str(desk.lake), "drone-worn")
    worn = maintenance_record("drone-worn", "drone-worn-0", 0.83)
    produce_all(
        broker,
        topics[0],
        [worn, alert_record(human_review_message("drone-9", "Queens"), 0), worn, maintenance_record("drone-tired", "drone-tired-0", 0.61)],
    )
    wait_until(lambda: desk.status()["next_offsets"].get("0") == 4, DEADLINE_S, "the desk read all 4 records")
    return health


def ok(answer, status: int = 200):
    assert answer.status_code == status, f"{answer.status_code}: {answer.text}"
    return answer.json()


def test_a_maintenance_alert_sent_twice_is_listed_once_apart_from_the_violations_alerts(desk: Desk, stocked) -> None:
    listed = ok(desk.call("GET", "/api/maintenance"))
    assert sorted((row["drone_id"], row["failure_risk"], row["status"]) for row in listed) == [
        ("drone-tired", 0.61, "open"),
        ("drone-worn", 0.83, "open"),
    ]
    assert len(listed) == 2 and all(row["alert_id"] == maintenance_alert_id(row["message_id"]) for row in listed)
    violations = desk.alerts(status="open,acknowledged,resolved")
    assert [alert["drone_id"] for alert in violations["alerts"]] == ["drone-9"], "a maintenance alert is no violation"
    assert desk.status()["refused_total"] == 0, "nor is it refused"


def test_the_drones_recent_health_comes_from_the_lake_oldest_first_for_the_hour_before(desk: Desk, stocked) -> None:
    [worn] = [row for row in ok(desk.call("GET", "/api/maintenance")) if row["drone_id"] == "drone-worn"]
    answer = ok(desk.call("GET", f"/api/maintenance/{worn['alert_id']}/health"))
    expected = sorted((m for m in stocked if SCORED_AT - m.timestamp <= timedelta(minutes=60)), key=lambda m: m.timestamp)
    assert [point["timestamp"] for point in answer["health"]] == [
        m.timestamp.isoformat(timespec="milliseconds").replace("+00:00", "Z") for m in expected
    ]
    assert len(expected) == 13 and answer["health"][-1]["vibration_g"] == 1.2 and answer["health"][0]["motor_temp_c"] == 54
    assert answer["alert"]["alert_id"] == worn["alert_id"]


def test_an_operator_marks_a_drone_sent_to_maintenance_once_and_the_audit_says_who(desk: Desk, stocked) -> None:
    [tired] = [row for row in ok(desk.call("GET", "/api/maintenance")) if row["drone_id"] == "drone-tired"]
    sent = ok(desk.call("POST", f"/api/maintenance/{tired['alert_id']}/sent"))
    assert (sent["status"], sent["sent_by"]) == ("sent", ALICE) and sent["sent_at"]
    again = desk.call("POST", f"/api/maintenance/{tired['alert_id']}/sent", token=BOB_TOKEN)
    assert again.status_code == 409 and f"sent to maintenance by {ALICE}" in again.json()["detail"]
    assert [row["drone_id"] for row in ok(desk.call("GET", "/api/maintenance", params={"status": "sent"}))] == ["drone-tired"]
    assert "drone-tired" not in [row["drone_id"] for row in ok(desk.call("GET", "/api/maintenance"))]
    audit = ok(desk.call("GET", "/api/audit", params={"alert_id": tired["alert_id"]}))
    assert [(entry["operator"], entry["action"]) for entry in audit] == [(ALICE, "send_to_maintenance")]
    assert desk.call("POST", "/api/maintenance/no-such-id/sent").status_code == 404
    assert desk.call("GET", "/api/maintenance", token=None).status_code == 401
    assert desk.call("GET", "/api/maintenance", params={"status": "lost"}).status_code == 422
