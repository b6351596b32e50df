"""The maintenance tab in real headless Chromium: a maintenance alert shown apart from the violations' alerts,
with the drone's last hour of health as a chart, and marked sent to maintenance by the operator."""

from __future__ import annotations

from pathlib import Path

from tests.support.alert_desk import Desk, human_review_message, maintenance_record, send_alerts, wait_until, write_health
from tests.support.desk_browser import UI_DEADLINE_MS, desk, expect, page, sign_in  # noqa: F401 — fixtures, reused
from tests.support.kafka_io import produce_all
from transforms.contract import maintenance_alert_id
from transforms.kafka_settings import KafkaSettings


def test_an_operator_sees_a_maintenance_alert_with_its_drones_health_and_sends_the_drone_to_maintenance(
    desk: tuple[Desk, str],
    page,
    broker: KafkaSettings,
    tmp_path: Path,  # noqa: F811
) -> None:
    running, alerts_topic = desk
    write_health(str(running.lake), "drone-worn")
    send_alerts(broker, alerts_topic, [human_review_message("drone-007", "Queens")])
    produce_all(broker, alerts_topic, [maintenance_record("drone-worn", "drone-worn-0", 0.83)])
    wait_until(lambda: running.call("GET", "/api/maintenance").json(), 30.0, "the desk stored the maintenance alert")

    sign_in(page, running.url)
    expect(page.locator("#violations-view .alert")).to_have_count(1, timeout=UI_DEADLINE_MS)
    assert page.locator("#maintenance-view").is_hidden()
    page.click("#tab-maintenance")
    card = f"#maintenance [data-alert-id='{maintenance_alert_id('drone-worn-0')}']"
    page.wait_for_selector(card, timeout=UI_DEADLINE_MS)
    assert page.locator("#violations-view").is_hidden() and page.locator("#maintenance .alert").count() == 1
    assert page.text_content(f"{card} .drone") == "drone-worn" and "0.83" in page.text_content(f"{card} .risk")
    # The chart: 13 readings of the last hour, both lines drawn across the box.
    page.wait_for_selector(f"{card} svg.health[data-points='13']", timeout=UI_DEADLINE_MS)
    for line in ("temperature", "vibration"):
        assert len(page.get_attribute(f"{card} polyline.{line}", "points").split()) == 13

    page.click(f"{card} button.sent")
    page.wait_for_selector(f"{card}[data-status=sent]", timeout=UI_DEADLINE_MS)
    assert "Sent to maintenance by alice" in page.text_content(f"{card} .state")
    assert page.is_disabled(f"{card} button.sent")
    assert running.call("GET", "/api/maintenance", params={"status": "sent"}).json()[0]["sent_by"] == "alice"
    page.click("#tab-violations")
    expect(page.locator("#violations-view .alert")).to_have_count(1, timeout=UI_DEADLINE_MS)
