"""The desk's per-alert resolve locks: one alert's resolutions queue, other alerts' go on."""

from __future__ import annotations

import threading

from alert_desk.desk import KeyedLocks


def test_a_held_alert_does_not_hold_up_another_and_its_own_second_resolution_waits() -> None:
    locks = KeyedLocks()
    inside, release, second_done = threading.Event(), threading.Event(), threading.Event()

    def resolve_slowly() -> None:
        with locks.holding("alert-a"):
            inside.set()
            release.wait()

    def resolve_again() -> None:
        with locks.holding("alert-a"):
            second_done.set()

    first = threading.Thread(target=resolve_slowly)
    first.start()
    inside.wait()
    with locks.holding("alert-b"):  # taken at once while alert-a is held
        pass
    second = threading.Thread(target=resolve_again)
    second.start()
    assert not second_done.wait(0.2), "a second resolution of the same alert ran while the first held it"
    release.set()
    first.join()
    second.join()
    assert second_done.is_set()
    assert len(locks) == 0, "no lock is kept for alerts no one is resolving"
