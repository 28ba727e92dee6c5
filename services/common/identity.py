"""Principals, roles and API keys, shared by every service that authenticates callers.

An API key is `tt_<8 hex>_<43 url-safe base64 characters>`: a public prefix, to recognise
a key in logs and listings, and 256 random bits. Only the SHA-256 of the whole key is ever
stored; a slow password hash would add nothing for keys with this much entropy.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from tt.facts.v1 import identity_pb2

ROLES: dict[str, int] = {
    "contributor": identity_pb2.ROLE_CONTRIBUTOR,
    "consumer": identity_pb2.ROLE_CONSUMER,
    "auditor": identity_pb2.ROLE_AUDITOR,
    "operator": identity_pb2.ROLE_OPERATOR,
}
ROLE_NAMES: dict[int, str] = {number: name for name, number in ROLES.items()}
_KEY_PATTERN = re.compile(r"^(tt_[0-9a-f]{8})_[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True)
class Principal:
    principal_id: str
    role: str  # one of ROLES
    name: str


@dataclass(frozen=True)
class NewApiKey:
    """A freshly generated key. `key` is shown once and never stored."""

    key: str
    prefix: str
    sha256: str


def role_number(role: str) -> int:
    """The protobuf Role for a role name, or ValueError naming the accepted roles."""
    try:
        return ROLES[role]
    except KeyError:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}") from None


def generate_api_key() -> NewApiKey:
    prefix = f"tt_{secrets.token_hex(4)}"
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    return NewApiKey(key=key, prefix=prefix, sha256=api_key_sha256(key))


def api_key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_from_authorization(value: str | None) -> str | None:
    """The key in an `authorization: Bearer <key>` value, or None if absent or malformed."""
    if not value:
        return None
    scheme, _, key = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not _KEY_PATTERN.match(key.strip()):
        return None
    return key.strip()


def same_digest(left: str, right: str) -> bool:
    """Constant-time comparison of two hex digests."""
    return hmac.compare_digest(left.encode(), right.encode())


def with_article(role: str) -> str:
    """'an auditor', 'a consumer': for messages that name a principal's role."""
    return f"{'an' if role[:1] in 'aeiou' else 'a'} {role}"
