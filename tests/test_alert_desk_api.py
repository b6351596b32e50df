"""The alert desk's API against a real SQLite file and the real embedded broker.

Each desk here is ``python -m alert_desk`` in its own process, so the tests also cover
the command line, start-up and a clean stop. The restart test runs on PostgreSQL as well.
"""

from __future__ import annotations

import hashlib
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from alert_desk.alerts import RAW_KEPT_BYTES, Alert, RefusedAlert, parse_alert
from alert_desk.throttle import FREE_FAILURES
from tests.support.alert_desk import (  # noqa: F401 - database_url and postgres_server are fixtures
    ALICE,
    ALICE_TOKEN,
    BOB,
    BOB_TOKEN,
    PLACES,
    Desk,
    EventListener,
    alert_record,
    database_url,
    desk_command,
    free_port,
    human_review_message,
    module_desk_fixtures,
    postgres_server,
    send_alerts,
    start_desk,
    store_photo,
    wait_until,
)
from tests.support.kafka_io import produce_all, read_all
from transforms.contract import AlertReason, DroneMessage, alert_id_for, encode_alert, parse_message
from transforms.geo import borough_of
from transforms.kafka_settings import KafkaSettings
from transforms.violation_codes import violation_codes

DEADLINE_S = 30.0


topics, desk = module_desk_fixtures("desk")


@pytest.fixture(scope="module")
def stocked_desk(desk: Desk, broker: KafkaSettings, topics: tuple[str, str]) -> list[DroneMessage]:
    """Ten alerts, two per borough, each sent twice, with one record that is no alert at all."""
    messages = [human_review_message(f"drone-{index}", borough) for index, borough in enumerate(list(PLACES) * 2)]
    records = [alert_record(message, index) for index, message in enumerate(messages)]
    produce_all(broker, topics[0], [*records, (None, b"{not an alert"), *records[:5], *records[5:]])
    sent = len(records) * 2 + 1
    wait_until(lambda: desk.status()["next_offsets"].get("0") == sent, DEADLINE_S, f"the desk read all {sent} records")
    return messages


def ok(answer, status: int = 200):
    assert answer.status_code == status, f"{answer.status_code}: {answer.text}"
    return answer.json()


def refusal(answer, status: int) -> str:
    """The one-line reason of a 4xx answer."""
    assert answer.status_code == status, f"expected {status}, got {answer.status_code}: {answer.text}"
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail
    return detail


def a_known_code() -> int:
    return min(code for code in violation_codes() if code != 100)


# Reading alerts.


def test_each_alert_is_listed_once_and_the_record_that_is_no_alert_is_kept_as_refused(desk: Desk, stocked_desk: list[DroneMessage]) -> None:
    listed = desk.alerts()
    ids = [alert["alert_id"] for alert in listed["alerts"]]
    assert sorted(ids) == sorted(alert_id_for(message.message_id) for message in stocked_desk)
    assert listed["total"] == len(stocked_desk) == len(set(ids))
    assert desk.status()["refused_total"] == 1
    raised = [alert["raised_at"] for alert in listed["alerts"]]
    assert raised == sorted(raised, reverse=True), "newest first"


def test_alerts_are_filed_under_their_borough_and_filtered_by_it(desk: Desk, stocked_desk: list[DroneMessage]) -> None:
    for borough in PLACES:
        listed = desk.alerts(borough=borough)["alerts"]
        assert len(listed) == 2 and {alert["borough"] for alert in listed} == {borough}
    assert desk.alerts(borough="unknown")["alerts"] == []


def test_the_list_comes_a_page_at_a_time_and_out_of_range_pages_are_refused(desk: Desk, stocked_desk: list[DroneMessage]) -> None:
    everything = desk.alerts()
    pages = [desk.alerts(offset=offset, limit=4) for offset in range(0, everything["total"], 4)]
    assert [alert for page in pages for alert in page["alerts"]] == everything["alerts"]
    assert {page["total"] for page in pages} == {everything["total"]}
    assert desk.alerts(offset=everything["total"])["alerts"] == []
    for bad in [{"offset": -1}, {"offset": 2**31}, {"offset": "ten"}, {"limit": 0}, {"limit": 1001}]:
        assert list(bad)[0] in refusal(desk.call("GET", "/api/alerts", params=bad), 422)


