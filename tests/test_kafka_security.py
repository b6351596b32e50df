"""SASL_SSL with SCRAM-SHA-512 against a real Apache Kafka: our settings work, and fail clearly.

Every DroneCop client builds its config from :mod:`transforms.kafka_settings`, which reads
security from ``DRONECOP_KAFKA_*``. Here a Kafka 4.1 broker from the Maven jars serves
only SASL_SSL, with a user created at storage-format time and a certificate from a CA
made in this run's temporary folder. Through the environment alone, the admin, producer
and consumer configs must create a topic, send and read back; a wrong password or an
untrusted certificate must end in one clear line within seconds, not a retry loop; and
no password may show in anything printed or logged.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from runners.brokers import SCRAM_MECHANISM, BrokerError, SaslSsl, ScramUser, broker_command, free_port
from runners.local import stop
from runners.maven import JavaUnavailable, require_java
from runners.workspace import using_home
from transforms.kafka_settings import (
    ENV_SASL_MECHANISM,
    ENV_SASL_PASSWORD,
    ENV_SASL_PASSWORD_FILE,
    ENV_SASL_USERNAME,
    ENV_SECURITY_PROTOCOL,
    ENV_SSL_CA_LOCATION,
    AuthenticationFailed,
    KafkaSettings,
    KafkaSettingsError,
    ensure_topics,
    wait_for_broker,
)

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60.0
REFUSAL_BOUND_S = 10.0
ROUND_TRIP_DEADLINE_S = 60.0
SECURITY_ENV = (
    ENV_SECURITY_PROTOCOL,
    ENV_SASL_MECHANISM,
    ENV_SASL_USERNAME,
    ENV_SASL_PASSWORD,
    ENV_SASL_PASSWORD_FILE,
    ENV_SSL_CA_LOCATION,
)


@dataclass(frozen=True)
class SecureBroker:
    """A running SASL_SSL-only broker: where it listens, who may log in, the CA to trust, its log."""

    bootstrap_servers: str
    user: ScramUser
    ca: Path
    log: Path
    data_dir: Path

    def environment(self, password: str | None = None, password_file: Path | None = None) -> dict[str, str]:
        """The DRONECOP_KAFKA_* a deployment would set; the password inline or as a file."""
        env = {
            ENV_SECURITY_PROTOCOL: "SASL_SSL",
            ENV_SASL_MECHANISM: SCRAM_MECHANISM,
            ENV_SASL_USERNAME: self.user.name,
            ENV_SSL_CA_LOCATION: str(self.ca),
        }
        if password_file is not None:
            return {**env, ENV_SASL_PASSWORD_FILE: str(password_file)}
        return {**env, ENV_SASL_PASSWORD: self.user.password if password is None else password}


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    try:
        require_java()
    except JavaUnavailable as missing:
        pytest.skip(f"the SASL_SSL Kafka broker needs Java and Maven: {missing}")
    pytest.importorskip("cryptography", reason="the test CA is made with the cryptography package")
    from tests.support.tls_material import write_tls_material

    home = tmp_path_factory.mktemp("secure-kafka")
    tls = write_tls_material(home / "tls")
    user = ScramUser("drone-ops", secrets.token_urlsafe(18))
    with using_home(home):
        command = broker_command("kafka", free_port(), SaslSsl(tls.keystore, tls.ca, (user,)))
    log = home / "kafka.log"
    with open(log, "ab") as output:
        process = subprocess.Popen(command.argv, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    broker = SecureBroker(f"127.0.0.1:{command.port}", user, tls.ca, log, command.data_dir)  # type: ignore[arg-type]
    try:
        wait_for_broker(
            KafkaSettings(broker.bootstrap_servers, "SASL_SSL", SCRAM_MECHANISM, user.name, user.password, str(tls.ca)), START_TIMEOUT_S
        )
        yield broker
    finally:
        stop(process)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No DRONECOP_KAFKA_* from the machine running the tests leaks into these."""
    for name in SECURITY_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, bootstrap_servers: str) -> KafkaSettings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return KafkaSettings.from_env(bootstrap_servers)


def consume(settings: KafkaSettings, topic: str, expected: int) -> list[bytes]:
    """Join a group, read ``expected`` records, commit the last one; fail at the deadline, never hang."""
    consumer = Consumer(settings.consumer_config(f"g-{uuid.uuid4().hex[:8]}", log_level=0))
    values: list[bytes] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + ROUND_TRIP_DEADLINE_S
        while len(values) < expected:
            assert time.monotonic() < deadline, f"read {len(values)} of {expected} records in {ROUND_TRIP_DEADLINE_S:.0f} s"
            message = consumer.poll(0.5)
            if message is None or (message.error() and message.error().code() == KafkaError._PARTITION_EOF):
                continue
            assert message.error() is None, message.error().str()
            values.append(message.value())
        consumer.commit(message=message, asynchronous=False)
        assert consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == expected
    finally:
        consumer.close()
    return values


