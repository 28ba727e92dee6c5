"""Schema migrations: plain SQL files applied in order, each in its own transaction, and
recorded with a checksum so that a migration edited after it ran is caught.

A service's schema gets the shared bus tables first (component "bus", from
services/common/sql), then its own files. Files are named NNNN_description.sql.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from services.common.db import check_schema_name, connect

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
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
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
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"migrate:{schema}")
    return applied


async def migrate_schema(database_url: str, schema: str, component: str, sql_dir: Path) -> None:
    """Bring `schema` up to date (bus tables, then `component`'s files), on a connection
    of its own: what every service does once at start-up."""
    conn = await connect(database_url, schema, application_name=f"{component}-migrate")
    try:
        await migrate(conn, schema, load_migrations(component, sql_dir))
    finally:
        await conn.close()
