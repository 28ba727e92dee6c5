"""PostgreSQL, tried as someone on the machine would, and as each of the platform's roles.

Against the local stack's real server and the credentials `make up` made
(.run/credentials/<party>/postgres.pgpass): a connection without the right password is
refused, the Unix socket is closed, no role of the platform is a superuser or may create
roles or databases, and each role reads and writes exactly what the table in
services/common/pgroles.py says (docs/postgres-roles.md): a service only its own schema,
the operator's tooling reads the services' schemas, the auditor reads what the audit
reads, the tests only schemas they made.

Every change a test makes to a service's schema is rolled back; the services' schemas are
migrated as their owners first (what each service does at start-up, idempotent).
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from services.common.config import POSTGRES_PASSFILE, Settings, postgres_role
from services.common.db import DatabaseLoginError, connect
from services.common.migrations import MigrationError, empty_schema, load_migrations, migrate
from services.common.pgroles import ROLES, Address, role_of

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("ingest", "ledger", "payout")
# One table of each service's schema, to read and write.
TABLE_OF = {"ingest": "principals", "ledger": "allocations", "payout": "payouts"}
DENIED = asyncpg.InsufficientPrivilegeError


@pytest.fixture(scope="module")
def address(settings) -> Address:
    return Address.of(settings.database_url)


def url_of(settings: Settings, address: Address, party: str) -> str:
    passfile = settings.credentials_dir / party / POSTGRES_PASSFILE
    if not passfile.exists():
        pytest.fail(f"no PostgreSQL credentials for {party} ({passfile}): run 'make up'")
    return address.url(postgres_role(party), passfile)


@asynccontextmanager
async def connected(settings: Settings, address: Address, party: str):
    conn = await asyncpg.connect(url_of(settings, address, party), timeout=10)
    try:
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def rolled_back(conn: asyncpg.Connection):
    """A transaction that is always rolled back, so nothing a test does stays."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        yield conn
    finally:
        await transaction.rollback()


async def refused(conn: asyncpg.Connection, statement: str) -> bool:
    """True if the server refuses `statement` for lack of privilege (in a savepoint)."""
    try:
        async with rolled_back(conn):
            await conn.execute(statement)
    except DENIED:
        return True
    return False


@pytest.fixture(scope="module", autouse=True)
def services_migrated(settings, address) -> None:
    """Each service's schema, migrated by its own role, as the service does at start-up."""

    async def run() -> None:
        for party in SERVICES:
            async with connected(settings, address, party) as conn:
                await migrate(
                    conn, party, load_migrations(party, REPO / "services" / party / "sql")
                )

    asyncio.run(run())


# --- nobody without the password -------------------------------------------------------


async def _first_answer(address: Address, user: str) -> bytes:
    """Send a bare StartupMessage and return the server's first message."""
    reader, writer = await asyncio.open_connection(address.host, address.port)
    try:
        body = struct.pack("!i", 196608)  # protocol 3.0
        for key, value in (("user", user), ("database", address.database)):
            body += key.encode() + b"\0" + value.encode() + b"\0"
        body += b"\0"
        writer.write(struct.pack("!i", len(body) + 4) + body)
        await writer.drain()
        kind = await reader.readexactly(1)
        length = struct.unpack("!i", await reader.readexactly(4))[0]
        return kind + await reader.readexactly(length - 4)
    finally:
        writer.close()


@pytest.mark.parametrize("user", [r.role for r in ROLES] + ["postgres", "tt"])
async def test_the_server_demands_scram_from_every_user(address, user):
    """Not trust (AuthenticationOk), not md5 or a clear-text password: SCRAM-SHA-256."""
    answer = await _first_answer(address, user)
    assert answer[:1] == b"R", answer
    assert struct.unpack("!i", answer[1:5])[0] == 10, f"{user}: not SASL: {answer!r}"
    assert answer[5:].split(b"\0")[0] == b"SCRAM-SHA-256", answer


@pytest.mark.parametrize("user", [r.role for r in ROLES] + ["postgres", "tt"])
@pytest.mark.parametrize("password", ["", "wrong-password"])
async def test_a_missing_or_wrong_password_is_refused(address, user, password):
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(
            host=address.host,
            port=address.port,
            database=address.database,
            user=user,
            password=password,
            timeout=10,
        )