# --- the round trip ---------------------------------------------------------------------------


@pytest.mark.parametrize("password_from", ["variable", "file"])
def test_admin_producer_and_consumer_configs_work_over_sasl_ssl(
    secure_broker: SecureBroker, clean_env: pytest.MonkeyPatch, tmp_path: Path, password_from: str
) -> None:
    password_file = tmp_path / "kafka-password"
    password_file.write_text(secure_broker.user.password + "\n")
    env = secure_broker.environment(password_file=password_file if password_from == "file" else None)
    settings = settings_from(env, clean_env, secure_broker.bootstrap_servers)
    assert settings.sasl_password == secure_broker.user.password
    topic = f"secure-{uuid.uuid4().hex[:10]}"
    assert ensure_topics(settings, [topic]) == [topic]
    assert ensure_topics(settings, [topic]) == []
    sent = [f"drone message {n}".encode() for n in range(20)]
    failures: list[str] = []
    producer = Producer(settings.producer_config(log_level=0))
    for value in sent:
        producer.produce(topic, value, on_delivery=lambda error, _message: error and failures.append(error.str()))
    assert producer.flush(30) == 0 and failures == []
    assert consume(settings, topic, len(sent)) == sent


# --- refusals: one line, within seconds -----------------------------------------------------------


def test_a_wrong_password_is_one_clear_line_within_seconds(secure_broker: SecureBroker, clean_env: pytest.MonkeyPatch) -> None:
    wrong = secrets.token_urlsafe(12)
    settings = settings_from(secure_broker.environment(password=wrong), clean_env, secure_broker.bootstrap_servers)
    began = time.monotonic()
    with pytest.raises(AuthenticationFailed) as refused:
        ensure_topics(settings, [f"never-{uuid.uuid4().hex[:8]}"], timeout_s=60)
    elapsed, message = time.monotonic() - began, str(refused.value)
    assert elapsed < REFUSAL_BOUND_S, f"took {elapsed:.1f} s"
    assert "\n" not in message and "invalid credentials" in message and "'drone-ops'" in message, message
    assert ENV_SASL_PASSWORD in message and wrong not in message and secure_broker.user.password not in message


def test_a_tool_reports_the_refusal_in_one_line_and_exits_2(secure_broker: SecureBroker) -> None:
    """The simulator, run as a user runs it: exit 2 and a single line on stderr, well before its 30 s timeout."""
    wrong = secrets.token_urlsafe(12)
    env = {**{k: v for k, v in os.environ.items() if k not in SECURITY_ENV}, **secure_broker.environment(password=wrong)}
    began = time.monotonic()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator",
            "--count",
            "1",
            "--broker_timeout",
            "30",
            "--bootstrap_servers",
            secure_broker.bootstrap_servers,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - began < REFUSAL_BOUND_S + 5
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("simulator: Kafka at 127.0.0.1:") and "invalid credentials" in lines[0]
    assert wrong not in run.stderr + run.stdout


