"""The processes a fault scenario starts and kills: real ``python -m …`` commands with their own logs.

Every child is started through :class:`Children`, which remembers it so that whatever a
failed test leaves running is killed by its own pid at teardown, and writes each start's
output to its own log file, so the tail of the right log can go into a failure message.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tests.faults.ledger import ScenarioRecord
from tests.support.processes import REPO_ROOT, child_env

POLL_S = 0.02
STOP_DEADLINE_S = 60.0
LOG_TAIL_CHARS = 3000


@dataclass
class Child:
    """One started process and the log its stdout and stderr go to."""

    name: str
    process: subprocess.Popen
    log: Path
    killed: bool = False

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> bool:
        """SIGKILL to its whole process group (a streaming job's Prism dies with it, as in a crash of
        its machine), and wait for it to be gone; True when it was still running (a fault was injected)."""
        if not self.alive:
            return False
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(self.process.pid) == self.process.pid:
                os.killpg(self.process.pid, signal.SIGKILL)
            else:  # adopted: started by another helper, in our group
                self.process.send_signal(signal.SIGKILL)
        self.process.wait(STOP_DEADLINE_S)
        self.killed = True
        return True

    def interrupt(self) -> int:
        """SIGINT, the clean stop every DroneCop tool honours; its exit status."""
        if self.alive:
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(STOP_DEADLINE_S)

    def tail(self) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return f"--- {self.log.name} ---\n{text[-LOG_TAIL_CHARS:]}"


@dataclass
class Children:
    """Starts children from the repository root and kills the ones still running at teardown."""

    log_dir: Path
    started: list[Child] = field(default_factory=list)

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> Child:
        log = self.log_dir / f"{name}-{sum(child.name == name for child in self.started) + 1}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env or child_env(), stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        child = Child(name, process, log)
        self.started.append(child)
        return child

    def adopt(self, name: str, process: subprocess.Popen, log: Path) -> Child:
        """Track a process another helper started (the alert desk), so teardown kills it too."""
        child = Child(name, process, log)
        self.started.append(child)
        return child

    def kill_all(self) -> None:
        for child in self.started:
            child.kill()


class Role:
    """A part of the system a scenario keeps running: killed at random, started again whenever found gone.

    A child that failed without being killed (a follower that gave up while the broker
    restarted under it, say) is recorded as a crash, with its exit status and log.
    """

    def __init__(self, name: str, start: Callable[[], Child], record: ScenarioRecord):
        self.name = name
        self._start = start
        self._record = record
        self.current: Child | None = None

    def ensure(self) -> Child:
        current = self.current
        if current is None or not current.alive:
            if current is not None and not current.killed and current.process.returncode != 0:
                self._record.crash(f"{self.name} exited by itself with {current.process.returncode}\n{current.tail()}")
            self.current = current = self._start()
        return current

    def kill(self, when: str) -> None:
        if self.current is not None and self.current.kill():
            self._record.fault(self.name, f"SIGKILL {self.name} {when}")


def wait_for(condition: Callable[[], object], deadline_s: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail saying ``what`` was awaited if the deadline passes first."""
    if not holds_within(condition, deadline_s):
        raise AssertionError(f"not within {deadline_s:.0f} s: {what}")


def holds_within(condition: Callable[[], object], deadline_s: float) -> bool:
    """Poll ``condition`` until it holds (True) or the deadline passes (False): for waits that report, not fail."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True
