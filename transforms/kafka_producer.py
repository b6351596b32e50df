"""Sending to Kafka, and knowing what the broker acknowledged: the one producer every sender uses.

The simulator, the CSV loader, the pipelines' alert and dead-letter sinks and the desk's
corrections each send differently (fire and count, an acknowledged prefix, a bundle, one
message and its offset), but all through :class:`AcknowledgedProducer`. It is made from
:meth:`KafkaSettings.producer_config` (idempotent, ``acks=all``), waits for room when
librdkafka's queue is full instead of failing, tells a delivery the broker refused from a
producer that can send nothing more (:func:`producer_is_dead`: a new one must take over), and
puts what went wrong in one line.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from transforms.kafka_settings import KafkaSettings, producer_is_dead

ROOM_WAIT_S = 0.05  # how long a full queue is served before a send tries again

Delivered = Callable[[Any, Any], None]  # librdkafka's on_delivery(error, message)


class DeliveryFailed(RuntimeError):
    """The broker did not acknowledge what was sent; the message is one line for a person."""


class AcknowledgedProducer:
    """An idempotent producer for one topic that remembers the first refusal and whether it died.

    ``refused``: the first delivery the broker refused (retrying cannot fix it); ``dead``: why
    the producer can send nothing more. Either stays set; the sender decides what follows.
    """

    def __init__(self, settings: KafkaSettings, topic: str, on_error: Callable[[Any], None] | None = None, **overrides: Any) -> None:
        """``on_error`` hears librdkafka's error callbacks (an outage, say) after this producer has read them."""
        from confluent_kafka import Producer

        self.topic = topic
        self._on_error_too = on_error
        self.refused: str | None = None
        self.dead: str | None = None
        self.refusals = 0
        self._producer = Producer(settings.producer_config(error_cb=self._on_error, **overrides))

    def send(
        self,
        key: bytes | None,
        value: bytes,
        *,
        timestamp: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        on_delivery: Delivered | None = None,
        stop: threading.Event | None = None,
        wait: Callable[[float], None] | None = None,
    ) -> bool:
        """Queue one record, waiting for room while the queue is full; False if ``stop`` was set meanwhile.

        ``on_delivery`` hears of the record's fate after this producer has noted a refusal.
        ``wait(seconds)`` is how a full queue is waited on (default :meth:`poll`): a sender that
        watches for stalls or failures while it waits gives its own.
        """
        from confluent_kafka import KafkaException

        extra: dict[str, Any] = {} if timestamp is None else {"timestamp": timestamp}
        if headers:
            extra["headers"] = headers
        report = self._reporter(on_delivery)
        while True:
            try:
                self._producer.produce(self.topic, value, key, on_delivery=report, **extra)
                return True
            except BufferError:
                if stop is not None and stop.is_set():
                    return False
                (wait or self.poll)(ROOM_WAIT_S)
            except KafkaException as error:
                self._note(error.args[0])
                if self.dead is not None:
                    raise DeliveryFailed(f"{self.topic}: the Kafka producer died: {self.dead}") from None
                raise DeliveryFailed(f"{self.topic}: Kafka refused the record: {error.args[0].str()}") from None

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports (and error callbacks) for up to ``timeout`` s."""
        from confluent_kafka import KafkaException

        try:
            self._producer.poll(timeout)
        except KafkaException as error:
            self._note(error.args[0])

    def unacknowledged(self) -> int:
        """Records sent and not yet acknowledged or refused."""
        return len(self._producer)

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for every record's report; how many are still waiting."""
        return self._producer.flush(timeout)

    def acknowledge_all(self, timeout: float) -> None:
        """Return once the broker acknowledged everything sent since the last call; DeliveryFailed if it did
        not in time, or refused any (the refusals are then forgotten: the caller has been told)."""
        remaining = self.flush(timeout)
        refusals, first = self.refusals, self.dead or self.refused
        self.refusals, self.refused = 0, None
        if remaining or refusals or self.dead:
            raise DeliveryFailed(
                f"{self.topic}: {remaining} records unacknowledged, {refusals} refused" + (f" (first: {first})" if first else "")
            )

    def send_and_wait(
        self, key: bytes, value: bytes, timeout: float, what: str = "the record", timestamp: int | None = None
    ) -> tuple[int, int]:
        """Send one record and wait for its acknowledgement: its (partition, offset), or DeliveryFailed.

        Threads may wait at once: each is woken by its own record's report, whoever polls.
        """
        outcome: dict[str, Any] = {}
        delivered = threading.Event()

        def on_delivery(error: Any, record: Any) -> None:
            outcome.update(error=error, record=record)
            delivered.set()

        self.send(key, value, timestamp=timestamp, on_delivery=on_delivery)
        deadline = time.monotonic() + timeout
        while not delivered.is_set() and time.monotonic() < deadline:
            self.poll(ROOM_WAIT_S)
        if not delivered.is_set():
            raise DeliveryFailed(f"the broker did not acknowledge {what} within {timeout:.0f} s")
        if outcome["error"] is not None:
            raise DeliveryFailed(f"the broker refused {what}: {outcome['error'].str()}")
        return outcome["record"].partition(), outcome["record"].offset()

    def close(self, timeout: float = 0.0) -> None:
        """Give what is queued ``timeout`` s more; a dead producer has nothing left worth waiting for."""
        from confluent_kafka import KafkaException

        try:
            self._producer.flush(timeout)
        except KafkaException:
            pass

    def _reporter(self, on_delivery: Delivered | None) -> Delivered:
        """The report librdkafka calls: this producer notes a refusal, then ``on_delivery`` hears."""
        if on_delivery is None:
            return self._noted

        def report(error: Any, message: Any) -> None:
            self._noted(error, message)
            on_delivery(error, message)

        return report

    def _noted(self, error: Any, _message: Any) -> None:
        if error is not None:
            self._note(error)

    def _note(self, error: Any) -> None:
        if producer_is_dead(error):
            self.dead = self.dead or error.str()
        else:
            self.refusals += 1
            self.refused = self.refused or error.str()

    def _on_error(self, error: Any) -> None:
        if producer_is_dead(error):
            self.dead = self.dead or error.str()
        if self._on_error_too is not None:
            self._on_error_too(error)
