"""PostgreSQL roles: one login role per party, with a password, none of them superuser.

ROLES below is the one table of who may do what in the database (docs/postgres-roles.md):

- `python -m services.common.pgroles apply` creates it in the local stack (`make up` runs
  it, as the bootstrap superuser whose passfile stack.sh generated): the roles with their
  passwords, each party's libpq passfile under its credentials folder, the schemas with
  their owners, and the database privileges;
- deploy/k8s declares the same roles and schemas for CloudNativePG
  (tests/unit/test_k8s_manifests.py compares them with cnpg_managed_roles/cnpg_schemas);
- the reads granted to other roles follow the tables: every time a schema's owner migrates
  it, it grants them on its own tables (grant_reads, called by migrations.migrate), so a
  table added by a migration, or re-created by `1tt rebuild`, is readable at once, with no
  superuser involved (what CloudNativePG, which manages roles but not grants, needs too).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import asyncpg

from services.common.config import POSTGRES_PASSFILE, Settings, postgres_role
from services.common.db import check_schema_name

# Every login role is created (and re-asserted on each apply) with exactly these.
ROLE_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)


@dataclass(frozen=True)
class Reads:
    """SELECT on `tables` of `schema` (every table and view of it when empty)."""

    schema: str
    tables: tuple[str, ...] = ()

    def names(self) -> list[str]:
        return [f"{self.schema}.{table}" for table in self.tables or ("*",)]


@dataclass(frozen=True)
class PartyRole:
    party: str
    purpose: str
    # The one schema the role owns (and so may change); None for a read-only role.
    owns: str | None = None
    reads: tuple[Reads, ...] = ()
    # CREATE on the database: the tests' role makes (and drops) schemas of its own.
    creates_schemas: bool = False
    # Only in the local stack, never in a deployment.
    local_only: bool = False

    @property
    def role(self) -> str:
        return postgres_role(self.party)


ROLES: tuple[PartyRole, ...] = (
    PartyRole("ingest", "the ingest service", owns="ingest"),
    PartyRole("ledger", "the ledger service, and `1tt rebuild ledger`", owns="ledger"),
    PartyRole("payout", "the payout service, and `1tt rebuild payout`", owns="payout"),
    PartyRole(
        "admin",
        "operator tooling: `1tt admin`, `1tt allocations`, `1tt demo`",
        owns="demo",
        reads=(Reads("ingest"), Reads("ledger"), Reads("payout")),
    ),
    PartyRole(
        "auditor",
        "`1tt audit`: the API key check and the projections it compares, read only",
        reads=(
            Reads("ingest", ("principals",)),
            Reads("ledger", ("allocations", "revenue", "unbalanced_movements")),
            Reads("payout", ("payouts",)),
        ),
    ),
    PartyRole(
        "tests",
        "the test suite and the benchmarks, in schemas of their own (it_*, ...)",
        creates_schemas=True,
        local_only=True,
    ),
)


def role_of(party: str) -> PartyRole:
    for entry in ROLES:
        if entry.party == party:
            return entry
    raise KeyError(f"no PostgreSQL role for the party {party!r}")


def deployed_roles() -> tuple[PartyRole, ...]:
    return tuple(entry for entry in ROLES if not entry.local_only)


def readers_of(schema: str) -> list[tuple[str, Reads]]:
    """(role, what it reads) for every role that reads `schema`."""
    return [
        (entry.role, reads) for entry in ROLES for reads in entry.reads if reads.schema == schema
    ]


def _ident(name: str) -> str:
    """A role, schema or table name of this table, quoted (they are all plain identifiers)."""
    return '"' + check_schema_name(name) + '"'


async def grant_reads(conn: asyncpg.Connection, schema: str) -> list[str]:
    """Grant the table's reads on `schema` to their roles; run by the schema's owner after
    it migrates (or by the superuser). Roles that do not exist here, and tables not
    created yet, are skipped. Returns the statements run."""
    done = []
    for role, reads in readers_of(schema):
        if not await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", role):
            continue
        statements = [f"GRANT USAGE ON SCHEMA {_ident(schema)} TO {_ident(role)}"]
        if not reads.tables:
            statements.append(
                f"GRANT SELECT ON ALL TABLES IN SCHEMA {_ident(schema)} TO {_ident(role)}"
            )
        for table in reads.tables:
            if await conn.fetchval(
                "SELECT true FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = $1 AND c.relname = $2",
                schema,
                table,
            ):
                statements.append(
                    f"GRANT SELECT ON {_ident(schema)}.{_ident(table)} TO {_ident(role)}"
                )
        for statement in statements:
            await conn.execute(statement)
        done += statements
    return done


# --- passwords -------------------------------------------------------------------------


def new_password() -> str:
    """256 random bits in URL-safe base64: no ':' or '\\', so it needs no passfile escaping,
    and ASCII, so SASLprep leaves it as it is."""
    return secrets.token_urlsafe(32)


def scram_verifier(password: str, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677, the
    format of pg_authid.rolpassword). Sending the verifier instead of the password keeps
    the password itself out of the server, its statement log and pg_stat_activity."""
    if not password.isascii() or not password.isprintable():
        raise ValueError("only printable ASCII passwords (which SASLprep leaves unchanged)")
    salt = secrets.token_bytes(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


@dataclass(frozen=True)
class Address:
    """Where the database is: what a passfile line is keyed by."""

    host: str
    port: int
    database: str

    @classmethod
    def of(cls, url: str) -> Address:
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 5432, parts.path.lstrip("/"))

    def url(self, role: str, passfile: Path) -> str:
        query = urlencode({"passfile": str(passfile.absolute())}, safe="/", quote_via=quote)
        return f"postgresql://{role}@{self.host}:{self.port}/{self.database}?{query}"


