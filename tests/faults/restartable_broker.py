"""The broker the fault scenarios run on, which they restart between rounds.

Apache Kafka keeps its log and the groups' committed offsets on disk, so a restart is a
real fault for every client (connections drop, coordinators reload, idempotent producers
meet a broker that rebuilt its producer state) while the data must survive it. It is
restarted on the same port with the same data folder, sometimes after a clean SIGTERM and
sometimes after a SIGKILL. Tansu keeps everything in memory: restarting it would erase
the ground truth, so where Java and Maven are missing the scenarios run on Tansu without
restarts.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from runners.brokers import broker_command, free_port
from runners.local import start, stop
from runners.workspace import using_home
from transforms.kafka_settings import KafkaSettings

KILL_WAIT_S = 30.0


class FaultBroker:
    """A broker's address and, where it keeps state, how to restart it."""

    def __init__(self, settings: KafkaSettings, engine: str):
        self.settings = settings
        self.engine = engine

    @property
    def restartable(self) -> bool:
        return False

    def restart(self, hard: bool) -> str:
        raise NotImplementedError(f"the {self.engine} broker keeps no state to restart with")

    def close(self) -> None:
        """Nothing to stop: a broker this object did not start belongs to its own fixture."""


class RestartableKafka(FaultBroker):
    """Apache Kafka from its Maven jars, with its data under ``home``, restartable on one port."""

    def __init__(self, home: Path):
        self._home = home
        self._port = free_port()
        self._process: subprocess.Popen | None = None
        super().__init__(KafkaSettings(f"127.0.0.1:{self._port}"), "kafka")
        self._start()

    @property
    def restartable(self) -> bool:
        return True

    def restart(self, hard: bool) -> str:
        """Stop the broker with SIGKILL (``hard``) or SIGTERM and start it again on the same port; say which."""
        assert self._process is not None
        if hard:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(KILL_WAIT_S)
        else:
            stop(self._process)
        self._start()
        return "SIGKILL" if hard else "SIGTERM"

    def close(self) -> None:
        if self._process is not None:
            stop(self._process)

    def _start(self) -> None:
        with using_home(self._home):
            command = broker_command("kafka", self._port)
        self._process = start(command, self._home / "kafka.log")
