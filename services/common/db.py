"""PostgreSQL connections. Each service owns one schema; its pool's search_path points
there, so SQL is written unqualified and a test can run a service in a schema of its own."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import asyncpg
from asyncpg.exceptions import _base as asyncpg_base

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


# Errors meaning "PostgreSQL will never store this data": the input's fault, not the
# database's, so a retry fails the same way. A projection that meets one for a fact
# dead-letters the fact (services.common.inbox); an endpoint answers 400.
#   DataError (class 22): a character PostgreSQL refuses (U+0000 in text, \u0000 in
#     jsonb), a number or a date out of its column's range, text that is not a value of
#     its type; also asyncpg's own refusal to encode an argument (e.g. out of int64 range).
#   IntegrityConstraintViolationError (class 23): unique, foreign-key, check and not-null
#     violations: an id that refers to nothing, a value the schema forbids, a duplicate.
#   asyncpg's client-side DataError is an InterfaceError, which DATABASE_UNAVAILABLE
#     would wait out forever: it must be matched first.
#   OverflowError: copy_records_to_table raises it for an integer outside its column's
#     range before the database sees it.
# Not here, and retried instead: serialization failures and deadlocks (class 40), lock
# and statement timeouts, and everything in DATABASE_UNAVAILABLE.
FACT_REFUSED_BY_DATABASE: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg_base.DataError,
    OverflowError,
)
# "program_limit_exceeded" exactly (e.g. a value too large for an index row), not its
# subclasses (too many columns or arguments: a fault in the code, not in the data).
_PROGRAM_LIMIT_EXCEEDED = "54000"


def refused_by_database(error: BaseException) -> bool:
    """True if `error` means the data can never be stored, whatever is retried."""
    if isinstance(error, FACT_REFUSED_BY_DATABASE):
        return True
    return (
        isinstance(error, asyncpg.ProgramLimitExceededError)
        and error.sqlstate == _PROGRAM_LIMIT_EXCEEDED
    )


def describe_refusal(error: BaseException) -> str:
    """Why PostgreSQL refused the data, in words and without the data itself (a DETAIL
    line may quote values: names, digests): the SQLSTATE's name, the message, and the
    constraint, table or column concerned."""
    if not isinstance(error, asyncpg.PostgresError):
        return f"{type(error).__name__}: {error}"
    kind = type(error).__name__.removesuffix("Error")
    where = [
        f"{label} {value}"
        for label, value in (
            ("constraint", getattr(error, "constraint_name", None)),
            ("table", getattr(error, "table_name", None)),
            ("column", getattr(error, "column_name", None)),
        )
        if value
    ]
    message = getattr(error, "message", None) or str(error).split("\n")[0]
    return f"{kind} (SQLSTATE {error.sqlstate}): {message}" + (
        f" [{', '.join(where)}]" if where else ""
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
