"""The running desk: its configuration and the parts every route uses, started and stopped together.

One :class:`Desk` per application, kept on ``app.state`` and handed to routes by
:func:`alert_desk.dependencies.desk`. It owns the store, the alert reader, the correction
publisher, the live-event broadcaster and the photo lookup, and says how an alert is shown
and how a change is announced, so every route shows and announces alike.
"""

import asyncio
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from alert_desk.auth import Operators
from alert_desk.consumer import AlertConsumer
from alert_desk.corrections import CorrectionPublisher
from alert_desk.events import Broadcaster, Event
from alert_desk.photos import Photos, photo_url
from alert_desk.store import Store, Transition
from alert_desk.throttle import SignInThrottle
from transforms.kafka_settings import DRONE_ALERTS, DRONE_MESSAGES, KafkaSettings


@dataclass(frozen=True)
class DeskConfig:
    """Everything the desk is started with; built from the command line by ``__main__``."""

    kafka: KafkaSettings
    database_url: str = field(repr=False)  # may hold a password
    operators: Operators
    alerts_topic: str = DRONE_ALERTS
    messages_topic: str = DRONE_MESSAGES
    max_body_bytes: int = 16 * 1024
    session_hours: float = 12.0
    secure_cookies: bool = False
    lake_root: str = "./lake"  # where the drones store their photos, as the pipelines' --output
    hosts: frozenset[str] | None = None  # the Host names requests may give; None for any


class KeyedLocks:
    """One lock per key, kept only while someone holds or waits for it.

    Two resolutions of one alert must not both publish a correction, but resolving one
    alert (which waits for the broker) must not hold up resolving another.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def holding(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                users = self._locks[key][1] - 1
                if users:
                    self._locks[key] = (lock, users)
                else:
                    del self._locks[key]

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)


class Desk:
    """The desk's parts; :meth:`start` and :meth:`stop` are the application's lifespan."""

    def __init__(self, config: DeskConfig) -> None:
        self.config = config
        self.broadcaster = Broadcaster()
        self.photos = Photos(config.lake_root)
        self.resolving = KeyedLocks()
        self.sign_ins = SignInThrottle()
        self._store: Store | None = None
        self._publisher: CorrectionPublisher | None = None
        self._consumer: AlertConsumer | None = None

    async def start(self) -> None:
        self._store = await asyncio.to_thread(Store.open, self.config.database_url)
        self._publisher = CorrectionPublisher(self.config.kafka, self.config.messages_topic)
        self._consumer = AlertConsumer(self.config.kafka, self.config.alerts_topic, self._store, self.on_new_alerts)
        self.broadcaster.bind(asyncio.get_running_loop())
        self._consumer.start()

    async def stop(self) -> None:
        self.broadcaster.close()
        if self._consumer is not None:
            await asyncio.to_thread(self._consumer.stop)
        if self._publisher is not None:
            await asyncio.to_thread(self._publisher.close)
        if self._store is not None:
            self._store.close()

    @property
    def store(self) -> Store:
        assert self._store is not None, "the desk has not started"
        return self._store

    @property
    def publisher(self) -> CorrectionPublisher:
        assert self._publisher is not None, "the desk has not started"
        return self._publisher

    @property
    def consumer(self) -> AlertConsumer:
        assert self._consumer is not None, "the desk has not started"
        return self._consumer

    def shown(self, alert: dict[str, Any]) -> dict[str, Any]:
        """An alert as the API shows it: the stored row, where its photo is and whether the store has it."""
        missing = self.photos.is_missing(alert["image_id"], alert["observed_at"])
        return {**alert, "photo_url": photo_url(alert["image_id"]), "photo_missing": missing}

    def announced(self, transition: Transition) -> dict[str, Any]:
        """The changed alert as shown, once every open page has been told."""
        alert = self.shown(transition.alert)
        self.broadcaster.publish([Event("update", {"alert": alert, "previous_status": transition.previous_status})])
        return alert

    def on_new_alerts(self, alerts: list[dict[str, Any]]) -> None:
        self.broadcaster.publish([Event("alert", self.shown(alert)) for alert in alerts])