def test_the_csv_loader_stops_on_a_refused_login_instead_of_waiting_for_the_broker(secure_broker: SecureBroker, tmp_path: Path) -> None:
    """A refused login is no outage: the loader, which waits out outages, exits 2 in one line."""
    from bench.ingest import write_synthetic_csv

    write_synthetic_csv(tmp_path / "history.csv", 10)
    env = {
        **{k: v for k, v in os.environ.items() if k not in SECURITY_ENV},
        **secure_broker.environment(password=secrets.token_urlsafe(12)),
    }
    run = subprocess.run(
        [sys.executable, "-m", "csv_ingest", str(tmp_path / "history.csv"), "--bootstrap_servers", secure_broker.bootstrap_servers],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("csv_ingest: Kafka at 127.0.0.1:") and "invalid credentials" in lines[0]


def test_an_untrusted_certificate_is_one_clear_line(secure_broker: SecureBroker, clean_env: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in secure_broker.environment().items() if k != ENV_SSL_CA_LOCATION}
    settings = settings_from(env, clean_env, secure_broker.bootstrap_servers)
    began = time.monotonic()
    with pytest.raises(AuthenticationFailed) as refused:
        wait_for_broker(settings, timeout_s=60)
    assert time.monotonic() - began < REFUSAL_BOUND_S
    assert "certificate verify failed" in str(refused.value) and ENV_SSL_CA_LOCATION in str(refused.value)


# --- secrets stay secret -------------------------------------------------------------------------


def test_no_password_in_printed_or_logged_config(
    secure_broker: SecureBroker, clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """repr, str, describe and logging of settings and configs, librdkafka's own config dump, the broker's files."""
    password = secure_broker.user.password
    settings = settings_from(secure_broker.environment(), clean_env, secure_broker.bootstrap_servers)
    configs = [settings.producer_config(), settings.consumer_config("g"), settings.admin_config()]
    librdkafka = logging.getLogger("tests.librdkafka")
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("tests.kafka_security").info("configs %s %r", configs[0], configs)
        producer = Producer(settings.producer_config(logger=librdkafka, debug="conf,security"))
        assert producer.list_topics(timeout=20).brokers, "no metadata over SASL_SSL"
        producer.flush(5)
    printed = [repr(settings), str(settings), settings.describe(), *map(repr, configs), *map(str, configs), f"{configs}"]
    assert all(password not in text for text in printed), printed
    assert "***" in settings.describe() and all(config["sasl.password"] == password for config in configs)
    assert "sasl.password = [redacted]" in caplog.text and password not in caplog.text  # librdkafka's dump was seen
    assert password not in secure_broker.log.read_text(errors="replace")
    assert (secure_broker.data_dir / "server.properties").stat().st_mode & 0o077 == 0


# --- the password file variant, no broker needed -----------------------------------------------------


def test_the_password_file_is_read_and_its_errors_name_the_file_not_the_secret(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t-value\nignored second line\n")
    clean_env.setenv(ENV_SASL_PASSWORD_FILE, str(secret))
    assert KafkaSettings.from_env().sasl_password == "s3cr3t-value"
    clean_env.setenv(ENV_SASL_PASSWORD, "also-set")
    with pytest.raises(KafkaSettingsError, match=f"set {ENV_SASL_PASSWORD} or {ENV_SASL_PASSWORD_FILE}, not both"):
        KafkaSettings.from_env()
    clean_env.delenv(ENV_SASL_PASSWORD)
    for content, expected in [(None, "cannot read .*: No such file or directory"), (b"", "is empty"), (b"\xffs3cr3t", "is not UTF-8")]:
        secret.unlink(missing_ok=True)
        if content is not None:
            secret.write_bytes(content)
        with pytest.raises(KafkaSettingsError, match=expected) as error:
            KafkaSettings.from_env()
        assert "s3cr3t" not in str(error.value) and "\n" not in str(error.value)


def test_a_scram_password_the_storage_tool_would_misread_is_refused_unechoed(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="may use only letters, digits and") as refused:
        SaslSsl(tmp_path / "broker.pem", tmp_path / "ca.pem", (ScramUser("drone-ops", "pass],word"),))
    assert "pass],word" not in str(refused.value)
    assert "hidden-value" not in repr(SaslSsl(tmp_path / "k.pem", tmp_path / "c.pem", (ScramUser("u", "hidden-value"),)))


@pytest.mark.parametrize(
    "command",
    [["simulator", "--count=1"], ["pipelines.stream", "--drain", "--output=lake"], ["alert_desk", "--db=sqlite:///desk.db"]],
)
def test_a_bad_secret_setting_is_one_line_from_every_tool(command: list[str], tmp_path: Path) -> None:
    """Both the password and a password file set: each tool says which, in one line, and exits 2."""
    secret = tmp_path / "password.txt"
    secret.write_text("from-the-file")
    env = {
        **os.environ,
        ENV_SECURITY_PROTOCOL: "SASL_SSL",
        ENV_SASL_USERNAME: "drone",
        ENV_SASL_PASSWORD: "from-the-environment",
        ENV_SASL_PASSWORD_FILE: str(secret),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    done = subprocess.run(
        [sys.executable, "-m", *command, "--bootstrap_servers=127.0.0.1:9"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "not both" in done.stderr and "Traceback" not in done.stderr
    assert "from-the-environment" not in done.stderr + done.stdout


def test_the_java_reader_gets_the_same_login_in_java_terms() -> None:
    """Beam's Java KafkaIO wants a JAAS line and a PEM trust store, not librdkafka's names; printing it shows ***."""
    settings = KafkaSettings("broker:9093", "SASL_SSL", SCRAM_MECHANISM, 'dr"one', 'pa\\ss"word', "/secrets/ca.pem")
    java = settings.java_client_config()
    assert java["sasl.jaas.config"] == (
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="dr\\"one" password="pa\\\\ss\\"word";'
    )
    assert java["ssl.truststore.type"] == "PEM" and java["ssl.truststore.location"] == "/secrets/ca.pem"
    assert not {"sasl.username", "sasl.password", "ssl.ca.location"} & set(java)
    assert "word" not in repr(java) and "***" in repr(java)
