"""Operator verbs: `1tt admin init-secrets`, `1tt admin add-principal` and
`1tt admin revoke-key`.

These run on the platform's side as the operator (the admin party: a Kafka super user
whose signing key is the trust anchor): a principal is a fact on the log
(principal.registered), which every service projects, and so is the revocation of its key
(principal.revoked): ingest and payout apply it as they read it, within a second or so,
and refuse the key from then on (the tools that authenticate through ingest's table too).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from services.cli.provision import ensure_anchor, provision_consumer
from services.common.blobstore import write_keypair
from services.common.bus import FactProducer
from services.common.config import KafkaAccess, Settings
from services.common.facts import make_envelope
from services.common.identity import ROLE_NAMES, generate_api_key, role_number
from services.common.validation import FactValidationError, text_problem, validate_envelope
from services.ingest.receipts import generate_signing_key
from services.rules.ids import new_id
from tt.facts.v1 import identity_pb2

_KEY_PREFIX = re.compile(r"tt_[0-9a-f]{8}")


class RevocationError(ValueError):
    """The key to revoke cannot be identified; the message says what to pass instead."""


def secret_paths(run_dir: Path) -> dict[str, Path]:
    secrets = run_dir / "secrets"
    return {
        "receipt_signing_key": secrets / "receipt-signing.key",
        "blob_private_key": secrets / "blob-preprocess.key",
        "blob_public_key": secrets / "blob-preprocess.pub",
        # Reports quote the contributor's text: preprocess writes them for ingest and payout
        # (which show them to their contributor) only.
        "report_private_key": secrets / "report-reader.key",
        "report_public_key": secrets / "report-reader.pub",
    }


def init_secrets(run_dir: Path) -> list[Path]:
    """Create the local stack's keys if they are missing; never replace existing ones."""
    paths = secret_paths(run_dir)
    paths["receipt_signing_key"].parent.mkdir(parents=True, exist_ok=True)
    paths["receipt_signing_key"].parent.chmod(0o700)
    created = []
    if not paths["receipt_signing_key"].exists():
        generate_signing_key(paths["receipt_signing_key"])
        created.append(paths["receipt_signing_key"])
    for private, public in (
        ("blob_private_key", "blob_public_key"),
        ("report_private_key", "report_public_key"),
    ):
        if not paths[private].exists():
            write_keypair(paths[private], paths[public])
            created += [paths[private], paths[public]]
    return created


async def add_principal(
    settings: Settings, role: str, name: str, ingest_schema: str, wait_s: float
) -> tuple[dict, bool]:
    """Register a principal on the log (signed with the admin's key) and wait until ingest
    can authenticate it. A data consumer also gets its own Kafka user, with the consumer's
    rights, and its own signing key registered on the log: a folder of credentials it
    publishes its facts with. Returns the printable record (with the API key, shown once)
    and whether ingest saw the principal."""
    import asyncpg

    role_value = role_number(role)
    if not name.strip():
        raise ValueError("--name must not be empty")
    name = name.strip()
    if problem := text_problem("--name", name, "name"):
        raise ValueError(problem)
    key = generate_api_key()
    fact = identity_pb2.PrincipalRegistered(
        principal_id=new_id(),
        role=role_value,
        name=name,
        api_key_sha256=key.sha256,
        api_key_prefix=key.prefix,
    )
    now = datetime.now(UTC)
    envelope = make_envelope(
        fact, event_id=new_id(), producer="1tt-admin", occurred_at=now, recorded_at=now
    )
    registry = settings.topic_registry()
    record = {
        "principal_id": fact.principal_id,
        "role": ROLE_NAMES[role_value],
        "name": fact.name,
        "api_key": key.key,
        "api_key_prefix": key.prefix,
    }
    if role == "consumer":
        credentials = await provision_consumer(settings, registry, fact.principal_id, name)
        record["credentials"] = str(credentials.folder)
        record["party"] = credentials.party
    await _publish(settings, envelope)
    seen = False
    try:
        conn = await asyncpg.connect(settings.database_url)
        try:
            deadline = asyncio.get_running_loop().time() + wait_s
            while not seen and asyncio.get_running_loop().time() < deadline:
                seen = bool(
                    await conn.fetchval(
                        f"SELECT count(*) FROM {ingest_schema}.principals WHERE principal_id = $1",
                        fact.principal_id,
                    )
                )
                if not seen:
                    await asyncio.sleep(0.1)
        finally:
            await conn.close()
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        seen = False
    return record, seen


