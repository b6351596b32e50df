"""The alert desk page in real headless Chromium: sign in, watch an alert arrive live, resolve it;
a list that holds only what its filter matches, a long queue a page at a time, a notice for new
alerts, and a phone-wide window.

Uses Debian's ``chromium`` and Playwright's Python driver (no browser download). The
page is never reloaded: a marker set on ``window`` before the alert is produced must still
be there when the alert has been resolved.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.support.alert_desk import (
    BOB_TOKEN,
    PLACES,
    Desk,
    human_review_message,
    send_alerts,
    store_photo,
    wait_until,
)
from tests.support.desk_browser import UI_DEADLINE_MS, desk, expect, page, sign_in  # noqa: F401 - desk and page are fixtures
from transforms.contract import alert_id_for
from transforms.kafka_settings import KafkaSettings
from transforms.violation_codes import violation_codes

README_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "alert_desk.png"
STORE_DEADLINE_S = 30.0
PAGE_TITLE = "Alert desk · DroneCop"


def queue_of(running: Desk, broker: KafkaSettings, alerts_topic: str, size: int) -> list[str]:
    """``size`` open alerts across the boroughs, stored by the desk before the page opens; their ids, newest first."""
    send_alerts(broker, alerts_topic, [human_review_message(f"drone-{n:03d}", list(PLACES)[n % len(PLACES)]) for n in range(size)])
    wait_until(lambda: running.alerts()["total"] == size, STORE_DEADLINE_S, f"the desk stored {size} alerts")
    return [alert["alert_id"] for alert in running.alerts()["alerts"]]


def card_ids(page) -> list[str]:
    return page.eval_on_selector_all(".alert", "cards => cards.map((card) => card.dataset.alertId)")


def most_common_code() -> int:
    return max(violation_codes().values(), key=lambda known: known.weight).code


def resolve_as_bob(running: Desk, alert_id: str) -> None:
    """Another operator resolves the alert through the API: the page hears of it only as an event."""
    answer = running.call("POST", f"/api/alerts/{alert_id}/resolve", token=BOB_TOKEN, json={"violation_code": most_common_code()})
    assert answer.status_code == 200, answer.text


def test_an_operator_sees_an_alert_arrive_live_and_resolves_it(desk: tuple[Desk, str], page, broker: KafkaSettings, tmp_path: Path) -> None:
    running, alerts_topic = desk
    earlier = [
        human_review_message(f"drone-{n:03d}", borough)
        for n, borough in [(17, "Brooklyn"), (4, "Queens"), (23, "Bronx"), (9, "Staten Island")]
    ]
    send_alerts(broker, alerts_topic, earlier)
    acknowledged = alert_id_for(earlier[1].message_id)

    sign_in(page, running.url)
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

    code = most_common_code()
    page.select_option(f"{card} select.code", str(code))
    page.click(f"{card} form.resolve button")
    expect(page.locator(card)).to_have_count(0, timeout=UI_DEADLINE_MS)  # no longer open or acknowledged
    expect(page.locator("#count-resolved")).to_have_text("1", timeout=UI_DEADLINE_MS)
    expect(page.locator("#count-open")).to_have_text("3", timeout=UI_DEADLINE_MS)
    page.select_option("#status-filter", "")  # all alerts
    page.wait_for_selector(f"{card}[data-status=resolved]", timeout=UI_DEADLINE_MS)
    state = page.text_content(f"{card} .state")
    assert f"Resolved as {code}" in state and "by alice" in state
    assert page.evaluate("window.__not_reloaded") is True, "the page was reloaded"
    assert running.alerts(status="resolved")["alerts"][0]["resolved_by"] == "alice"

    expect(page.locator(".alert.fresh")).to_have_count(0, timeout=UI_DEADLINE_MS)  # arrival highlight over
    page.mouse.move(0, 0)
    page.screenshot(path=str(tmp_path / "alert_desk.png"), full_page=False)
    if os.environ.get("DRONECOP_UPDATE_SCREENSHOT"):
        # Only on request: a test run must not change files in the checkout.
        README_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "alert_desk.png", README_SCREENSHOT)


def test_a_card_resolved_under_open_and_acknowledged_leaves_the_list_and_the_count_follows(
    desk: tuple[Desk, str], page, broker: KafkaSettings
) -> None:
    running, alerts_topic = desk
    messages = [human_review_message(f"drone-{n:03d}", borough) for n, borough in enumerate(["Queens", "Bronx", "Bronx"])]
    send_alerts(broker, alerts_topic, messages)
    mine, bobs, remaining = (alert_id_for(message.message_id) for message in messages)
    sign_in(page, running.url)
    assert page.input_value("#status-filter") == "open,acknowledged"
    expect(page.locator(".alert")).to_have_count(3, timeout=UI_DEADLINE_MS)
    expect(page.locator("#showing")).to_have_text("showing 3 of 3", timeout=UI_DEADLINE_MS)

    page.select_option(f"[data-alert-id='{mine}'] select.code", str(most_common_code()))
    page.click(f"[data-alert-id='{mine}'] form.resolve button")
    expect(page.locator(f"[data-alert-id='{mine}']")).to_have_count(0, timeout=UI_DEADLINE_MS)
    expect(page.locator("#showing")).to_have_text("showing 2 of 2", timeout=UI_DEADLINE_MS)

    resolve_as_bob(running, bobs)
    expect(page.locator(f"[data-alert-id='{bobs}']")).to_have_count(0, timeout=UI_DEADLINE_MS)
    expect(page.locator(".alert")).to_have_count(1, timeout=UI_DEADLINE_MS)
    assert page.get_attribute(".alert", "data-alert-id") == remaining
    expect(page.locator("#showing")).to_have_text("showing 1 of 1", timeout=UI_DEADLINE_MS)
    expect(page.locator("#count-resolved")).to_have_text("2", timeout=UI_DEADLINE_MS)


def test_a_long_queue_is_shown_a_page_at_a_time_and_show_more_reaches_the_rest(desk: tuple[Desk, str], page, broker: KafkaSettings) -> None:
    running, alerts_topic = desk
    newest_first = queue_of(running, broker, alerts_topic, 47)
    sign_in(page, running.url)
    expect(page.locator(".alert")).to_have_count(20, timeout=UI_DEADLINE_MS)
    expect(page.locator("#showing")).to_have_text("showing 20 of 47", timeout=UI_DEADLINE_MS)
    assert card_ids(page) == newest_first[:20]

    resolve_as_bob(running, newest_first[0])
    remaining = newest_first[1:]
    expect(page.locator("#showing")).to_have_text("showing 20 of 46", timeout=UI_DEADLINE_MS)
    assert card_ids(page) == remaining[:20], "the next alert of the queue moved up into the page"

    page.click("#more")
    expect(page.locator(".alert")).to_have_count(40, timeout=UI_DEADLINE_MS)
    expect(page.locator("#more")).to_have_text("Show 6 more", timeout=UI_DEADLINE_MS)
    page.click("#more")
    expect(page.locator(".alert")).to_have_count(46, timeout=UI_DEADLINE_MS)
    expect(page.locator("#more")).to_be_hidden(timeout=UI_DEADLINE_MS)
    expect(page.locator("#showing")).to_have_text("showing 46 of 46", timeout=UI_DEADLINE_MS)
    assert card_ids(page) == remaining


def test_a_new_alert_raises_a_notice_and_the_title_until_the_operator_has_seen_it(
    desk: tuple[Desk, str], page, broker: KafkaSettings
) -> None:
    running, alerts_topic = desk
    queue_of(running, broker, alerts_topic, 25)
    sign_in(page, running.url)
    expect(page.locator(".alert")).to_have_count(20, timeout=UI_DEADLINE_MS)
    expect(page).to_have_title(f"(25 open) {PAGE_TITLE}", timeout=UI_DEADLINE_MS)
    expect(page.locator("#new-alerts")).to_be_hidden()
    page.locator(".alert").last.scroll_into_view_if_needed()  # working down the queue, far from its top

    arriving = human_review_message("drone-042", "Queens")
    send_alerts(broker, alerts_topic, [arriving])
    notice = page.locator("#new-alerts")
    expect(notice).to_have_text("1 new alert", timeout=UI_DEADLINE_MS)
    expect(notice).to_be_in_viewport()
    expect(page).to_have_title(f"(1 new · 26 open) {PAGE_TITLE}", timeout=UI_DEADLINE_MS)
    expect(page.locator("#showing")).to_have_text("showing 20 of 26", timeout=UI_DEADLINE_MS)

    notice.click()
    expect(notice).to_be_hidden(timeout=UI_DEADLINE_MS)
    expect(page).to_have_title(f"(26 open) {PAGE_TITLE}", timeout=UI_DEADLINE_MS)
    expect(page.locator(f"[data-alert-id='{alert_id_for(arriving.message_id)}']")).to_be_in_viewport()
    assert card_ids(page)[0] == alert_id_for(arriving.message_id)


def test_at_420_px_wide_the_header_and_the_filters_fit_the_page(desk: tuple[Desk, str], page, broker: KafkaSettings) -> None:
    running, alerts_topic = desk
    queue_of(running, broker, alerts_topic, 2)
    page.set_viewport_size({"width": 420, "height": 900})
    sign_in(page, running.url)
    expect(page.locator(".alert")).to_have_count(2, timeout=UI_DEADLINE_MS)
    width = page.evaluate("window.innerWidth")
    assert width == 420
    boxes = page.eval_on_selector_all(
        "header.bar, header.bar *, .toolbar, .toolbar *",
        "elements => elements.map((element) => { const box = element.getBoundingClientRect();"
        " return [element.id || element.className || element.tagName, box.left, box.right]; })",
    )
    assert [name for name, left, right in boxes if left < 0 or right > width] == []
    borough = page.locator("#borough-filter").bounding_box()
    assert borough["x"] >= 0 and borough["x"] + borough["width"] <= width, borough
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_each_card_shows_its_photo_and_a_placeholder_where_none_was_stored(
    desk: tuple[Desk, str], page, broker: KafkaSettings, tmp_path: Path
) -> None:
    running, alerts_topic = desk
    pictured, unpictured = human_review_message("drone-101", "Brooklyn"), human_review_message("drone-102", "Queens")
    store_photo(running.lake, pictured)
    send_alerts(broker, alerts_topic, [pictured, unpictured])

    sign_in(page, running.url)
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