def test_resolving_publishes_the_corrected_message_and_records_who_and_when(
    desk: Desk, stocked_desk: list[DroneMessage], broker: KafkaSettings, topics: tuple[str, str]
) -> None:
    original = stocked_desk[0]
    alert_id = alert_id_for(original.message_id)
    acknowledged = ok(desk.call("POST", f"/api/alerts/{alert_id}/ack", token=BOB_TOKEN))
    assert acknowledged["status"] == "acknowledged" and acknowledged["acknowledged_by"] == BOB

    code = a_known_code()
    answer = ok(desk.call("POST", f"/api/alerts/{alert_id}/resolve", json={"violation_code": code}))

    assert answer["alert"]["status"] == "resolved"
    assert answer["alert"]["resolved_by"] == ALICE and answer["alert"]["resolved_code"] == code
    assert answer["alert"]["resolved_at"] >= answer["alert"]["acknowledged_at"]
    corrections = [
        record for record in read_all(broker, topics[1]) if record.offset == answer["offset"] and record.partition == answer["partition"]
    ]
    assert len(corrections) == 1
    assert corrections[0].key == original.drone_id.encode()
    correction = parse_message(corrections[0].value)
    assert isinstance(correction, DroneMessage), correction
    assert correction.resolves_message_id == original.message_id
    assert correction.violation_code == code and correction.message_id != original.message_id
    assert (correction.drone_id, correction.image_id, correction.timestamp) == (original.drone_id, original.image_id, original.timestamp)
    assert (correction.latitude, correction.longitude) == (original.latitude, original.longitude)
    assert [alert["alert_id"] for alert in desk.alerts(status="resolved")["alerts"]] == [alert_id]
    trail = ok(desk.call("GET", f"/api/alerts/{alert_id}"))["audit"]
    assert [(entry["action"], entry["operator"]) for entry in trail] == [("resolve", ALICE), ("acknowledge", BOB)]


def test_bad_requests_get_a_clear_reason(desk: Desk, stocked_desk: list[DroneMessage]) -> None:
    resolved_id = alert_id_for(stocked_desk[1].message_id)
    ok(desk.call("POST", f"/api/alerts/{resolved_id}/resolve", json={"violation_code": a_known_code()}))
    open_id = alert_id_for(stocked_desk[2].message_id)
    unknown = next((code for code in range(1, 100) if code not in violation_codes()), 0)

    assert "cannot be resolved twice" in refusal(
        desk.call("POST", f"/api/alerts/{resolved_id}/resolve", json={"violation_code": a_known_code()}), 409
    )
    assert "stale" in refusal(desk.call("POST", f"/api/alerts/{resolved_id}/ack"), 409)
    assert f"unknown violation code {unknown}" in refusal(
        desk.call("POST", f"/api/alerts/{open_id}/resolve", json={"violation_code": unknown}), 422
    )
    assert "100" in refusal(desk.call("POST", f"/api/alerts/{open_id}/resolve", json={"violation_code": 100}), 422)
    assert "violation_code" in refusal(desk.call("POST", f"/api/alerts/{open_id}/resolve", json={"violation_code": "21"}), 422)
    assert "not valid JSON" in refusal(
        desk.call("POST", f"/api/alerts/{open_id}/resolve", content=b"{", headers={"content-type": "application/json"}),
        422,
    )
    assert "no alert" in refusal(desk.call("POST", "/api/alerts/no-such-alert/ack"), 404)
    assert "unknown status" in refusal(desk.call("GET", "/api/alerts", params={"status": "closed"}), 422)
    assert "unknown borough" in refusal(desk.call("GET", "/api/alerts", params={"borough": "Hoboken"}), 422)
    assert "larger than" in refusal(
        desk.call("POST", f"/api/alerts/{open_id}/resolve", content=b" " * 20_000, headers={"content-type": "application/json"}), 413
    )
    assert "cross-site" in refusal(desk.call("POST", f"/api/alerts/{open_id}/ack", headers={"Origin": "https://elsewhere.example"}), 403)
    ok(desk.call("POST", f"/api/alerts/{open_id}/ack"))
    assert "already acknowledged" in refusal(desk.call("POST", f"/api/alerts/{open_id}/ack"), 409)
    assert desk.alerts(status="open,acknowledged")["counts"]["resolved"] >= 1