async def _publish(settings: Settings, envelope) -> None:
    """Validate (what every reader would refuse is never published), then publish."""
    try:
        validate_envelope(envelope)
    except FactValidationError as error:
        raise ValueError("; ".join(error.problems)) from None
    registry = settings.topic_registry()
    admin = ensure_anchor(settings)
    async with FactProducer(settings.kafka, registry, client_id="1tt-admin", signer=admin) as out:
        await out.publish(envelope)


async def _key_to_revoke(
    conn, schema: str, principal_id: str | None, key_prefix: str | None
) -> tuple[dict | None, dict | None]:
    """(the active key matching, or None; the revoked key matching, or None), from
    ingest's projection. RevocationError if the arguments match several keys."""
    clauses, args = [], []
    for column, value in (("principal_id", principal_id), ("api_key_prefix", key_prefix)):
        if value is not None:
            args.append(value)
            clauses.append(f"{column} = ${len(args)}")
    where = " AND ".join(clauses)
    active = await conn.fetch(
        f"SELECT principal_id, name, role, api_key_sha256, api_key_prefix "
        f"FROM {schema}.principals WHERE {where}",
        *args,
    )
    if len(active) > 1:
        raise RevocationError(
            f"key prefix {key_prefix} is shared by principals "
            f"{', '.join(row['principal_id'] for row in active)}: pass --principal as well"
        )
    revoked = await conn.fetchrow(
        f"SELECT principal_id, api_key_sha256, api_key_prefix, revoked_at "
        f"FROM {schema}.revoked_keys WHERE {where} ORDER BY revoked_at LIMIT 1",
        *args,
    )
    return (dict(active[0]) if active else None), (dict(revoked) if revoked else None)


async def revoke_key(
    settings: Settings,
    *,
    principal_id: str | None,
    key_prefix: str | None,
    reason: str,
    ingest_schema: str,
    payout_schema: str,
    wait_s: float,
) -> dict:
    """Revoke a principal's API key: publish principal.revoked and wait until ingest and
    payout refuse the key. The key is found in ingest's projection by principal id, key
    prefix, or both. Revoking a key already revoked publishes nothing."""
    import asyncpg

    if principal_id is None and key_prefix is None:
        raise RevocationError("say which key to revoke: --principal ID and/or --key-prefix")
    if key_prefix is not None and not _KEY_PREFIX.fullmatch(key_prefix):
        raise RevocationError(
            f"--key-prefix is the key's public part, 'tt_' and 8 hex digits (e.g. "
            f"tt_3f9a2b1c), got {key_prefix!r}"
        )
    for option, value, field in (
        ("--principal", principal_id, "principal_id"),
        ("--reason", reason, "reason"),
    ):
        if value is not None and (problem := text_problem(option, value, field)):
            raise RevocationError(problem)
    conn = await asyncpg.connect(settings.database_url)
    try:
        active, revoked = await _key_to_revoke(conn, ingest_schema, principal_id, key_prefix)
        if active is None:
            if revoked is None:
                raise RevocationError(
                    "no key of the platform matches "
                    + " and ".join(
                        f"{option} {value}"
                        for option, value in (
                            ("--principal", principal_id),
                            ("--key-prefix", key_prefix),
                        )
                        if value is not None
                    )
                    + " (is the ingest service running? it is what knows the keys)"
                )
            return {
                "principal_id": revoked["principal_id"],
                "api_key_prefix": revoked["api_key_prefix"],
                "already_revoked": True,
                "revoked_at": revoked["revoked_at"].isoformat(),
                "refused_by": {
                    "ingest": True,
                    "payout": await _payout_refuses(conn, payout_schema, revoked["api_key_sha256"]),
                },
            }
        fact = identity_pb2.PrincipalRevoked(
            principal_id=active["principal_id"],
            api_key_sha256=active["api_key_sha256"],
            api_key_prefix=active["api_key_prefix"],
            reason=reason.strip(),
        )
        now = datetime.now(UTC)
        envelope = make_envelope(
            fact, event_id=new_id(), producer="1tt-admin", occurred_at=now, recorded_at=now
        )
        await _publish(settings, envelope)
        refused_by = await _wait_refused(
            conn, ingest_schema, payout_schema, active["api_key_sha256"], wait_s
        )
    finally:
        await conn.close()
    return {
        "principal_id": fact.principal_id,
        "name": active["name"],
        "role": active["role"],
        "api_key_prefix": fact.api_key_prefix,
        "already_revoked": False,
        "event_id": envelope.event_id,
        "refused_by": refused_by,
    }


