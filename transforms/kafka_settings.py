"""Every Kafka setting DroneCop uses: topics, connection, security and client configs.

This module is the single owner of how our tools talk to Kafka. The simulator, the
CSV loader, the stream pipelines, the alert desk and the local stack all build their
confluent-kafka clients from :class:`KafkaSettings`, so pointing the whole system at
a real cluster (with SASL/TLS) is a matter of flags and environment, never code.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

DEFAULT_BOOTSTRAP_SERVERS = "localhost:9092"
DEFAULT_BROKER_TIMEOUT_S = 30.0
START_A_BROKER = "python -m runners.local up"
FIRST_TRY_S = 2.0  # a first try, as long as one of wait_for_broker's (a refused login shows within it)

DRONE_MESSAGES = "drone-messages"
DRONE_ALERTS = "drone-alerts"
DRONE_DEAD_LETTER = "drone-dead-letter"
NYPD_HISTORY = "nypd-history"


@dataclass(frozen=True)
class TopicSpec:
    """A topic our system owns, with the partition count it is created with."""

    name: str
    partitions: int = 1


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(DRONE_MESSAGES, 4),
    TopicSpec(DRONE_ALERTS, 1),
    TopicSpec(DRONE_DEAD_LETTER, 1),
    TopicSpec(NYPD_HISTORY, 4),
)
TOPICS_BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in TOPICS}

# Environment variables that carry secrets and security settings, so they never
# appear on a command line or in a log.
ENV_SECURITY_PROTOCOL = "DRONECOP_KAFKA_SECURITY_PROTOCOL"
ENV_SASL_MECHANISM = "DRONECOP_KAFKA_SASL_MECHANISM"
ENV_SASL_USERNAME = "DRONECOP_KAFKA_SASL_USERNAME"
ENV_SASL_PASSWORD = "DRONECOP_KAFKA_SASL_PASSWORD"
ENV_SASL_PASSWORD_FILE = "DRONECOP_KAFKA_SASL_PASSWORD_FILE"
ENV_SSL_CA_LOCATION = "DRONECOP_KAFKA_SSL_CA_LOCATION"
# librdkafka settings whose values are secrets: shown as *** wherever a config is printed.
SECRET_KEYS = frozenset(
    {"sasl.password", "sasl.jaas.config", "ssl.key.password", "ssl.keystore.password", "sasl.oauthbearer.client.secret"}
)
REDACTED = "***"


class BrokerUnavailable(RuntimeError):
    """The broker did not answer in time; the message is meant for the user as is."""


class AuthenticationFailed(BrokerUnavailable):
    """The broker answered but refused our login or our TLS trust: retrying cannot help, so it is raised at once.

    A BrokerUnavailable, so every tool that reports one in a line reports this one too.
    """


class KafkaSettingsError(ValueError):
    """The security environment is inconsistent or names a file that cannot be read; one line for the user."""


class ClientConfig(dict):
    """A librdkafka config that prints its secrets as ``***``, so logging or printing one leaks nothing."""

    def __repr__(self) -> str:
        return repr({key: REDACTED if key in SECRET_KEYS else value for key, value in self.items()})

    __str__ = __repr__


@dataclass(frozen=True)
class KafkaSettings:
    """How to reach the cluster, shared by producers, consumers and admin clients."""

    bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS
    security_protocol: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_ca_location: str | None = None

    @classmethod
    def from_env(cls, bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS) -> "KafkaSettings":
        """Settings for ``bootstrap_servers`` with security taken from the environment.

        The password comes from ``DRONECOP_KAFKA_SASL_PASSWORD`` or from the file
        ``DRONECOP_KAFKA_SASL_PASSWORD_FILE`` names (a mounted secret), never from a flag.
        """
        return cls(
            bootstrap_servers=bootstrap_servers,
            security_protocol=os.environ.get(ENV_SECURITY_PROTOCOL) or None,
            sasl_mechanism=os.environ.get(ENV_SASL_MECHANISM) or None,
            sasl_username=os.environ.get(ENV_SASL_USERNAME) or None,
            sasl_password=_password_from_env(),
            ssl_ca_location=os.environ.get(ENV_SSL_CA_LOCATION) or None,
        )

    def describe(self) -> str:
        """One line for logs and error messages: where and how we connect, the password as ``***``."""
        parts = [self.bootstrap_servers, self.security_protocol or "PLAINTEXT"]
        if self.sasl_mechanism:
            password = REDACTED if self.sasl_password else "unset"
            parts.append(f"{self.sasl_mechanism} user {self.sasl_username!r} password {password}")
        if self.ssl_ca_location:
            parts.append(f"CA {self.ssl_ca_location}")
        return ", ".join(parts)

    def client_config(self) -> ClientConfig:
        """The connection part common to every client kind."""
        config = ClientConfig({"bootstrap.servers": self.bootstrap_servers})
        optional = {
            "security.protocol": self.security_protocol,
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_ca_location,
        }
        config.update({key: value for key, value in optional.items() if value})
        return config

    def java_client_config(self) -> ClientConfig:
        """The same connection for Java clients (Beam's Java KafkaIO), in the Java client's own terms.

        Java takes SASL credentials as a JAAS line and the CA as a PEM trust store, not
        librdkafka's ``sasl.username``/``sasl.password``/``ssl.ca.location``.
        """
        config = ClientConfig({"bootstrap.servers": self.bootstrap_servers})
        if self.security_protocol:
            config["security.protocol"] = self.security_protocol
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username and self.sasl_password:
            config["sasl.jaas.config"] = jaas_line(self.sasl_mechanism or "PLAIN", self.sasl_username, self.sasl_password)
        if self.ssl_ca_location:
            config.update({"ssl.truststore.type": "PEM", "ssl.truststore.location": self.ssl_ca_location})
        return config

    def producer_config(self, **overrides: Any) -> ClientConfig:
        """An idempotent, acks=all producer that batches well: nothing lost; retries are not doubled.

        A broker restart that bumps the producer epoch can still write an in-flight batch
        twice (confluentinc/librdkafka#4953). The copies are identical, and the lake keeps
        one per message id.
        """
        config = self.client_config()
        config.update(
            {
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "batch.size": 1_000_000,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 1_000_000,
                "message.timeout.ms": 300_000,
            }
        )
        config.update(overrides)
        return config

    def consumer_config(self, group_id: str, **overrides: Any) -> ClientConfig:
        """A consumer that never commits on its own: our code commits after data is safe."""
        config = self.client_config()
        config.update(
            {
                "group.id": group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
                "fetch.max.bytes": 52_428_800,
                "max.partition.fetch.bytes": 10_485_760,
            }
        )
        config.update(overrides)
        return config

    def admin_config(self) -> ClientConfig:
        return self.client_config()


def jaas_line(mechanism: str, username: str, password: str) -> str:
    """The JAAS ``sasl.jaas.config`` for a SCRAM or PLAIN login, its values quoted and escaped."""
    module = (
        "org.apache.kafka.common.security.scram.ScramLoginModule"
        if mechanism.upper().startswith("SCRAM")
        else "org.apache.kafka.common.security.plain.PlainLoginModule"
    )

    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return f"{module} required username={quoted(username)} password={quoted(password)};"


def _password_from_env() -> str | None:
    """The SASL password from its variable, or the first line of the file its ``_FILE`` variable names."""
    value, path = os.environ.get(ENV_SASL_PASSWORD) or None, os.environ.get(ENV_SASL_PASSWORD_FILE) or None
    if path is None:
        return value
    if value is not None:
        raise KafkaSettingsError(f"set {ENV_SASL_PASSWORD} or {ENV_SASL_PASSWORD_FILE}, not both")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise KafkaSettingsError(f"{ENV_SASL_PASSWORD_FILE}: cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:  # its message would quote the file's bytes
        raise KafkaSettingsError(f"{ENV_SASL_PASSWORD_FILE}: {path} is not UTF-8 text") from None
    if not lines or not lines[0]:
        raise KafkaSettingsError(f"{ENV_SASL_PASSWORD_FILE}: {path} is empty")
    return lines[0]


ENV_BOOTSTRAP_SERVERS = "DRONECOP_BOOTSTRAP_SERVERS"
SECURITY_FROM_ENV = (
    f"SASL/TLS settings are read from {ENV_SECURITY_PROTOCOL}, {ENV_SASL_MECHANISM}, "
    f"{ENV_SASL_USERNAME}, {ENV_SASL_PASSWORD} (or a file named by {ENV_SASL_PASSWORD_FILE}) "
    f"and {ENV_SSL_CA_LOCATION}."
)


def add_kafka_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--bootstrap_servers`` flag every tool accepts; security comes from the environment."""
    parser.add_argument(
        "--bootstrap_servers",
        default=os.environ.get(ENV_BOOTSTRAP_SERVERS, DEFAULT_BOOTSTRAP_SERVERS),
        help=f"Kafka bootstrap servers (default: %(default)s). {SECURITY_FROM_ENV}",
    )


def add_broker_timeout_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--broker_timeout`` flag of every tool that needs the broker at start."""
    parser.add_argument(
        "--broker_timeout",
        type=float,
        default=DEFAULT_BROKER_TIMEOUT_S,
        help="seconds to wait for a broker that does not answer at start, then exit 2 (default: %(default)s)",
    )


def settings_from_args(args: argparse.Namespace) -> KafkaSettings:
    return KafkaSettings.from_env(args.bootstrap_servers)


def producer_is_dead(error: Any) -> bool:
    """Whether a Kafka ``error`` means this producer can send nothing more, so a new one must take over.

    An idempotent producer dies when a broker forgot its id (an empty broker in the old
    one's place). ``produce()`` on a dead producer raises a local ``_FATAL`` error whose
    own ``fatal()`` is False, and it may come before the error callback that says why.
    """
    from confluent_kafka import KafkaError

    return bool(error.fatal()) or error.code() == KafkaError._FATAL


def wait_for_broker(settings: KafkaSettings, timeout_s: float = 30.0) -> None:
    """Block until the cluster answers a metadata request, or raise BrokerUnavailable.

    A refused login or an unverifiable broker certificate raises AuthenticationFailed
    after the first attempt (about 2 s) rather than after ``timeout_s``: librdkafka only
    reports those through the error callback, and would otherwise retry them for ever.
    """
    from confluent_kafka.admin import AdminClient

    refusals: list[str] = []
    admin = AdminClient({**settings.admin_config(), "log_level": 0, "error_cb": partial(_note_refusal, refusals)})
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            admin.list_topics(timeout=max(0.5, min(2.0, remaining)))
            return
        except Exception:  # noqa: BLE001 - librdkafka raises KafkaException on every failure
            admin.poll(0)
            if refusals:
                raise AuthenticationFailed(f"Kafka at {settings.describe()} refused us: {refusals[0]}") from None
            if time.monotonic() >= deadline:
                raise BrokerUnavailable(f"no Kafka broker answered at {settings.bootstrap_servers} within {timeout_s:.0f} s") from None


def wait_for_broker_at_start(
    settings: KafkaSettings, timeout_s: float, note: Callable[[str], None], stop: threading.Event | None = None
) -> bool:
    """Wait up to ``timeout_s`` for the broker a tool needs to start; False if ``stop`` was set meanwhile.

    When the first try (about 2 s) finds no broker, ``note`` says at once what is
    waited for and how to start one; after ``timeout_s`` BrokerUnavailable says so again.
    A refused login raises AuthenticationFailed at once, as :func:`wait_for_broker` does.
    """
    deadline = time.monotonic() + timeout_s
    said = False
    while stop is None or not stop.is_set():
        try:
            wait_for_broker(settings, min(FIRST_TRY_S, max(deadline - time.monotonic(), 0.0)))
            return True
        except AuthenticationFailed:
            raise
        except BrokerUnavailable:
            if time.monotonic() >= deadline:
                raise BrokerUnavailable(
                    f"no Kafka broker answered at {settings.bootstrap_servers} within {timeout_s:g} s "
                    f"(--broker_timeout); start one with `{START_A_BROKER}`"
                ) from None
            if not said:
                note(
                    f"waiting up to {timeout_s:g} s for a Kafka broker at {settings.bootstrap_servers}; "
                    f"none answers yet (start one with `{START_A_BROKER}`)"
                )
                said = True
    return False


def _note_refusal(refusals: list[str], error: Any) -> None:
    """Keep what librdkafka says about a failed SASL login or TLS handshake, with what to check."""
    from confluent_kafka import KafkaError

    hints = {
        KafkaError._AUTHENTICATION: f"check {ENV_SASL_USERNAME} and {ENV_SASL_PASSWORD}[_FILE]",
        KafkaError._SSL: f"check {ENV_SSL_CA_LOCATION}",
    }
    if error.code() in hints:
        refusals.append(f"{error.str().split(': ', 1)[-1]} ({hints[error.code()]})")


def ensure_topics(
    settings: KafkaSettings,
    names: Iterable[str],
    timeout_s: float = 30.0,
    partitions: Mapping[str, int] | None = None,
) -> list[str]:
    """Create whichever of ``names`` are missing; return the ones created.

    Partition counts come from :data:`TOPICS` unless ``partitions`` overrides them.
    An existing topic is left as it is, so calling this on every start is safe.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    wait_for_broker(settings, timeout_s)
    admin = AdminClient({**settings.admin_config(), "log_level": 0})
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [name for name in dict.fromkeys(names) if name not in existing]
    if not wanted:
        return []
    counts = dict(partitions or {})
    new_topics = [
        NewTopic(
            name,
            num_partitions=counts.get(name, TOPICS_BY_NAME.get(name, TopicSpec(name)).partitions),
            replication_factor=1 if _is_local(settings) else -1,
        )
        for name in wanted
    ]
    created = []
    for name, future in admin.create_topics(new_topics, operation_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as error:
            if "TOPIC_ALREADY_EXISTS" not in str(error) and "already exists" not in str(error):
                raise
    _wait_for_topics_visible(admin, wanted, timeout_s)
    return created


def _wait_for_topics_visible(admin: Any, names: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=timeout_s).topics
        if all(name in topics and not topics[name].error for name in names):
            return
        time.sleep(0.1)
    raise BrokerUnavailable(f"topics {names} were created but did not become visible in {timeout_s:.0f} s")


def _is_local(settings: KafkaSettings) -> bool:
    hosts = [server.rsplit(":", 1)[0] for server in settings.bootstrap_servers.split(",")]
    return all(host in ("localhost", "127.0.0.1", "[::1]") for host in hosts)