def test_without_signing_in_every_api_call_is_401(desk: Desk, stocked_desk: list[DroneMessage]) -> None:
    alert_id = alert_id_for(stocked_desk[3].message_id)
    for method, path in [
        ("GET", "/api/alerts"),
        ("GET", "/api/events"),
        ("GET", f"/api/alerts/{alert_id}"),
        ("POST", f"/api/alerts/{alert_id}/ack"),
        ("POST", f"/api/alerts/{alert_id}/resolve"),
    ]:
        assert "sign in" in refusal(desk.call(method, path, token=None), 401)
        assert "not valid" in refusal(desk.call(method, path, token="wrong-token-0123456789"), 401)
    assert desk.call("GET", "/", token=None).headers["location"] == "/signin"
    assert desk.alerts()["counts"]["open"] >= 1, "nothing was changed"


def test_browser_sign_in_gives_a_strict_http_only_cookie_and_needs_a_same_origin(desk: Desk, stocked_desk: list[DroneMessage]) -> None:
    assert "not valid" in desk.call("POST", "/signin", token=None, data={"token": "nope"}).text
    signed_in = desk.call("POST", "/signin", token=None, data={"token": ALICE_TOKEN})
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
    cookie = signed_in.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and ALICE_TOKEN not in cookie
    session = cookie.split(";")[0]
    same_site = {"Cookie": session, "Origin": desk.url}
    assert ok(desk.call("GET", "/api/me", token=None, headers={"Cookie": session})) == {"operator": ALICE}
    alert_id = alert_id_for(stocked_desk[4].message_id)
    assert "Origin" in refusal(desk.call("POST", f"/api/alerts/{alert_id}/ack", token=None, headers={"Cookie": session}), 403)
    assert "cross-site" in refusal(
        desk.call("POST", f"/api/alerts/{alert_id}/ack", token=None, headers={"Cookie": session, "Origin": "http://127.0.0.1:1"}), 403
    )
    assert ok(desk.call("POST", f"/api/alerts/{alert_id}/ack", token=None, headers=same_site))["acknowledged_by"] == ALICE
    assert desk.call("POST", "/signout", token=None, headers=same_site).status_code == 303
    assert desk.call("GET", "/api/me", token=None, headers={"Cookie": session}).status_code == 401
    actions = [entry["action"] for entry in ok(desk.call("GET", "/api/audit"))]
    assert "sign_in" in actions and "sign_out" in actions


def test_a_request_naming_another_host_is_refused_but_the_health_probe_is_not(desk: Desk) -> None:
    """A name that resolves to the desk (DNS rebinding) is not the desk: it gets 421, and no data."""
    assert "does not answer for host 'evil.example'" in refusal(desk.call("GET", "/api/me", headers={"Host": "evil.example"}), 421)
    assert desk.call("GET", "/api/me", headers={"Host": "localhost"}).status_code == 200
    assert desk.call("GET", "/healthz", token=None, headers={"Host": "10.9.8.7:8080"}).status_code == 200


def test_the_event_stream_carries_new_alerts_and_changes_live(
    desk: Desk, stocked_desk: list[DroneMessage], broker: KafkaSettings, topics: tuple[str, str]
) -> None:
    listener = EventListener(desk)
    try:
        fresh = [human_review_message(f"live-{index}", "Queens") for index in range(5)]
        send_alerts(broker, topics[0], fresh + fresh[:2])
        wanted = {alert_id_for(message.message_id) for message in fresh}
        wait_until(lambda: wanted <= {alert["alert_id"] for alert in listener.named("alert")}, DEADLINE_S, "five alert events")
        some_id = sorted(wanted)[0]
        ok(desk.call("POST", f"/api/alerts/{some_id}/ack"))
        update = wait_until(lambda: listener.named("update"), DEADLINE_S, "an update event")[0]
        assert update["alert"]["alert_id"] == some_id and update["previous_status"] == "open"
        assert len([alert for alert in listener.named("alert") if alert["alert_id"] in wanted]) == 5, "no repeats"
    finally:
        listener.close()


def test_a_pages_event_stream_ends_when_its_session_is_signed_out(
    desk: Desk, stocked_desk: list[DroneMessage], broker: KafkaSettings, topics: tuple[str, str]
) -> None:
    session = desk.call("POST", "/signin", token=None, data={"token": ALICE_TOKEN}).headers["set-cookie"].split(";")[0]
    listener = EventListener(desk, cookie=session)
    try:
        assert desk.call("POST", "/signout", token=None, headers={"Cookie": session, "Origin": desk.url}).status_code == 303
        after = human_review_message("after-sign-out", "Queens")
        send_alerts(broker, topics[0], [after])
        wait_until(
            lambda: alert_id_for(after.message_id) in {alert["alert_id"] for alert in desk.alerts()["alerts"]},
            DEADLINE_S,
            "the desk files the alert sent after the sign-out",
        )
        assert listener.ended(DEADLINE_S), "the stream of a signed-out page stayed open"
        assert alert_id_for(after.message_id) not in {alert["alert_id"] for alert in listener.named("alert")}
    finally:
        listener.close()


