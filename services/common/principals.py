"""Principals in the projections: who holds an API key, for the operator's and auditor's
`1tt` verbs (looked up in ingest's projection of principal.registered facts, by the key's
SHA-256; keys themselves are never stored), and the checks every projection of
principal.registered makes. (A data consumer is identified by its own credentials, not an
API key: services/consumer/client.py.)"""

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


def projected_role(role: int) -> str:
    """The role's name, for a projection of principal.registered; a refusal (the fact is
    dead-lettered) for a role the schema does not define, which no check would handle."""
    from services.common.bus import PermanentFactError
    from services.common.identity import ROLE_NAMES

    try:
        return ROLE_NAMES[role]
    except KeyError:
        raise PermanentFactError(
            f"role {role} is not a role of the platform ({', '.join(ROLE_NAMES.values())})"
        ) from None


async def _other_holder(conn: asyncpg.Connection, fact) -> str | None:
    """The principal other than the fact's own that holds the fact's key, if any (in the
    `principals` table of the caller's schema)."""
    owner = await conn.fetchval(
        "SELECT principal_id FROM principals WHERE api_key_sha256 = $1", fact.api_key_sha256
    )
    return owner if owner is not None and owner != fact.principal_id else None


async def refuse_a_key_of_another(conn: asyncpg.Connection, fact) -> None:
    """A projection's refusal of a principal.registered whose key is already another
    principal's: a key identifies one principal."""
    from services.common.bus import PermanentFactError

    if owner := await _other_holder(conn, fact):
        raise PermanentFactError(
            f"the API key {fact.api_key_prefix or '(no prefix)'} already belongs to principal "
            f"{owner}; a key identifies one principal"
        )


async def refuse_revoking_a_key_of_another(conn: asyncpg.Connection, fact) -> None:
    """A projection's refusal of a principal.revoked naming a key that another principal
    holds: one principal cannot revoke another's key by naming itself."""
    from services.common.bus import PermanentFactError

    if owner := await _other_holder(conn, fact):
        raise PermanentFactError(
            f"the revoked key {fact.api_key_prefix or '(no prefix)'} belongs to principal "
            f"{owner}, not {fact.principal_id}: name the principal that holds the key"
        )
