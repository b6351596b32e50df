"""The alert desk page in real headless Chromium: sign in, watch an alert arrive live, resolve it.

Uses Debian's ``chromium`` and Playwright's Python driver (no browser download). The
page is never reloaded: a marker set on ``window`` before the alert is produced must still
be there when the alert has been resolved.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from tests.test_alert_desk_support import (
    ALICE_TOKEN,
    Desk,
    human_review_message,
    send_alerts,
    start_desk,
    store_photo,
)
from transforms.contract import alert_id_for
from transforms.kafka_settings import KafkaSettings
from transforms.violation_codes import violation_codes

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
README_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "alert_desk.png"
UI_DEADLINE_MS = 20_000

if not CHROMIUM.exists():
    pytest.skip("browser test needs Debian's chromium at /usr/bin/chromium", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="browser test needs playwright (pip install playwright)")
expect = sync_api.expect


@pytest.fixture
def desk(broker: KafkaSettings, topic_name: str, tmp_path: Path) -> Iterator[tuple[Desk, str]]:
    running = start_desk(broker, tmp_path / "alerts.db", topic_name, f"{topic_name}-corrections")
    yield running, topic_name
    assert running.stop() == 0, running.log()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1360, "height": 900}, device_scale_factor=1)
            yield context.new_page()
        finally:
            browser.close()


def test_an_operator_sees_an_alert_arrive_live_and_resolves_it(
    desk: tuple[Desk, str], page, broker: KafkaSettings, tmp_path: Path
) -> None:
    running, alerts_topic = desk
    earlier = [human_review_message(f"drone-{n:03d}", borough) for n, borough in
               [(17, "Brooklyn"), (4, "Queens"), (23, "Bronx"), (9, "Staten Island")]]  # fmt: skip
    send_alerts(broker, alerts_topic, earlier)
    acknowledged = alert_id_for(earlier[1].message_id)

    page.goto(running.url)
    assert page.url.endswith("/signin")
    page.fill("#token", ALICE_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("#live[data-state=live]", timeout=UI_DEADLINE_MS)
    assert page.text_content("#operator") == "alice"
    expect(page.locator(".alert")).to_have_count(4, timeout=UI_DEADLINE_MS)
    page.click(f"[data-alert-id='{acknowledged}'] button.ack")
    page.wait_for_selector(f"[data-alert-id='{acknowledged}'][data-status=acknowledged]", timeout=UI_DEADLINE_MS)

    page.evaluate("window.__not_reloaded = true")
    arriving = human_review_message("drone-042", "Manhattan")
    send_alerts(broker, alerts_topic, [arriving])
    card = f"[data-alert-id='{alert_id_for(arriving.message_id)}']"
    page.wait_for_selector(card, timeout=UI_DEADLINE_MS)
    assert page.text_content(f"{card} .drone") == "drone-042"
    assert "Manhattan" in page.text_content(f"{card} .where")
    assert page.text_content(f"{card} .image") == arriving.image_id
    expect(page.locator("#count-open")).to_have_text("4", timeout=UI_DEADLINE_MS)

    code = max(violation_codes().values(), key=lambda known: known.weight).code  # the most common one
    page.select_option(f"{card} select.code", str(code))
    page.click(f"{card} form.resolve button")
    page.wait_for_selector(f"{card}[data-status=resolved]", timeout=UI_DEADLINE_MS)
    state = page.text_content(f"{card} .state")
    assert f"Resolved as {code}" in state and "by alice" in state
    expect(page.locator("#count-resolved")).to_have_text("1", timeout=UI_DEADLINE_MS)
    expect(page.locator("#count-open")).to_have_text("3", timeout=UI_DEADLINE_MS)
    assert page.evaluate("window.__not_reloaded") is True, "the page was reloaded"
    assert running.alerts(status="resolved")["alerts"][0]["resolved_by"] == "alice"

    expect(page.locator(".alert.fresh")).to_have_count(0, timeout=UI_DEADLINE_MS)  # arrival highlight over
    page.mouse.move(0, 0)
    page.screenshot(path=str(tmp_path / "alert_desk.png"), full_page=False)
    if os.environ.get("DRONECOP_UPDATE_SCREENSHOT"):
        # Only on request: a test run must not change files in the checkout.
        README_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "alert_desk.png", README_SCREENSHOT)


def test_each_card_shows_its_photo_and_a_placeholder_where_none_was_stored(
    desk: tuple[Desk, str], page, broker: KafkaSettings, tmp_path: Path
) -> None:
    running, alerts_topic = desk
    pictured, unpictured = human_review_message("drone-101", "Brooklyn"), human_review_message("drone-102", "Queens")
    store_photo(running.lake, pictured)
    send_alerts(broker, alerts_topic, [pictured, unpictured])

    page.goto(running.url)
    page.fill("#token", ALICE_TOKEN)
    page.click("button[type=submit]")
    card, bare = (f"[data-alert-id='{alert_id_for(message.message_id)}']" for message in (pictured, unpictured))
    photo = page.wait_for_selector(f"{card} img.photo", timeout=UI_DEADLINE_MS)
    page.wait_for_function("(image) => image.complete && image.naturalWidth > 0", arg=photo, timeout=UI_DEADLINE_MS)
    assert photo.evaluate("(image) => [image.naturalWidth, image.naturalHeight]") == [640, 368]
    expect(page.locator(f"{bare} .photo-missing")).to_have_text("No photo stored", timeout=UI_DEADLINE_MS)
    expect(page.locator(f"{bare} img")).to_have_count(0)

    photo.click()
    large = page.wait_for_selector("#alert-detail[open] img.detail-photo", timeout=UI_DEADLINE_MS)
    page.wait_for_function("(image) => image.complete && image.naturalWidth > 0", arg=large, timeout=UI_DEADLINE_MS)
    assert "drone-101" in page.text_content("#alert-detail h2")
    page.screenshot(path=str(tmp_path / "alert_detail.png"))
    page.click("#alert-detail button.close")
    page.click(f"{bare} .photo-missing")
    expect(page.locator("#alert-detail[open] .detail-photo.photo-missing")).to_have_count(1, timeout=UI_DEADLINE_MS)
    page.screenshot(path=str(tmp_path / "alert_detail_missing.png"))