# Photos.


def test_an_alerts_photo_is_served_behind_the_sign_in_and_a_missing_one_is_flagged(
    desk: Desk, stocked_desk: list[DroneMessage], broker: KafkaSettings, topics: tuple[str, str]
) -> None:
    pictured, unpictured = human_review_message("drone-photo", "Bronx"), human_review_message("drone-nophoto", "Queens")
    stored = store_photo(desk.lake, pictured)
    send_alerts(broker, topics[0], [pictured, unpictured])
    ids = {alert_id_for(message.message_id): message for message in (pictured, unpictured)}

    def both_listed() -> list[dict] | None:
        listed = [alert for alert in desk.alerts()["alerts"] if alert["alert_id"] in ids]
        return listed if len(listed) == 2 else None

    shown = {ids[alert["alert_id"]].drone_id: alert for alert in wait_until(both_listed, DEADLINE_S, "both alerts")}
    assert shown["drone-photo"]["photo_missing"] is False and shown["drone-nophoto"]["photo_missing"] is True
    url = shown["drone-photo"]["photo_url"]
    assert url == f"/api/photos/{pictured.image_id}"
    detail = ok(desk.call("GET", f"/api/alerts/{alert_id_for(unpictured.message_id)}"))["alert"]
    assert detail["photo_missing"] is True and detail["photo_url"] == f"/api/photos/{unpictured.image_id}"

    served = desk.call("GET", url)
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg" and served.content == stored
    assert "sign in" in refusal(desk.call("GET", url, token=None), 401)
    assert "not valid" in refusal(desk.call("GET", url, token="wrong-token-0123456789"), 401)
    assert "not in the store" in refusal(desk.call("GET", shown["drone-nophoto"]["photo_url"]), 404)
    assert "no alert has the photo" in refusal(desk.call("GET", "/api/photos/img-of-no-alert"), 404)


@pytest.mark.parametrize("image_id", ["%2E%2E", ".hidden", "-x", "img%20one", "img%0A", "i" * 129, "img%C3%A9"])
def test_a_malformed_image_id_is_refused_before_any_lookup(desk: Desk, image_id: str) -> None:
    """The contract's rule, checked first: 422, never the 404 of a lookup in the store or the lake."""
    assert "not an image id" in refusal(desk.call("GET", f"/api/photos/{image_id}"), 422)


def test_a_path_in_a_photo_request_never_reaches_the_lake(desk: Desk) -> None:
    desk.lake.mkdir(exist_ok=True)
    (desk.lake / "secret.jpg").write_bytes(b"\xff\xd8 not for operators")
    for path in ("/api/photos/..%2Fsecret", "/api/photos/%2E%2E%2F%2E%2E%2Fsecret", "/api/photos/..%5Csecret"):
        answer = desk.call("GET", path)
        assert 400 <= answer.status_code < 500 and b"not for operators" not in answer.content, (path, answer.status_code)


def test_openapi_documents_the_alert_calls(desk: Desk) -> None:
    paths = ok(desk.call("GET", "/api/openapi.json", token=None))["paths"]
    assert {"/api/alerts", "/api/alerts/{alert_id}/ack", "/api/alerts/{alert_id}/resolve", "/api/photos/{image_id}"} <= set(paths)


# Stopping and starting again.