def _sockets(run_dir: Path, port: int) -> list[Path]:
    """The stack's Unix socket (stack.sh puts it in a short /tmp folder for deep paths)."""
    found = list((run_dir / "pg" / "socket").glob(f".s.PGSQL.{port}"))
    return found + list(Path("/tmp").glob(f"tt-pg-sock-*/.s.PGSQL.{port}"))


async def test_a_process_without_its_passfile_is_told_where_the_password_should_be(
    address, tmp_path
):
    missing = tmp_path / "ledger" / POSTGRES_PASSFILE
    with pytest.raises(DatabaseLoginError, match=f"tt_ledger.*{missing}"):
        await connect(address.url("tt_ledger", missing), "public", application_name="tests")


async def test_the_unix_socket_is_closed_even_with_the_right_password(settings, address):
    """pg_hba.conf rejects every local (socket) connection."""
    run_dir = settings.credentials_dir.parent.resolve()
    sockets = _sockets(run_dir, address.port)
    if not sockets:
        pytest.skip(f"no socket of this stack under {run_dir / 'pg' / 'socket'}")
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match=r"pg_hba\.conf"):
        await asyncpg.connect(
            host=str(sockets[0].parent),
            port=address.port,
            database=address.database,
            user=postgres_role("ingest"),
            passfile=str(settings.credentials_dir / "ingest" / POSTGRES_PASSFILE),
            timeout=10,
        )


# --- no role of the platform is powerful -----------------------------------------------


@pytest.mark.parametrize("party", [r.party for r in ROLES])
async def test_no_platform_role_is_superuser_or_may_create_roles_or_databases(
    settings, address, party
):
    async with connected(settings, address, party) as conn:
        attributes = await conn.fetchrow(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
            "FROM pg_roles WHERE rolname = current_user"
        )
        assert not any(attributes.values()), dict(attributes)
        assert await refused(conn, f"CREATE ROLE it_{uuid.uuid4().hex[:8]} LOGIN SUPERUSER")
        assert await refused(conn, f"ALTER ROLE {postgres_role(party)} SUPERUSER")
        try:
            await conn.execute(f"CREATE DATABASE it_{uuid.uuid4().hex[:8]}")
            raise AssertionError(f"{party} created a database")
        except DENIED:
            pass


async def test_the_only_superuser_is_the_bootstrap_one_and_every_login_role_is_in_the_table(
    settings, address
):
    async with connected(settings, address, "tests") as conn:
        logins = await conn.fetch(
            "SELECT rolname, rolsuper FROM pg_roles WHERE rolcanlogin ORDER BY rolname"
        )
    assert {r["rolname"] for r in logins if r["rolsuper"]} == {"postgres"}
    assert {r["rolname"] for r in logins if not r["rolsuper"]} == {r.role for r in ROLES}


# --- each role, its schema, its grants -------------------------------------------------


async def test_each_role_owns_its_schema_and_no_other(settings, address):
    async with connected(settings, address, "tests") as conn:
        owners = await conn.fetch(
            "SELECT nspname, nspowner::regrole::text AS owner FROM pg_namespace "
            "WHERE nspowner::regrole::text LIKE 'tt\\_%'"
        )
    for entry in ROLES:
        owned = {r["nspname"] for r in owners if r["owner"] == entry.role}
        if entry.creates_schemas:
            continue  # the tests' own schemas come and go
        assert owned == ({entry.owns} if entry.owns else set()), (entry.role, owned)


@pytest.mark.parametrize("party", SERVICES)
async def test_a_service_migrates_and_writes_in_its_own_schema(settings, address, party):
    async with connected(settings, address, party) as conn:
        sql_dir = REPO / "services" / party / "sql"
        assert await migrate(conn, party, load_migrations(party, sql_dir)) == []
        async with rolled_back(conn):
            await conn.execute(
                f"INSERT INTO {party}.inbox (consumer_group, event_id, event_type, topic, "
                "partition, \"offset\", payload_sha256) VALUES ('it', 'e', 't', 't', 0, 0, 'x')"
            )
            assert await conn.fetchval(f"SELECT count(*) FROM {party}.inbox WHERE event_id = 'e'")
            await conn.execute(f"CREATE TABLE {party}.it_scratch (x integer)")
            await conn.execute(f"DROP TABLE {party}.it_scratch")