def read_passfile(path: Path, role: str) -> str | None:
    """The password for `role` in a libpq passfile, if it has one."""
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        fields = line.split(":")
        if len(fields) == 5 and fields[3] == role and not line.startswith("#"):
            return fields[4]
    return None


def write_passfile(path: Path, address: Address, role: str, password: str) -> None:
    """One libpq passfile line for `role` at `address`, written 0600 (libpq and asyncpg
    ignore a passfile that others can read) in a 0700 folder, replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(f"{address.host}:{address.port}:{address.database}:{role}:{password}\n")
    os.replace(temporary, path)


# --- the local stack -------------------------------------------------------------------


def prepare_passfiles(address: Address, credentials_dir: Path) -> dict[str, str]:
    """Each role's password: the one in its party's passfile, or a new one; every passfile
    (re)written for `address`. A password so survives `make reset` and a changed port."""
    credentials_dir.mkdir(parents=True, exist_ok=True)
    credentials_dir.chmod(0o700)
    passwords = {}
    for entry in ROLES:
        passfile = credentials_dir / entry.party / POSTGRES_PASSFILE
        passwords[entry.role] = read_passfile(passfile, entry.role) or new_password()
        write_passfile(passfile, address, entry.role, passwords[entry.role])
    return passwords


async def apply(superuser_url: str, database: str, passwords: dict[str, str]) -> list[str]:
    """Create or repair every role of ROLES with its password (prepare_passfiles), its
    schema and its privileges, as the bootstrap superuser. Idempotent. Returns a summary."""
    conn = await asyncpg.connect(superuser_url)
    try:
        if not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
            raise PermissionError("pgroles apply needs the bootstrap superuser's connection")
        summary = []
        for entry in ROLES:
            exists = await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", entry.role)
            # A literal, not a parameter: utility statements take none. The verifier is
            # base64, '$' and ':' only, so it cannot close the quotes.
            await conn.execute(
                f"{'ALTER' if exists else 'CREATE'} ROLE {_ident(entry.role)} WITH "
                f"{ROLE_ATTRIBUTES} PASSWORD '{scram_verifier(passwords[entry.role])}'"
            )
            summary.append(f"{entry.role}: {'checked' if exists else 'created'}")
        await _apply_database(conn, database)
        for entry in ROLES:
            if entry.owns:
                await _apply_schema(conn, entry)
        return summary
    finally:
        await conn.close()


async def _apply_database(conn: asyncpg.Connection, database: str) -> None:
    """Only our roles may connect; nobody but the tests' role may create schemas; no
    temporary tables (nothing uses them)."""
    db = _ident(database)
    await conn.execute(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC")
    await conn.execute("REVOKE CONNECT, TEMPORARY ON DATABASE postgres FROM PUBLIC")
    await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    for entry in ROLES:
        privileges = "CONNECT, CREATE" if entry.creates_schemas else "CONNECT"
        await conn.execute(f"GRANT {privileges} ON DATABASE {db} TO {_ident(entry.role)}")
        if not entry.creates_schemas:
            await conn.execute(f"REVOKE CREATE ON DATABASE {db} FROM {_ident(entry.role)}")


async def _apply_schema(conn: asyncpg.Connection, entry: PartyRole) -> None:
    schema, role = _ident(entry.owns), _ident(entry.role)
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {role}")
    await conn.execute(f"ALTER SCHEMA {schema} OWNER TO {role}")
    await grant_reads(conn, entry.owns)


def superuser_url(address: Address, passfile: Path) -> str:
    """The bootstrap superuser's URL: its name is the fourth field of stack.sh's passfile."""
    for line in passfile.read_text().splitlines():
        fields = line.split(":")
        if len(fields) == 5 and not line.startswith("#"):
            return address.url(fields[3], passfile)
    raise ValueError(f"{passfile} has no passfile line (host:port:database:user:password)")


# --- CloudNativePG ---------------------------------------------------------------------


def cnpg_secret_name(entry: PartyRole) -> str:
    return f"onett-pg-{entry.party}"


def cnpg_managed_roles() -> list[dict]:
    """Cluster.spec.managed.roles for deploy/k8s/base/postgres.yaml."""
    return [
        {
            "name": entry.role,
            "ensure": "present",
            "comment": entry.purpose,
            "login": True,
            "superuser": False,
            "createdb": False,
            "createrole": False,
            "replication": False,
            "bypassrls": False,
            "inherit": True,
            "passwordSecret": {"name": cnpg_secret_name(entry)},
        }
        for entry in deployed_roles()
    ]


def cnpg_schemas() -> list[dict]:
    """Database.spec.schemas: each service's schema, owned by its role."""
    return [
        {"name": entry.owns, "owner": entry.role, "ensure": "present"}
        for entry in deployed_roles()
        if entry.owns
    ]


