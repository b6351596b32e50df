"""The desk's guards, each checked with real HTTP requests against a running ``python -m alert_desk``:
state changes from other sites are refused, request bodies and alert records have a size cap,
and no secret reaches the desk's log."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.alert_desk import (  # noqa: F401 - database_url and postgres_server are fixtures
    ALICE,
    ALICE_TOKEN,
    BOB_TOKEN,
    Desk,
    alert_record,
    database_url,
    human_review_message,
    module_desk_fixtures,
    postgres_server,
    send_alerts,
    start_desk,
    unique_topic,
    wait_until,
)
from tests.support.kafka_io import produce_all
from transforms.contract import MAX_ALERT_BYTES, alert_id_for
from transforms.kafka_settings import KafkaSettings
from transforms.violation_codes import violation_codes

DEADLINE_S = 30.0
BODY_LIMIT = 16 * 1024  # the desk's default --max_body_bytes
ELSEWHERE = "https://elsewhere.example"


topics, desk = module_desk_fixtures("guard")


@pytest.fixture(scope="module")
def alert_ids(desk: Desk, broker: KafkaSettings, topics: tuple[str, str]) -> list[str]:
    """Eight open alerts to act on."""
    messages = [human_review_message(f"guard-{index}") for index in range(8)]
    send_alerts(broker, topics[0], messages)
    wait_until(lambda: desk.alerts()["total"] == len(messages), DEADLINE_S, "the eight alerts are stored")
    return [alert_id_for(message.message_id) for message in messages]


def refusal(answer: httpx.Response, status: int) -> str:
    """The one-line reason of a refused request."""
    assert answer.status_code == status, f"expected {status}, got {answer.status_code}: {answer.text}"
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail
    return detail


def status_of(desk: Desk, alert_id: str) -> str:
    answer = desk.call("GET", f"/api/alerts/{alert_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()["alert"]["status"]


def a_known_code() -> int:
    return min(code for code in violation_codes() if code != 100)


def sign_in(desk: Desk) -> str:
    """A browser session cookie, ``name=value``."""
    signed_in = desk.call("POST", "/signin", token=None, data={"token": ALICE_TOKEN})
    assert signed_in.status_code == 303, signed_in.text
    return signed_in.headers["set-cookie"].split(";")[0]


# Cross-site requests.


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": ELSEWHERE},
        {"Origin": "null"},
        {"Origin": "http://[::1"},
        {"Referer": f"{ELSEWHERE}/a-page"},
        {"Referer": "not a page address"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "{desk}"},
    ],
    ids=[
        "fetch-cross-site",
        "fetch-same-site",
        "origin-elsewhere",
        "origin-null",
        "origin-malformed",
        "referer-elsewhere",
        "referer-malformed",
        "fetch-cross-site-own-origin",
    ],
)
def test_a_state_change_from_another_site_is_refused_with_a_reason(desk: Desk, alert_ids: list[str], headers: dict[str, str]) -> None:
    headers = {name: value.replace("{desk}", desk.url) for name, value in headers.items()}
    alert_id = alert_ids[0]
    cookie = sign_in(desk)
    attempts = [
        desk.call("POST", f"/api/alerts/{alert_id}/ack", headers=headers),
        desk.call("POST", f"/api/alerts/{alert_id}/ack", token=None, headers={**headers, "Cookie": cookie}),
        desk.call("POST", f"/api/alerts/{alert_id}/resolve", json={"violation_code": a_known_code()}, headers=headers),
        desk.call("POST", "/signin", token=None, data={"token": ALICE_TOKEN}, headers=headers),
        desk.call("POST", "/signout", token=None, headers={**headers, "Cookie": cookie}),
    ]
    for answer in attempts:
        assert "cross-site request refused" in refusal(answer, 403)
    assert status_of(desk, alert_id) == "open", "nothing changed"
    assert desk.call("GET", "/api/me", token=None, headers={"Cookie": cookie}).json() == {"operator": ALICE}


def test_the_desks_own_page_and_scripts_without_an_origin_may_change_state(desk: Desk, alert_ids: list[str]) -> None:
    script, page_with_origin, page_with_referer_only = alert_ids[1:4]
    assert desk.call("POST", f"/api/alerts/{script}/ack").status_code == 200, "a bearer-token script sends no Origin"
    cookie = sign_in(desk)
    same_origin = {"Cookie": cookie, "Origin": desk.url, "Sec-Fetch-Site": "same-origin"}
    assert desk.call("POST", f"/api/alerts/{page_with_origin}/ack", token=None, headers=same_origin).status_code == 200
    referer = {"Referer": f"{desk.url}/"}
    assert desk.call("POST", f"/api/alerts/{page_with_referer_only}/ack", headers=referer).status_code == 200
    assert desk.call("GET", "/api/alerts", headers={"Origin": ELSEWHERE}).status_code == 200, "reading changes nothing"
    assert [status_of(desk, alert_id) for alert_id in alert_ids[1:4]] == ["acknowledged"] * 3


# Request bodies.


def streamed(total: int, piece: int = 4096) -> Iterator[bytes]:
    """A body sent in chunks without a Content-Length, so only counting it as it arrives can stop it."""
    for start in range(0, total, piece):
        yield b" " * min(piece, total - start)


def test_a_body_over_the_limit_is_refused_whether_declared_or_streamed(desk: Desk, alert_ids: list[str]) -> None:
    alert_id = alert_ids[4]
    resolve = f"/api/alerts/{alert_id}/resolve"
    json_type = {"content-type": "application/json"}
    declared = desk.call("POST", resolve, content=b" " * (BODY_LIMIT + 1), headers=json_type)
    assert refusal(declared, 413) == f"request body larger than {BODY_LIMIT} bytes"
    chunked = desk.call("POST", resolve, content=streamed(BODY_LIMIT * 4), headers=json_type)
    assert refusal(chunked, 413) == f"request body larger than {BODY_LIMIT} bytes"
    form = desk.call(
        "POST", "/signin", token=None, content=streamed(BODY_LIMIT + 10), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert refusal(form, 413) == f"request body larger than {BODY_LIMIT} bytes"
    assert status_of(desk, alert_id) == "open"

    small = iter([b'{"violation_code": ', str(a_known_code()).encode(), b"}"])
    answer = desk.call("POST", resolve, content=small, headers=json_type)
    assert answer.status_code == 200, answer.text
    assert answer.json()["alert"]["status"] == "resolved", "a streamed body under the limit is read as usual"


# Alert records.


def test_an_oversized_alert_record_is_skipped_counted_and_logged_and_reading_goes_on(
    desk: Desk, alert_ids: list[str], broker: KafkaSettings, topics: tuple[str, str]
) -> None:
    first = desk.status()["next_offsets"]["0"]
    oversized = b'{"alert_id": "' + b"x" * (MAX_ALERT_BYTES * 4) + b'"}'
    after = human_review_message("after-the-big-one")
    produce_all(broker, topics[0], [(None, oversized), alert_record(after)])

    wait_until(lambda: desk.status()["next_offsets"]["0"] == first + 2, DEADLINE_S, "both records read")
    status = desk.status()
    assert status["refused_by_reason"] == {"oversize": 1} and status["consumer_failed"] is None
    assert status_of(desk, alert_id_for(after.message_id)) == "open", "the alert after it is kept"
    assert httpx.get(f"{desk.url}/healthz", timeout=5).status_code == 200
    expected = f"refused alert at {topics[0]}/0@{first}: oversize {len(oversized)} bytes > {MAX_ALERT_BYTES}"
    wait_until(lambda: expected in desk.log(), DEADLINE_S, "the refusal is logged")


# Secrets.


def test_no_token_cookie_or_database_password_reaches_the_log(broker: KafkaSettings, tmp_path: Path, database_url: str) -> None:
    alerts_topic = unique_topic("secret-alerts")
    message = human_review_message("secret-drone")
    produce_all(broker, alerts_topic, [alert_record(message), (None, b"{not an alert")])
    desk = start_desk(broker, tmp_path / "alerts.db", alerts_topic, f"{alerts_topic}-corrections", database_url=database_url)
    wrong_token = "wrong-token-3f9a1c7e5b2d"
    try:
        wait_until(lambda: desk.status()["next_offsets"].get("0") == 2, DEADLINE_S, "both records read")
        assert desk.call("GET", "/api/alerts", token=wrong_token).status_code == 401
        assert desk.call("POST", "/signin", token=None, data={"token": wrong_token}).status_code == 401
        cookie = sign_in(desk)
        same_origin = {"Cookie": cookie, "Origin": desk.url}
        alert_id = alert_id_for(message.message_id)
        answer = desk.call("POST", f"/api/alerts/{alert_id}/resolve", token=BOB_TOKEN, json={"violation_code": a_known_code()})
        assert answer.status_code == 200, answer.text
        assert desk.call("POST", "/signout", token=None, headers=same_origin).status_code == 303
        status_text = desk.call("GET", "/api/status").text
    finally:
        assert desk.stop(signal.SIGTERM) == 0, desk.log()
    secrets = [ALICE_TOKEN, BOB_TOKEN, wrong_token, cookie.split("=", 1)[1]]
    password = urlsplit(database_url).password
    if password:
        secrets.append(password)
    log = desk.log()
    assert "refused alert" in log, "the desk did log, so the check below means something"
    assert [secret for secret in secrets if secret in log] == []
    assert password is None or password not in status_text