def test_a_restarted_desk_neither_loses_nor_repeats_an_alert(
    broker: KafkaSettings, topic_name: str, tmp_path: Path, database_url: str
) -> None:
    alerts_topic, messages_topic = topic_name, f"{topic_name}-corrections"
    database = tmp_path / "alerts.db"
    first_batch = [human_review_message(f"drone-{index}") for index in range(30)]
    send_alerts(broker, alerts_topic, first_batch)
    desk = start_desk(broker, database, alerts_topic, messages_topic, database_url=database_url)
    wait_until(lambda: desk.alerts()["total"] == 30, DEADLINE_S, "30 alerts stored")
    kept_id = alert_id_for(first_batch[0].message_id)
    ok(desk.call("POST", f"/api/alerts/{kept_id}/resolve", json={"violation_code": a_known_code()}))
    assert desk.stop(signal.SIGTERM) == 0, desk.log()

    second_batch = [human_review_message(f"drone-{index}") for index in range(20)]
    send_alerts(broker, alerts_topic, second_batch + first_batch[:10])
    desk = start_desk(broker, database, alerts_topic, messages_topic, database_url=database_url)
    wait_until(lambda: desk.status()["next_offsets"].get("0") == 60, DEADLINE_S, "all 60 records read")
    status = desk.status()
    assert status["consumed_since_start"] == 30, "resumed after the stored offset, not from the start"
    listed = desk.alerts()["alerts"]
    assert len(listed) == 50 == len({alert["alert_id"] for alert in listed})
    assert {alert["alert_id"]: alert["status"] for alert in listed}[kept_id] == "resolved"
    desk.stop(signal.SIGKILL)

    third_batch = [human_review_message(f"drone-{index}") for index in range(5)]
    send_alerts(broker, alerts_topic, third_batch)
    desk = start_desk(broker, database, alerts_topic, messages_topic, database_url=database_url)
    try:
        wait_until(lambda: desk.alerts()["total"] == 55, DEADLINE_S, "55 alerts after a kill and a restart")
        assert desk.status()["consumed_since_start"] == 5
    finally:
        assert desk.stop() == 0, desk.log()


def test_ctrl_c_twice_stops_the_desk_quietly_with_exit_0(broker: KafkaSettings, topic_name: str, tmp_path: Path) -> None:
    """The terminal's Ctrl-C and the demo's both reach the desk: the second while it is stopping."""
    desk = start_desk(broker, tmp_path / "alerts.db", topic_name, f"{topic_name}-corrections")
    listener = EventListener(desk)  # an open page, whose stream the desk closes first when it stops
    try:
        desk.process.send_signal(signal.SIGINT)
        assert listener.ended(DEADLINE_S), "the first Ctrl-C did not start the stop"
        assert desk.stop(signal.SIGINT) == 0, desk.log()
    finally:
        listener.close()
    output = desk.log()  # the desk's stderr and stdout
    assert "Traceback" not in output and "CancelledError" not in output, output


def test_a_connection_that_never_finishes_its_headers_is_closed_and_connections_beyond_the_limit_get_503(
    broker: KafkaSettings, topic_name: str, tmp_path: Path
) -> None:
    desk = start_desk(
        broker, tmp_path / "alerts.db", topic_name, f"{topic_name}-corrections", "--header_timeout_s=1", "--max_connections=3"
    )
    pages = []
    try:
        host, port = desk.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=DEADLINE_S) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
            started = time.monotonic()
            assert slow.recv(1024) == b"", "the desk answered headers that never ended"
            assert time.monotonic() - started < DEADLINE_S / 2
        pages = [EventListener(desk) for _ in range(2)]  # two open pages: two connections held
        refused = desk.call("GET", "/api/me")
        assert refused.status_code == 503, refused.text
        pages.pop().close()
        wait_until(lambda: desk.call("GET", "/api/me").status_code == 200, DEADLINE_S, "a connection is free again")
    finally:
        for page in pages:
            page.close()
        assert desk.stop() == 0, desk.log()


def test_failed_sign_ins_are_audited_and_a_client_that_keeps_failing_must_wait(
    broker: KafkaSettings, topic_name: str, tmp_path: Path
) -> None:
    desk = start_desk(broker, tmp_path / "alerts.db", topic_name, f"{topic_name}-corrections")
    try:
        answers = []
        while 429 not in [answer.status_code for answer in answers] and len(answers) < 20:  # the waits double
            answers.append(desk.call("POST", "/signin", token=None, data={"token": "guess-" * 4}))
        codes = [answer.status_code for answer in answers]
        assert codes[:FREE_FAILURES] == [401] * FREE_FAILURES and codes[-1] == 429, codes
        assert int(answers[-1].headers["retry-after"]) >= 1 and "Too many failed sign-ins" in answers[-1].text
        failed = [entry for entry in ok(desk.call("GET", "/api/audit")) if entry["action"] == "sign_in_failed"]
        assert [(entry["operator"], entry["detail"]) for entry in failed] == [("-", "client=127.0.0.1")] * codes.count(401)
        assert desk.call("GET", "/api/me").status_code == 200, "a script's bearer token is not held up"
    finally:
        assert desk.stop() == 0, desk.log()


# Start-up.


