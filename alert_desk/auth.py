"""Who may use the desk: operator tokens from configuration, kept only as hashes.

A token is given as ``--token NAME=TOKEN`` (or ``--token TOKEN`` for the operator
``operator``), or in ``DRONECOP_DESK_TOKEN`` (same forms, comma-separated). Where even the
configuration must not hold the secret, give its hash: ``NAME=sha256:HEX``. Tokens are long
random strings, so one SHA-256 is enough (nothing to brute-force) and the comparison
is constant-time. Browser sessions get their own random cookie, stored hashed too.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Iterable, Mapping

TOKEN_ENV = "DRONECOP_DESK_TOKEN"
DEFAULT_OPERATOR = "operator"
MIN_TOKEN_LENGTH = 16
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,40}")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


class BadTokenSpec(ValueError):
    """A ``--token`` value that cannot be used; the message is one line for the user."""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Operators:
    """Operator name by token hash."""

    by_digest: Mapping[str, str]

    def operator_for(self, token: str) -> str | None:
        """The operator a presented token belongs to, compared in constant time."""
        presented = digest(token)
        found = None
        for known, name in self.by_digest.items():
            if hmac.compare_digest(known, presented):
                found = name
        return found

    @property
    def names(self) -> list[str]:
        return sorted(set(self.by_digest.values()))


def parse_token_spec(spec: str) -> tuple[str, str]:
    """``NAME=TOKEN``, ``NAME=sha256:HEX`` or ``TOKEN`` → (operator name, token hash)."""
    name, separator, secret = spec.partition("=")
    if not separator:
        name, secret = DEFAULT_OPERATOR, spec
    if not _NAME.fullmatch(name):
        raise BadTokenSpec(f"operator name {name[:40]!r} must be 1-40 letters, digits or _.@-")
    if secret.startswith("sha256:"):
        hex_digest = secret.removeprefix("sha256:").lower()
        if not _HEX_DIGEST.fullmatch(hex_digest):
            raise BadTokenSpec(f"token of {name} is not sha256: followed by 64 hex digits")
        return name, hex_digest
    if len(secret) < MIN_TOKEN_LENGTH:
        raise BadTokenSpec(f"token of {name} is shorter than {MIN_TOKEN_LENGTH} characters")
    return name, digest(secret)


def operators_from(specs: Iterable[str], environment_value: str | None) -> Operators:
    """Operators from the ``--token`` flags and the environment variable together."""
    all_specs = list(specs) + [part.strip() for part in (environment_value or "").split(",") if part.strip()]
    by_digest: dict[str, str] = {}
    for spec in all_specs:
        name, hex_digest = parse_token_spec(spec)
        if by_digest.get(hex_digest, name) != name:
            raise BadTokenSpec(f"one token is given to both {by_digest[hex_digest]} and {name}")
        by_digest[hex_digest] = name
    return Operators(by_digest)


def new_secret() -> str:
    """A fresh random token or session id (256 bits)."""
    return secrets.token_urlsafe(32)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, if that is what it is."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
