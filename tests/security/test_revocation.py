"""Revoking an API key: `1tt admin revoke-key` against real ingest and payout processes
on one topic prefix. Effective on every service within seconds (the command waits until
both refuse the key), final (a registration read after its revocation stays revoked),
and it ends the principal's dashboard sessions. Also: the admin and consumer CLIs
refuse control characters before anything is published."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid

import grpc
import httpx
import pytest

from services.audit.audit import run_audit
from tests.integration.ingest_server import ROOT, bearer
from tests.security.support import (
    INGEST_GROUP,
    PAYOUT_GROUP,
    Platform,
    envelope,
    facts_published,
    principal_fact,
    publish,
    query,
    start_platform,
    wait_for_dead_letter,
    wait_until,
)
from tt.facts.v1 import identity_pb2
from tt.ingest.v1 import ingest_pb2

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def platform(settings, tmp_path_factory):
    running = start_platform(settings, tmp_path_factory.mktemp("revocation"))
    yield running
    running.stop()


def tt(platform: Platform, *args: str, key: str | None = None) -> subprocess.CompletedProcess:
    """`1tt ...` as an operator runs it on the platform's side, for this platform."""
    env = {name: value for name, value in os.environ.items() if name != "TT_API_KEY"}
    env.update(
        TT_TOPIC_PREFIX=platform.prefix,
        TT_INGEST_SCHEMA=platform.ingest.schema,
        TT_PAYOUT_SCHEMA=platform.payout.schema,
        **platform.settings.party_env("admin"),
        TT_DATABASE_URL=platform.settings.database_url,
        TT_PAYOUT_URL=platform.payout.url,
    )
    if key is not None:
        env["TT_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def principal(platform: Platform, role: str = "contributor") -> dict:
    """Registered through `1tt admin add-principal`, and known to payout too."""
    record = platform.ingest.principal(role)
    wait_until(
        lambda: platform.payout.get("/v1/me", record["api_key"]).status_code == 200,
        what="payout to know the new principal",
    )
    return record


def grpc_code(platform: Platform, record: dict) -> grpc.StatusCode:
    try:
        platform.ingest.stub().ListContributions(
            ingest_pb2.ListContributionsRequest(), metadata=bearer(record)
        )
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def facts_of(platform: Platform, event_type: str) -> int:
    return facts_published(platform.settings, event_type)


def test_a_revoked_key_is_refused_by_every_service_within_seconds(platform):
    alice = principal(platform)
    with httpx.Client(base_url=platform.payout.url) as browser:
        assert browser.post("/login", data={"api_key": alice["api_key"]}).status_code == 303
        assert browser.get("/").status_code == 200
        cookie = browser.cookies["tt_session"]
    assert grpc_code(platform, alice) == grpc.StatusCode.OK

    started = time.monotonic()
    done = tt(
        platform,
        "admin",
        "revoke-key",
        "--principal",
        alice["principal_id"],
        "--reason",
        "laptop stolen",
        "--json",
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["refused_by"] == {"ingest": True, "payout": True}, result
    assert (result["principal_id"], result["api_key_prefix"]) == (
        alice["principal_id"],
        alice["api_key_prefix"],
    )
    assert elapsed < 20, f"the revocation took {elapsed:.1f}s to reach both services"
    print(f"1tt admin revoke-key returned, refused by ingest and payout, in {elapsed:.2f}s")
    # ingest (gRPC), payout (API and dashboard), and the tools that read ingest's table.
    assert grpc_code(platform, alice) == grpc.StatusCode.UNAUTHENTICATED
    assert platform.payout.get("/v1/me", alice["api_key"]).status_code == 401
    replayed = httpx.get(f"{platform.payout.url}/", cookies={"tt_session": cookie})
    assert replayed.status_code == 303 and replayed.headers["location"] == "/login"
    login = httpx.post(f"{platform.payout.url}/login", data={"api_key": alice["api_key"]})
    assert login.status_code == 401 and "set-cookie" not in login.headers
    tool = tt(platform, "allocations", key=alice["api_key"])
    assert tool.returncode == 1 and "this API key is not known" in tool.stderr, tool.stderr
    # The audit reports the principal, and that its key was revoked, and by whom.
    audit = asyncio.run(run_audit(platform.settings, check_projections=False))
    [listed] = [p for p in audit.principals if p["principal_id"] == alice["principal_id"]]
    assert "by admin" in listed["revoked"], listed
    assert not query(
        platform.settings,
        platform.payout.schema,
        "SELECT 1 FROM dashboard_sessions WHERE principal_id = $1",
        alice["principal_id"],
    )
    # Statements still name the contributor: revocation ends access, not the record.
    [row] = query(
        platform.settings,
        platform.payout.schema,
        "SELECT name, revoked_at FROM principals WHERE principal_id = $1",
        alice["principal_id"],
    )
    assert row["revoked_at"] is not None


def test_a_key_can_be_revoked_by_its_prefix_and_revoking_again_publishes_nothing(platform):
    olga = principal(platform, "operator")
    assert platform.payout.get("/v1/payouts", olga["api_key"]).status_code == 200
    done = tt(platform, "admin", "revoke-key", "--key-prefix", olga["api_key_prefix"])
    assert done.returncode == 0, done.stderr
    assert f"revoked key {olga['api_key_prefix']} of operator" in done.stdout
    assert platform.payout.get("/v1/payouts", olga["api_key"]).status_code == 401
    published = facts_of(platform, "principal.revoked")
    again = tt(platform, "admin", "revoke-key", "--key-prefix", olga["api_key_prefix"], "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["already_revoked"] is True
    assert facts_of(platform, "principal.revoked") == published


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        ([], "say which key to revoke"),
        (["--key-prefix", "tt_zz"], "'tt_' and 8 hex digits"),
        (["--principal", "nobody-at-all"], "no key of the platform matches --principal"),
        (["--principal", "x", "--reason", "a\x1b[2Jb"], "U+001B"),
    ],
    ids=["nothing", "bad-prefix", "unknown", "control-in-reason"],
)
def test_revoke_key_says_what_is_wrong_and_publishes_nothing(platform, args, phrase):
    before = facts_of(platform, "principal.revoked")
    done = tt(platform, "admin", "revoke-key", *args)
    assert done.returncode == 1 and phrase in done.stderr, done.stderr
    assert facts_of(platform, "principal.revoked") == before


def test_a_revocation_read_before_its_registration_still_revokes(platform):
    """principal.revoked and principal.registered are on different topics: a reader may
    meet the revocation first. The key must never work, whatever the order."""
    registration, key, fact = principal_fact("contributor")
    revocation = envelope(
        identity_pb2.PrincipalRevoked(
            principal_id=fact.principal_id,
            api_key_sha256=fact.api_key_sha256,
            api_key_prefix=fact.api_key_prefix,
        )
    )
    publish(platform.settings, revocation)
    for schema in (platform.ingest.schema, platform.payout.schema):
        wait_until(
            lambda schema=schema: query(
                platform.settings,
                schema,
                "SELECT 1 FROM revoked_keys WHERE principal_id = $1",
                fact.principal_id,
            ),
            what="the revocation to be applied",
        )
    publish(platform.settings, registration)
    for schema in (platform.ingest.schema, platform.payout.schema):
        wait_until(
            lambda schema=schema: query(
                platform.settings,
                schema,
                "SELECT 1 FROM inbox WHERE event_id = $1",
                registration.event_id,
            ),
            what="the registration to be applied",
        )
    assert not query(
        platform.settings,
        platform.ingest.schema,
        "SELECT 1 FROM principals WHERE principal_id = $1",
        fact.principal_id,
    )
    assert platform.payout.get("/v1/me", key).status_code == 401
    assert grpc_code(platform, {"api_key": key}) == grpc.StatusCode.UNAUTHENTICATED


def test_a_revocation_naming_another_principals_key_is_dead_lettered(platform):
    bob = principal(platform)
    mallory = principal(platform)
    [bob_key] = query(
        platform.settings,
        platform.ingest.schema,
        "SELECT api_key_sha256 FROM principals WHERE principal_id = $1",
        bob["principal_id"],
    )
    confused = envelope(
        identity_pb2.PrincipalRevoked(
            principal_id=mallory["principal_id"], api_key_sha256=bob_key["api_key_sha256"]
        )
    )
    publish(platform.settings, confused)
    for group in (INGEST_GROUP, PAYOUT_GROUP):
        letter = wait_for_dead_letter(platform.settings, group, confused.event_id)
        assert f"belongs to principal {bob['principal_id']}, not" in letter.reason, letter
    assert platform.payout.get("/v1/me", bob["api_key"]).status_code == 200
    assert platform.payout.get("/v1/me", mallory["api_key"]).status_code == 200
    assert grpc_code(platform, bob) == grpc.StatusCode.OK


def test_the_admin_cli_refuses_a_name_with_control_characters(platform):
    before = facts_of(platform, "principal.registered")
    done = tt(platform, "admin", "add-principal", "--role", "auditor", "--name", "root\x1b[31m")
    assert done.returncode == 1, done.stdout
    assert "--name contains the control character U+001B" in done.stderr
    assert facts_of(platform, "principal.registered") == before


def test_the_consumer_cli_refuses_control_characters_before_publishing(platform):
    acme = principal(platform, "consumer")
    before = facts_of(platform, "agreement.published")
    done = tt(
        platform,
        "consumer",
        "agreement",
        "--service",
        "chat",
        "--share-bps",
        "1500",
        "--from",
        "2026-01-01",
        "--currency",
        "USD",
        "--id",
        f"agreement-{uuid.uuid4().hex[:6]}\x07",
        "--credentials",
        acme["credentials"],  # the consumer publishes with its own credentials
    )
    assert done.returncode == 1, done.stdout
    assert "agreement_id contains the control character U+0007" in done.stderr
    assert facts_of(platform, "agreement.published") == before
