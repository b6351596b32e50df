"""The alert desk in real headless Chromium, for the browser tests: a desk of the test's own, a page, and signing in.

Uses Debian's ``chromium`` and Playwright's Python driver (no browser download); a module that
imports this one is skipped where either is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.support.alert_desk import ALICE_TOKEN, Desk, start_desk
from transforms.kafka_settings import KafkaSettings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
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


def sign_in(page, url: str) -> None:
    """Sign in as alice, from the sign-in page the desk sends a stranger to, and wait until the page is
    live: its list is loaded and kept up to date."""
    page.goto(url)
    assert page.url.endswith("/signin")
    page.fill("#token", ALICE_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("#live[data-state=live]", timeout=UI_DEADLINE_MS)
