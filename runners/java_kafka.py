"""Beam's Java KafkaIO for ``--kafka_io=java``: a Java expansion service that is also its worker pool.

Maven does not serve Beam's IO expansion-service jar at the SDK's version, so the
classpath is assembled by ``mvn dependency:copy-dependencies`` from the modules it does
serve (KafkaIO, the expansion service, the Java SDK harness, at :data:`BEAM_JAVA_VERSION`,
plus ``kafka-clients``) into the cache, once. One JVM then runs Beam's
``ExpansionService`` with ``--alsoStartLoopbackWorker``: on the same port it serves the
BeamFnExternalWorkerPool, and the Java transforms' environment offers that EXTERNAL
worker beside Docker. Prism prefers EXTERNAL, so no container is needed. The JVM lives
for the job's life: it is started before the pipeline is built and stopped after.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

from runners.brokers import free_port
from runners.maven import JavaUnavailable, require_java
from runners.workspace import cache_dir

# The newest Beam Java release whose KafkaIO, expansion service and harness Maven serves
# here; the Python SDK is newer (2.77), and the two talk through the portable protos.
BEAM_JAVA_VERSION = "2.73.0"
KAFKA_CLIENTS_VERSION = "3.9.0"
ARTIFACTS = (
    ("org.apache.beam", "beam-sdks-java-io-kafka", BEAM_JAVA_VERSION),
    ("org.apache.beam", "beam-sdks-java-expansion-service", BEAM_JAVA_VERSION),
    ("org.apache.beam", "beam-sdks-java-harness", BEAM_JAVA_VERSION),
    ("org.apache.kafka", "kafka-clients", KAFKA_CLIENTS_VERSION),
    # The harness measures its cache with jamm, which its POM does not bring.
    ("com.github.jbellis", "jamm", "0.4.0"),
)
# KafkaIO's optional Confluent schema-registry support comes from Confluent's own
# repository, which is not Maven Central; we read raw bytes and never need it.
EXCLUDED_GROUPS = ("io.confluent",)
MAIN_CLASS = "org.apache.beam.sdk.expansion.service.ExpansionService"
START_TIMEOUT_S = 120
RESOLVE_TIMEOUT_S = 900


def classpath() -> Path:
    """The folder of jars (from the cache, or resolved by Maven now) the JVM runs from."""
    digest = hashlib.sha256(_pom().encode()).hexdigest()[:12]  # a changed artifact list resolves afresh
    target = cache_dir() / "java-kafka" / f"{BEAM_JAVA_VERSION}-{digest}" / "lib"
    if (target / ".complete").is_file():
        return target
    require_java()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".resolve.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / ".complete").is_file():
            _resolve_into(target)
    return target


def _resolve_into(target: Path) -> None:
    """Resolve into a fresh folder, then rename: a killed resolve never leaves half a classpath."""
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        pom = Path(work) / "pom.xml"
        pom.write_text(_pom())
        lib = Path(work) / "lib"
        completed = subprocess.run(
            ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={lib}", "-DincludeScope=runtime"],
            capture_output=True,
            text=True,
            timeout=RESOLVE_TIMEOUT_S,
            env={**os.environ, "MAVEN_OPTS": os.environ.get("MAVEN_OPTS", "-Xmx512m")},
        )
        if completed.returncode != 0 or not lib.is_dir():
            errors = [line for line in completed.stdout.splitlines() if "[ERROR]" in line] or ["no output"]
            raise JavaUnavailable(
                f"Maven could not resolve Beam's Java KafkaIO {BEAM_JAVA_VERSION} and its dependencies: "
                f"{errors[0].replace('[ERROR] ', '')[:300]}"
            )
        (lib / ".complete").write_text("")
        if target.exists():
            shutil.rmtree(target)
        lib.rename(target)


def _pom() -> str:
    exclusions = "".join(f"<exclusion><groupId>{group}</groupId><artifactId>*</artifactId></exclusion>" for group in EXCLUDED_GROUPS)
    dependencies = "".join(
        f"<dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId><version>{version}</version>"
        f"<exclusions>{exclusions}</exclusions></dependency>"
        for group, artifact, version in ARTIFACTS
    )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>dronecop</groupId><artifactId>java-kafka</artifactId><version>1</version>"
        f"<dependencies>{dependencies}</dependencies></project>"
    )


@contextlib.contextmanager
def expansion_service(log_path: Path | None = None, stage_classpath: bool = True) -> Iterator[str]:
    """Run the expansion service and worker pool for as long as the block runs; yield its address.

    ``stage_classpath``: give the Java environment the whole classpath as artifacts, as a
    runner that starts Beam's Java SDK container needs; Prism runs the EXTERNAL worker,
    which runs from the classpath, so it passes False and stages one jar instead of 146 MB.

    The JVM's own log goes to ``log_path`` (or ``$DRONECOP_JAVA_LOG``), else it is kept only
    to name why it failed to start.
    """
    lib = classpath()
    log_path = log_path or (Path(os.environ["DRONECOP_JAVA_LOG"]) if os.environ.get("DRONECOP_JAVA_LOG") else None)
    port = free_port()
    address = f"localhost:{port}"
    log = open(log_path, "a+b") if log_path else tempfile.TemporaryFile()
    command = [
        "java",
        "-cp",
        f"{lib}/*",
        MAIN_CLASS,
        str(port),
        "--javaClassLookupAllowlistFile=*",
        "--alsoStartLoopbackWorker",
    ]
    if not stage_classpath:  # the Python SDK would fetch every artifact at each start, Prism stage them
        command.append(f"--filesToStage={lib / f'beam-sdks-java-io-kafka-{BEAM_JAVA_VERSION}.jar'}")
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent_and_ignore_ctrl_c,
        )
    except FileNotFoundError:
        log.close()
        raise JavaUnavailable("java not found on PATH") from None
    try:
        _wait_until_serving(address, process, log)
        yield address
    finally:
        _stop(process)
        log.close()


def _die_with_parent_and_ignore_ctrl_c() -> None:
    """In the child: SIGKILL it when our process dies, and leave Ctrl-C to the job.

    A terminal's Ctrl-C reaches the whole process group; the JVM keeps an ignored SIGINT
    ignored, so the job is cancelled first and the worker pool is stopped after it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _wait_until_serving(address: str, process: subprocess.Popen, log) -> None:
    """Until the expansion service answers gRPC; a one-line error with its last words otherwise."""
    import grpc

    deadline = time.monotonic() + START_TIMEOUT_S
    with grpc.insecure_channel(address) as channel:
        ready = grpc.channel_ready_future(channel)
        while True:
            try:
                ready.result(timeout=0.5)
                return
            except grpc.FutureTimeoutError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                ready.cancel()
                log.flush()
                log.seek(0)
                last = ([line for line in log.read().decode(errors="replace").splitlines() if line.strip()] or ["no output"])[-1]
                state = f"exited ({process.returncode})" if process.poll() is not None else f"did not answer in {START_TIMEOUT_S} s"
                raise JavaUnavailable(f"Beam's Java expansion service {state}: {last[:300]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
