"""The sign-in back-off, on a clock the test moves."""

from __future__ import annotations

from alert_desk.throttle import FREE_FAILURES, LONGEST_WAIT_S, SignInThrottle, backoff_s


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_few_failures_are_free_then_each_waits_twice_as_long_up_to_a_limit() -> None:
    assert [backoff_s(failures) for failures in range(FREE_FAILURES + 4)] == [0.0] * FREE_FAILURES + [1.0, 2.0, 4.0, 8.0]
    assert backoff_s(100) == LONGEST_WAIT_S


def test_a_client_waits_out_its_back_off_and_a_success_forgives_it() -> None:
    clock = Clock()
    throttle = SignInThrottle(clock)
    for _ in range(FREE_FAILURES):
        assert throttle.wait_s("10.0.0.1") == 0.0
        throttle.failed("10.0.0.1")
    assert throttle.wait_s("10.0.0.1") == 1.0 and throttle.wait_s("10.0.0.2") == 0.0
    clock.now += 0.75
    assert throttle.wait_s("10.0.0.1") == 0.25
    clock.now += 0.25
    assert throttle.wait_s("10.0.0.1") == 0.0
    throttle.failed("10.0.0.1")
    assert throttle.wait_s("10.0.0.1") == 2.0
    throttle.succeeded("10.0.0.1")
    assert throttle.wait_s("10.0.0.1") == 0.0


def test_only_the_most_recent_clients_are_remembered() -> None:
    throttle = SignInThrottle(Clock(), remembered=2)
    for client in ("a", "b", "c"):
        for _ in range(FREE_FAILURES):
            throttle.failed(client)
    assert [throttle.wait_s(client) > 0 for client in ("a", "b", "c")] == [False, True, True]
