"""Failed sign-ins slow a client down: a few are free, then each waits twice as long as the last.

A token is long and random, so guessing one is hopeless anyway; the back-off keeps a guesser
from loading the desk and its audit trail. Kept per client address, for the most recent
:data:`REMEMBERED_CLIENTS`, in memory: a restart forgives.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable

FREE_FAILURES = 5
FIRST_WAIT_S = 1.0
LONGEST_WAIT_S = 300.0
REMEMBERED_CLIENTS = 10_000


def backoff_s(failures: int, free: int = FREE_FAILURES, first: float = FIRST_WAIT_S, longest: float = LONGEST_WAIT_S) -> float:
    """How long a client with ``failures`` failed sign-ins in a row waits after the last one."""
    return 0.0 if failures < free else min(first * 2 ** (failures - free), longest)


class SignInThrottle:
    """Failed sign-ins in a row per client, and how long each must still wait."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, remembered: int = REMEMBERED_CLIENTS) -> None:
        self._clock = clock
        self._remembered = remembered
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait_s(self, client: str) -> float:
        """Seconds before ``client`` may try again; 0 when it may now."""
        with self._lock:
            failures, last = self._failures.get(client, (0, 0.0))
        return max(0.0, backoff_s(failures) - (self._clock() - last)) if failures else 0.0

    def failed(self, client: str) -> None:
        with self._lock:
            failures, _ = self._failures.pop(client, (0, 0.0))
            self._failures[client] = (failures + 1, self._clock())
            while len(self._failures) > self._remembered:
                self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)
