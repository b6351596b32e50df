"""A throwaway certificate authority and a broker certificate for 127.0.0.1, as PEM files.

The SASL_SSL broker test needs TLS that clients really verify (librdkafka checks the
host name by default), without shipping a key in the repository: each run makes a CA
and a loopback certificate in its temporary folder, valid for a day, and forgets them.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_FOR = timedelta(days=1)


@dataclass(frozen=True)
class TlsFiles:
    """``ca``: the certificate clients trust; ``keystore``: the broker's key and certificate chain."""

    ca: Path
    keystore: Path


def write_tls_material(folder: Path) -> TlsFiles:
    """Make a CA and a broker certificate for 127.0.0.1 and localhost in ``folder`` (key files mode 0600)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, broker_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate(_name("DroneCop test CA"), ca_key, _name("DroneCop test CA"), ca_key.public_key(), is_ca=True)
    broker_cert = _certificate(_name("DroneCop test CA"), ca_key, _name("127.0.0.1"), broker_key.public_key(), is_ca=False)
    ca = folder / "ca.pem"
    ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    keystore = folder / "broker.pem"
    _write_private(
        keystore,
        _pem_key(broker_key) + broker_cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM),
    )
    return TlsFiles(ca, keystore)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    issuer: x509.Name, issuer_key: ec.EllipticCurvePrivateKey, subject: x509.Name, public_key: ec.EllipticCurvePublicKey, is_ca: bool
) -> x509.Certificate:
    now = datetime.now(timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .issuer_name(issuer)
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if not is_ca:
        names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8, unencrypted: Kafka's PEM keystore reads it without a key password to configure."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
