"""The role table (services/common/pgroles.py), the SCRAM verifier, passfiles, and how a
party's database URL is made (services/common/config.py)."""

from __future__ import annotations

import base64
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from services.common.config import Settings, database_url_for, postgres_role
from services.common.pgroles import (
    ROLES,
    Address,
    cnpg_managed_roles,
    cnpg_schemas,
    deployed_roles,
    read_passfile,
    readers_of,
    role_of,
    role_table,
    scram_verifier,
    write_passfile,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "postgres-roles.md"


def test_scram_verifier_is_the_one_postgresql_stores():
    # PostgreSQL 15 stored this for CREATE ROLE ... PASSWORD 'pencil' with this salt.
    salt = base64.b64decode("FHL/gnbz4r6/685NREuk5Q==")
    assert scram_verifier("pencil", salt) == (
        "SCRAM-SHA-256$4096:FHL/gnbz4r6/685NREuk5Q==$8BnBYOTfGoMaQOZPR3EN3UJiFjtn9N9RBS46rX+TLUQ="
        ":+Bhloz273oxJApfFthqqt+FaMl/qtzxdT1cWbtP6XLA="
    )
    assert scram_verifier("pencil") != scram_verifier("pencil")  # a fresh salt each time
    with pytest.raises(ValueError, match="ASCII"):
        scram_verifier("pencil\u00e9")


def test_the_table_gives_every_party_one_role_and_every_schema_one_owner():
    parties = [entry.party for entry in ROLES]
    assert len(parties) == len(set(parties))
    owned = [entry.owns for entry in ROLES if entry.owns]
    assert len(owned) == len(set(owned))
    assert {role_of(p).owns for p in ("ingest", "ledger", "payout")} == {
        "ingest",
        "ledger",
        "payout",
    }
    assert role_of("auditor").owns is None, "the auditor only reads"
    for entry in ROLES:
        for reads in entry.reads:
            assert reads.schema in owned and reads.schema != entry.owns
    assert [entry.party for entry in ROLES if entry.creates_schemas] == ["tests"]
    assert "tests" not in {entry.party for entry in deployed_roles()}


def test_no_service_reads_another_service():
    for service in ("ingest", "ledger", "payout"):
        assert role_of(service).reads == ()
    assert {role for role, _ in readers_of("ledger")} == {"tt_admin", "tt_auditor"}


def test_cloudnativepg_roles_and_schemas_come_from_the_table():
    roles = cnpg_managed_roles()
    assert [r["name"] for r in roles] == [e.role for e in deployed_roles()]
    for role in roles:
        assert role["login"] and not role["superuser"] and not role["createdb"]
        assert not role["createrole"] and not role["replication"] and not role["bypassrls"]
        assert role["passwordSecret"]["name"] == f"onett-pg-{role['name'].removeprefix('tt_')}"
    assert cnpg_schemas() == [
        {"name": "ingest", "owner": "tt_ingest", "ensure": "present"},
        {"name": "ledger", "owner": "tt_ledger", "ensure": "present"},
        {"name": "payout", "owner": "tt_payout", "ensure": "present"},
        {"name": "demo", "owner": "tt_admin", "ensure": "present"},
    ]


def test_a_party_connects_as_its_role_with_its_passfile_and_no_secret_in_the_url(tmp_path):
    url = database_url_for("postgresql://127.0.0.1:55432/tt", "ledger", tmp_path)
    parts = urlsplit(url)
    assert parts.username == "tt_ledger" and parts.password is None
    assert (parts.hostname, parts.port, parts.path) == ("127.0.0.1", 55432, "/tt")
    assert parse_qs(parts.query)["passfile"] == [str(tmp_path / "ledger" / "postgres.pgpass")]
    # A folder with a space or '&' in its name: percent-encoded, as libpq and asyncpg read it.
    odd = tmp_path / "a b&c"
    spaced = urlsplit(database_url_for("postgresql://127.0.0.1:55432/tt", "ledger", odd))
    assert "+" not in spaced.query
    assert parse_qs(spaced.query)["passfile"] == [str(odd / "ledger" / "postgres.pgpass")]
    # Other parameters stay (the manifests ask for TLS).
    tls = database_url_for(
        "postgresql://onett-pg-rw:5432/onett?sslmode=require", "ingest", tmp_path
    )
    assert parse_qs(urlsplit(tls).query)["sslmode"] == ["require"]
    assert urlsplit(tls).username == "tt_ingest"
    # A URL that names a user is the caller's choice (the manifests', the tests').
    chosen = "postgresql://tt_tests@127.0.0.1:55432/tt?passfile=/x"
    assert database_url_for(chosen, "ledger", tmp_path) == chosen
    assert postgres_role("some-consumer") == "tt_some_consumer"


def test_settings_name_the_partys_role(tmp_path):
    settings = Settings.from_env({"TT_PARTY": "payout", "TT_CREDENTIALS_DIR": str(tmp_path)})
    assert urlsplit(settings.database_url).username == "tt_payout"
    audit = Settings.from_env({"TT_CREDENTIALS_DIR": str(tmp_path)}, default_party="auditor")
    assert urlsplit(audit.database_url).username == "tt_auditor"
    assert urlsplit(Settings.from_env({}).database_url).username == "tt_admin"


def test_passfiles_are_private_and_keyed_by_address_and_role(tmp_path: Path):
    path = tmp_path / "credentials" / "ledger" / "postgres.pgpass"
    address = Address.of("postgresql://tt_x@127.0.0.1:57432/tt?passfile=/y")
    assert address == Address("127.0.0.1", 57432, "tt")
    write_passfile(path, address, "tt_ledger", "s3cret")
    assert path.read_text() == "127.0.0.1:57432:tt:tt_ledger:s3cret\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert read_passfile(path, "tt_ledger") == "s3cret"
    assert read_passfile(path, "tt_payout") is None
    assert address.url("tt_ledger", path).startswith("postgresql://tt_ledger@127.0.0.1:57432/tt?")


def test_the_docs_show_the_table_as_it_is():
    text = DOC.read_text()
    shown = text.split("<!-- pgroles table -->\n")[1].split("<!-- end pgroles table -->")[0]
    assert shown.strip() == role_table(), "paste `python -m services.common.pgroles table`"