async def _payout_refuses(conn, payout_schema: str, digest: str) -> bool | None:
    """True once payout refuses the key; None if there is no payout projection here."""
    import asyncpg

    try:
        return bool(
            await conn.fetchval(
                f"SELECT count(*) FROM {payout_schema}.revoked_keys WHERE api_key_sha256 = $1",
                digest,
            )
        )
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return None


async def _wait_refused(
    conn, ingest_schema: str, payout_schema: str, digest: str, wait_s: float
) -> dict[str, bool | None]:
    """Wait (up to wait_s) until ingest and payout have applied the revocation."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        ingest = bool(
            await conn.fetchval(
                f"SELECT count(*) FROM {ingest_schema}.revoked_keys WHERE api_key_sha256 = $1",
                digest,
            )
        )
        payout = await _payout_refuses(conn, payout_schema, digest)
        done = ingest and payout is not False
        if done or asyncio.get_running_loop().time() >= deadline:
            return {"ingest": ingest, "payout": payout}
        await asyncio.sleep(0.1)


def print_revocation(record: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(record, sort_keys=True))
        return
    if record["already_revoked"]:
        print(
            f"key {record['api_key_prefix']} of {record['principal_id']} was already revoked "
            f"({record['revoked_at']})"
        )
    else:
        print(
            f"revoked key {record['api_key_prefix']} of {record['role']} {record['name']!r} "
            f"({record['principal_id']})"
        )
    for service, refused in record["refused_by"].items():
        if refused is False:
            print(
                f"warning: the {service} service has not applied the revocation yet (is it "
                "running?); it refuses the key as soon as it does",
                file=sys.stderr,
            )


def print_principal(record: dict, seen: bool, as_json: bool) -> None:
    if as_json:
        print(json.dumps(record))
    else:
        print(f"{record['role']} {record['name']!r} registered as {record['principal_id']}")
        print(f"API key (shown once, store it now): {record['api_key']}")
        if "credentials" in record:
            print(
                f"Kafka user and signing key for publishing its facts: {record['credentials']}"
                f" (hand this folder to the consumer; use it with TT_PARTY={record['party']})"
            )
    if not seen:
        print(
            "warning: the ingest service has not picked this principal up yet (is it "
            "running? 'make up' starts it); the key works as soon as it does",
            file=sys.stderr,
        )


async def wait_serving(address: str, wait_s: float) -> tuple[bool, str]:
    """Ask the gRPC health service until it says SERVING or `wait_s` runs out."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = asyncio.get_running_loop().time() + wait_s
    detail = "no answer"
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                detail = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return True, detail
            except grpc.aio.AioRpcError as error:
                detail = f"{error.code().name}: {error.details()}"
            if asyncio.get_running_loop().time() >= deadline:
                return False, detail
            await asyncio.sleep(0.2)


async def wait_group_stable(kafka: KafkaAccess, group: str, wait_s: float) -> tuple[bool, str]:
    """A stream processor is ready when its consumer group is Stable with a member."""
    from aiokafka.admin import AIOKafkaAdminClient

    deadline = asyncio.get_running_loop().time() + wait_s
    admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=5000)
    await admin.start()
    try:
        while True:
            [response] = await admin.describe_consumer_groups([group])
            [described] = response.to_object()["groups"]
            members = len(described["members"])
            detail = f"group {group}: {described['state'] or 'unknown'}, {members} member(s)"
            if described["state"] == "Stable" and described["members"]:
                return True, detail
            if asyncio.get_running_loop().time() >= deadline:
                return False, detail
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


async def wait_http_ready(url: str, wait_s: float) -> tuple[bool, str]:
    """GET `url` until it answers 200 or `wait_s` runs out."""
    import urllib.error
    import urllib.request

    deadline = asyncio.get_running_loop().time() + wait_s
    detail = "no answer"
    while True:
        try:
            with await asyncio.to_thread(urllib.request.urlopen, url, None, 2) as response:
                detail = response.read().decode(errors="replace")
                if response.status == 200:
                    return True, detail
        except urllib.error.HTTPError as error:
            detail = f"HTTP {error.code}: {error.read().decode(errors='replace')}"
        except (urllib.error.URLError, OSError) as error:
            detail = str(error)
        if asyncio.get_running_loop().time() >= deadline:
            return False, detail
        await asyncio.sleep(0.3)
