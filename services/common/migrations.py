"""Schema migrations: plain SQL files applied in order, each in its own transaction, and
recorded with a checksum so that a migration edited after it ran is caught.

A service's schema gets the shared bus tables first (component "bus", from
services/common/sql), then its own files. Files are named NNNN_description.sql.

Migrations run as the schema's owner: each service's role owns its schema (created for it
by the stack's set-up, services/common/pgroles.py) and may change nothing else, so a
migration can create, alter and drop only inside it. After migrating, the owner grants the
reads other roles have on its tables (pgroles.grant_reads).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from services.common.db import check_schema_name, connect
from services.common.pgroles import grant_reads

BUS_SQL_DIR = Path(__file__).parent / "sql"
_FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The migrations on disk and those recorded in the database disagree."""


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(component: str, directory: Path) -> list[Migration]:
    """Read NNNN_name.sql files in version order; versions must be 1, 2, 3, ... without gaps."""
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_PATTERN.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files must be named NNNN_lower_case_name.sql")
        migrations.append(
            Migration(component, int(match.group(1)), match.group(2), path.read_text("utf-8"))
        )
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"{directory}: expected migration {expected:04d} next, found "
                f"{migration.version:04d}_{migration.name}.sql (versions must have no gaps)"
            )
    return migrations


async def migrate(
    conn: asyncpg.Connection, schema: str, own: list[Migration] | None = None
) -> list[str]:
    """Bring `schema` up to date with the bus tables and `own` migrations. Safe to run
    concurrently (an advisory lock serialises migrators). Returns what it applied."""
    schema = check_schema_name(schema)
    wanted = load_migrations("bus", BUS_SQL_DIR) + list(own or [])
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"migrate:{schema}")
    try:
        await _ensure_schema(conn, schema)
        await conn.execute(f"SET search_path TO {schema}")
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   component text NOT NULL, version integer NOT NULL, name text NOT NULL,
                   checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
                   PRIMARY KEY (component, version))"""
        )
        recorded = {
            (row["component"], row["version"]): row["checksum"]
            for row in await conn.fetch(
                "SELECT component, version, checksum FROM schema_migrations"
            )
        }
        for migration in wanted:
            label = f"{schema}: {migration.component}/{migration.version:04d}_{migration.name}.sql"
            checksum = recorded.get((migration.component, migration.version))
            if checksum == migration.checksum:
                continue
            if checksum is not None:
                raise MigrationError(
                    f"{label} was changed after it was applied; never edit an applied "
                    "migration, add a new one instead"
                )
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (component, version, name, checksum) "
                    "VALUES ($1, $2, $3, $4)",
                    migration.component,
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied.append(label)
        await grant_reads(conn, schema)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"migrate:{schema}")
    return applied


async def _ensure_schema(conn: asyncpg.Connection, schema: str) -> None:
    """Create `schema` if this role may (the tests' role may; a service's role may not:
    its schema exists before it starts), and check that this role can change it."""
    owner = await conn.fetchval(
        "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1", schema
    )
    if owner is None:
        try:
            await conn.execute(f"CREATE SCHEMA {schema}")
        except asyncpg.InsufficientPrivilegeError:
            raise MigrationError(
                f"schema {schema} does not exist and this role may not create it: the "
                "stack's set-up creates every service's schema for its role (make up, or "
                "python -m services.common.pgroles apply)"
            ) from None
    elif not await conn.fetchval(
        "SELECT pg_has_role(current_user, nspowner, 'USAGE') FROM pg_namespace WHERE nspname = $1",
        schema,
    ):
        role = await conn.fetchval("SELECT current_user")
        raise MigrationError(
            f"schema {schema} belongs to the role {owner}, not to {role}, which may not "
            "migrate it (is TT_PARTY, or the user in TT_DATABASE_URL, the schema's service?)"
        )


async def empty_schema(conn: asyncpg.Connection, schema: str) -> None:
    """Drop every table, view, sequence, routine and type in `schema`, but not the schema
    itself: its owner may drop what is in it, while creating a schema again needs a
    privilege on the database that service roles do not have. What `1tt rebuild` does
    before it migrates the schema afresh."""
    schema = check_schema_name(schema)
    kinds = {
        "r": "TABLE",
        "p": "TABLE",
        "f": "FOREIGN TABLE",
        "v": "VIEW",
        "m": "MATERIALIZED VIEW",
        "S": "SEQUENCE",
    }
    # Tables first: CASCADE takes their views and their columns' sequences with them.
    relations = await conn.fetch(
        "SELECT c.relname, c.relkind::text AS relkind FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind::text = ANY($2::text[]) "
        "ORDER BY array_position($2::text[], c.relkind::text), c.relname",
        schema,
        list(kinds),
    )
    for row in relations:
        await conn.execute(
            f'DROP {kinds[row["relkind"]]} IF EXISTS {schema}."{row["relname"]}" CASCADE'
        )
    for signature in await conn.fetch(
        "SELECT format('%I.%I(%s)', n.nspname, p.proname, "
        "pg_get_function_identity_arguments(p.oid)) AS name FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1",
        schema,
    ):
        await conn.execute(f"DROP ROUTINE IF EXISTS {signature['name']} CASCADE")
    for type_name in await conn.fetch(
        "SELECT format('%I.%I', n.nspname, t.typname) AS name FROM pg_type t "
        "JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = $1 "
        "AND t.typtype IN ('c', 'd', 'e', 'r')",
        schema,
    ):
        await conn.execute(f"DROP TYPE IF EXISTS {type_name['name']} CASCADE")
    left = await conn.fetchval(
        "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = "
        "c.relnamespace WHERE n.nspname = $1) + (SELECT count(*) FROM pg_proc p JOIN "
        "pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1)",
        schema,
    )
    if left:
        raise MigrationError(f"schema {schema} still holds {left} object(s) after emptying it")


async def migrate_schema(database_url: str, schema: str, component: str, sql_dir: Path) -> None:
    """Bring `schema` up to date (bus tables, then `component`'s files), on a connection
    of its own: what every service does once at start-up."""
    conn = await connect(database_url, schema, application_name=f"{component}-migrate")
    try:
        await migrate(conn, schema, load_migrations(component, sql_dir))
    finally:
        await conn.close()
