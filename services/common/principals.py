"""Who holds an API key, for tools that act on the platform's data directly (the `1tt`
consumer, operator and auditor verbs): looked up in ingest's projection of
principal.registered facts, by the key's SHA-256 (keys themselves are never stored)."""

from __future__ import annotations

import os
from collections.abc import Iterable

import asyncpg

from services.common.identity import (
    Principal,
    api_key_from_authorization,
    api_key_sha256,
    with_article,
)


class AccessError(PermissionError):
    """The key is missing, unknown, or of a role that may not do this."""


async def principal_for_key(
    database_url: str, api_key: str | None, roles: Iterable[str], what: str
) -> Principal:
    """The principal holding `api_key` if its role is one of `roles`; AccessError saying
    what is wrong otherwise. `what` names the action for the message."""
    roles = tuple(roles)
    wanted = " or ".join(roles)
    key = api_key_from_authorization(f"Bearer {api_key}") if api_key else None
    if key is None:
        raise AccessError(
            f"{what} needs an API key of the {wanted} role: set TT_API_KEY or --api-key"
        )
    schema = os.environ.get("TT_INGEST_SCHEMA", "ingest")
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            f"SELECT principal_id, role, name FROM {schema}.principals WHERE api_key_sha256 = $1",
            api_key_sha256(key),
        )
    finally:
        await conn.close()
    if row is None:
        raise AccessError("this API key is not known to the platform")
    if row["role"] not in roles:
        raise AccessError(
            f"{what} is for the {wanted} role; the key belongs to {row['name']!r}, "
            f"{with_article(row['role'])}"
        )
    return Principal(row["principal_id"], row["role"], row["name"])