# --- the command -----------------------------------------------------------------------


def role_table() -> str:
    """ROLES as the Markdown table of docs/postgres-roles.md."""
    lines = [
        "| role | party | owns (reads and writes) | also reads | used by |",
        "|---|---|---|---|---|",
    ]
    for entry in ROLES:
        owns = f"`{entry.owns}`" if entry.owns else "nothing"
        if entry.creates_schemas:
            owns = "the schemas it creates"
        reads = ", ".join(f"`{name}`" for r in entry.reads for name in r.names()) or "nothing"
        local = " (local stack only)" if entry.local_only else ""
        lines.append(
            f"| `{entry.role}` | {entry.party} | {owns} | {reads} | {entry.purpose}{local} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.common.pgroles", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("apply", help="create or repair the roles in the local stack")
    run.add_argument(
        "--superuser-passfile",
        type=Path,
        required=True,
        help="the bootstrap superuser's libpq passfile (stack.sh: $TT_RUN_DIR/pg/superuser.pgpass)",
    )
    commands.add_parser("table", help="print the role table (Markdown)")
    args = parser.parse_args(argv)
    if args.command == "table":
        print(role_table())
        return 0
    settings = Settings.from_env()
    address = Address.of(settings.database_url)
    try:
        url = superuser_url(address, args.superuser_passfile)
        passwords = prepare_passfiles(address, settings.credentials_dir)
        summary = asyncio.run(apply(url, address.database, passwords))
    except (OSError, ValueError, PermissionError, asyncpg.PostgresError) as error:
        print(f"pgroles: {error}", file=sys.stderr)
        return 1
    print(
        f"postgres roles at {address.host}:{address.port}/{address.database} "
        f"(passfiles in {settings.credentials_dir}/<party>/{POSTGRES_PASSFILE}):"
    )
    for line in summary:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
