"""PostgreSQL connections. Each service owns one schema; its pool's search_path points
there, so SQL is written unqualified and a test can run a service in a schema of its own."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import asyncpg

_SCHEMA_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Errors meaning "the database is not reachable right now" (a restart, the network), as
# opposed to "this statement is wrong": callers wait and retry, or answer UNAVAILABLE.
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)


class DatabaseLoginError(PermissionError):
    """PostgreSQL refused this process's role; the message says where its password is."""


def _login_error(database_url: str, error: Exception) -> DatabaseLoginError:
    parts = urlsplit(database_url)
    passfile = parse_qs(parts.query).get("passfile", ["PGPASSWORD"])[0]
    return DatabaseLoginError(
        f"PostgreSQL refused the role {parts.username or '(none)'}: {error}. Its password "
        f"comes from {passfile}, which `make up` writes (docs/postgres-roles.md)"
    )


def check_schema_name(schema: str) -> str:
    if not _SCHEMA_PATTERN.match(schema):
        raise ValueError(
            f"schema name {schema!r} must be lower-case letters, digits and '_' "
            "(at most 63, not starting with a digit)"
        )
    return schema


async def create_pool(
    database_url: str, schema: str, *, application_name: str, max_size: int = 10
) -> asyncpg.Pool:
    """A pool whose connections use `schema` (which must exist: run migrations first)."""
    try:
        return await asyncpg.create_pool(
            database_url,
            min_size=1,
            max_size=max_size,
            command_timeout=60,
            server_settings={
                "search_path": check_schema_name(schema),
                "application_name": application_name,
            },
        )
    except asyncpg.InvalidAuthorizationSpecificationError as error:
        raise _login_error(database_url, error) from None


async def connect(database_url: str, schema: str, *, application_name: str) -> asyncpg.Connection:
    """One connection using `schema`: for migrations, the relay's lock, and tools."""
    try:
        return await asyncpg.connect(
            database_url,
            command_timeout=60,
            server_settings={
                "search_path": check_schema_name(schema),
                "application_name": application_name,
            },
        )
    except asyncpg.InvalidAuthorizationSpecificationError as error:
        raise _login_error(database_url, error) from None
