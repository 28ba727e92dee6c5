"""Identifiers. Derived ids are UUIDv5 over a fixed namespace, so the same cause always
yields the same id: that is what makes a resend or a replay idempotent."""

from __future__ import annotations

import uuid

# Fixed forever: changing it would change every derived id on the log.
PLATFORM_NAMESPACE = uuid.UUID("6f1c2d1e-8a4b-5c3d-9e7f-1a2b3c4d5e6f")
_SEPARATOR = "\x1f"  # ASCII unit separator: cannot appear in the parts we join


def derived_id(kind: str, *parts: str) -> str:
    """A deterministic id for `kind` (e.g. "revenue.recorded") caused by `parts`.

    The parts are joined with a separator that ids and names never contain, so
    ("a", "bc") and ("ab", "c") give different ids.
    """
    if not kind:
        raise ValueError("derived_id needs a kind")
    for part in parts:
        if _SEPARATOR in part:
            raise ValueError(f"id part {part!r} contains the reserved separator U+001F")
    return str(uuid.uuid5(PLATFORM_NAMESPACE, _SEPARATOR.join((kind, *parts))))


def new_id() -> str:
    """A fresh random id, for origin facts that have no client-supplied key."""
    return str(uuid.uuid4())