def test_without_a_configured_token_one_is_generated_and_printed_once(broker: KafkaSettings, topic_name: str, tmp_path: Path) -> None:
    desk = start_desk(broker, tmp_path / "alerts.db", topic_name, f"{topic_name}-corrections", tokens=())
    try:
        wait_until(lambda: "shown once" in desk.log(), 10, "the generated token is printed")
        lines = [line for line in desk.log().splitlines() if "shown once" in line]
        assert len(lines) == 1
        token = lines[0].rsplit(" ", 1)[1]
        assert ok(desk.call("GET", "/api/me", token=token)) == {"operator": "operator"}
    finally:
        desk.stop()


def test_tokens_can_come_from_the_environment_and_are_kept_only_as_hashes(broker: KafkaSettings, topic_name: str, tmp_path: Path) -> None:
    carol_token = "carol-token-5d2e8f9a0b1c"
    dave_hash = hashlib.sha256(b"dave-token-1a2b3c4d5e6f").hexdigest()
    desk = start_desk(
        broker,
        tmp_path / "alerts.db",
        topic_name,
        f"{topic_name}-corrections",
        tokens=(f"dave=sha256:{dave_hash}",),
        token_variable=f"carol={carol_token}",
    )
    try:
        assert ok(desk.call("GET", "/api/me", token=carol_token)) == {"operator": "carol"}
        assert ok(desk.call("GET", "/api/me", token="dave-token-1a2b3c4d5e6f")) == {"operator": "dave"}
        assert "shown once" not in desk.log()
    finally:
        desk.stop()
    assert all(carol_token.encode() not in stored.read_bytes() for stored in tmp_path.glob("alerts.db*"))


def test_bad_configuration_an_unreachable_database_and_an_absent_broker_end_in_one_line(tmp_path: Path) -> None:
    nowhere = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    no_database = f"postgresql://desk:hunter2-secret@127.0.0.1:{free_port()}/alerts"
    cases = {
        "shorter than": ["--token", "alice=short"],
        "sqlite:///FILE or postgresql://": ["--db", "mysql://db/alerts"],
        "PostgreSQL at postgresql://desk:***@": ["--db", no_database],
        "no Kafka broker answered": ["--broker_timeout", "1"],
    }
    for expected, flags in cases.items():
        command = desk_command(
            nowhere, f"sqlite:///{tmp_path / 'alerts.db'}", free_port(), "a", "m", "--token", f"{ALICE}={ALICE_TOKEN}", *flags
        )
        finished = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert finished.returncode == 2, finished.stderr
        assert expected in finished.stderr and len(finished.stderr.strip().splitlines()) == 1, finished.stderr
        assert "hunter2" not in finished.stdout + finished.stderr


def test_the_desk_says_at_once_which_broker_it_waits_for_and_exits_2_after_the_broker_timeout(tmp_path: Path) -> None:
    nowhere = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    command = desk_command(
        nowhere, f"sqlite:///{tmp_path / 'alerts.db'}", free_port(), "a", "m", "--token", f"{ALICE}={ALICE_TOKEN}", "--broker_timeout", "4"
    )
    finished = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert finished.stderr.splitlines() == [
        f"alert desk: waiting up to 4 s for a Kafka broker at {nowhere.bootstrap_servers}; none answers yet "
        "(start one with `python -m runners.local up`)",
        f"alert desk: no Kafka broker answered at {nowhere.bootstrap_servers} within 4 s (--broker_timeout); "
        "start one with `python -m runners.local up`",
    ]


# The pure parts.


def test_the_desk_files_a_decoded_alert_under_its_borough_and_topic_position() -> None:
    """The format's rules are tested with the contract; here, what the desk adds to them."""
    message = human_review_message("drone-1", "Brooklyn")
    parsed = parse_alert(encode_alert(message, message.timestamp, 3, 7), 0, 11)
    assert isinstance(parsed, Alert) and parsed.message == message
    assert (parsed.borough, parsed.source_partition, parsed.source_offset) == ("Brooklyn", 0, 11)
    oversize = b"{" + b" " * 70_000
    refused = parse_alert(oversize, 2, 5)
    assert isinstance(refused, RefusedAlert) and refused.reason == AlertReason.OVERSIZE
    assert (refused.source_partition, refused.source_offset, refused.raw) == (2, 5, oversize[:RAW_KEPT_BYTES])


def test_boroughs_come_from_the_bundled_outlines() -> None:
    for borough, (latitude, longitude) in PLACES.items():
        assert borough_of(latitude, longitude) == borough
    assert borough_of(40.7440, -74.0324) is None, "Hoboken is not New York City"
