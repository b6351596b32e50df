"""Which ``Host`` names the desk answers for."""

from __future__ import annotations

import pytest

from alert_desk.http_guards import LOOPBACK_NAMES, allowed_hosts, host_name


@pytest.mark.parametrize(
    ("bind_host", "public_url", "hosts"),
    [
        ("127.0.0.1", None, LOOPBACK_NAMES),
        ("127.0.0.1", "https://desk.nypd.example/", LOOPBACK_NAMES | {"desk.nypd.example"}),
        ("10.1.2.3", None, {"10.1.2.3"}),
        ("0.0.0.0", "https://Desk.NYPD.example:8443", {"desk.nypd.example"}),
        ("0.0.0.0", None, None),
        ("::", None, None),
    ],
)
def test_the_desk_answers_for_the_address_it_serves_and_its_public_name(
    bind_host: str, public_url: str | None, hosts: set[str] | None
) -> None:
    assert allowed_hosts(bind_host, public_url) == (None if hosts is None else frozenset(hosts))


@pytest.mark.parametrize(
    ("header", "name"),
    [("desk.example:8080", "desk.example"), ("DESK.example", "desk.example"), ("[::1]:8080", "::1"), ("::1", "::1"), ("", "")],
)
def test_a_host_header_names_its_host_without_the_port(header: str, name: str) -> None:
    assert host_name(header) == name