@pytest.mark.parametrize("party", SERVICES)
async def test_a_service_cannot_read_or_write_another_services_schema(settings, address, party):
    async with connected(settings, address, party) as conn:
        for other in SERVICES:
            if other == party:
                continue
            table = f"{other}.{TABLE_OF[other]}"
            assert await refused(conn, f"SELECT * FROM {table}"), (party, table)
            assert await refused(conn, f"DELETE FROM {table}"), (party, table)
            assert await refused(conn, f"CREATE TABLE {other}.it_x (x integer)"), (party, other)
            with pytest.raises(MigrationError, match=f"belongs to the role tt_{other}"):
                await migrate(conn, other, [])
        assert await refused(conn, "CREATE TABLE public.it_x (x integer)")
        assert await refused(conn, "CREATE TABLE demo.it_x (x integer)")
        assert await refused(conn, f"CREATE SCHEMA it_{uuid.uuid4().hex[:8]}")
        assert await refused(conn, "CREATE TEMPORARY TABLE it_x (x integer)")


async def test_a_service_cannot_create_its_schema_if_it_is_missing(settings, address):
    async with connected(settings, address, "ledger") as conn:
        with pytest.raises(MigrationError, match="may not create it"):
            await migrate(conn, f"it_{uuid.uuid4().hex[:8]}", [])


async def test_the_operators_tooling_reads_every_service_schema_and_writes_none(settings, address):
    assert [r.schema for r in role_of("admin").reads] == list(SERVICES)
    async with connected(settings, address, "admin") as conn:
        for party in SERVICES:
            for table in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1", party
            ):
                await conn.fetch(f"SELECT * FROM {party}.{table['tablename']} LIMIT 1")
            table = f"{party}.{TABLE_OF[party]}"
            assert await refused(conn, f"DELETE FROM {table}"), table
            assert await refused(conn, f"UPDATE {table} SET {await _a_column(conn, party)} = NULL")
            assert await refused(conn, f"CREATE TABLE {party}.it_x (x integer)"), party
        async with rolled_back(conn):  # its own demo schema
            await conn.execute("CREATE TABLE demo.it_scratch (x integer)")


async def _a_column(conn: asyncpg.Connection, party: str) -> str:
    return await conn.fetchval(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 "
        "AND table_name = $2 ORDER BY ordinal_position LIMIT 1",
        party,
        TABLE_OF[party],
    )


async def test_the_auditor_reads_what_the_audit_reads_and_writes_nothing(settings, address):
    auditor = role_of("auditor")
    assert auditor.owns is None
    async with connected(settings, address, "auditor") as conn:
        for reads in auditor.reads:
            for table in reads.tables:
                await conn.fetch(f"SELECT * FROM {reads.schema}.{table} LIMIT 1")
        for table in (
            "ingest.principals",
            "ledger.allocations",
            "ledger.revenue",
            "payout.payouts",
        ):
            assert await refused(conn, f"DELETE FROM {table}"), table
            assert await refused(conn, f"INSERT INTO {table} DEFAULT VALUES"), table
        # What the audit does not read stays closed: uploads, reports, names. (It reads
        # ledger.revenue: it compares each revenue event's outcome with the ledger's.)
        for table in (
            "ingest.contributions",
            "ingest.contribution_reports",
            "ledger.inbox",
            "payout.principals",
            "payout.contributions",
        ):
            assert await refused(conn, f"SELECT * FROM {table}"), table
        for schema in (*SERVICES, "demo", "public"):
            assert await refused(conn, f"CREATE TABLE {schema}.it_x (x integer)"), schema


async def test_the_tests_make_and_drop_their_own_schemas_and_read_no_service(settings, address):
    schema = f"it_{uuid.uuid4().hex[:10]}"
    async with connected(settings, address, "tests") as conn:
        await migrate(conn, schema, load_migrations("ledger", REPO / "services/ledger/sql"))
        try:
            # What `1tt rebuild` does as a schema's owner: empty it, migrate it afresh.
            await empty_schema(conn, schema)
            assert not await conn.fetchval(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = $1",
                schema,
            )
            assert await migrate(
                conn, schema, load_migrations("ledger", REPO / "services/ledger/sql")
            )
        finally:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        for party in SERVICES:
            assert await refused(conn, f"SELECT * FROM {party}.{TABLE_OF[party]}"), party
