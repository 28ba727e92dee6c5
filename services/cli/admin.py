"""Operator verbs: `1tt admin init-secrets` and `1tt admin add-principal`.

These run on the platform's side as the operator (the admin party: a Kafka super user
whose signing key is the trust anchor): a principal is a fact on the log
(principal.registered), which every service projects.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from services.cli.provision import ensure_anchor, provision_consumer
from services.common.blobstore import write_keypair
from services.common.bus import FactProducer
from services.common.config import KafkaAccess, Settings
from services.common.facts import make_envelope
from services.common.identity import ROLE_NAMES, generate_api_key, role_number
from services.common.ids import new_id
from services.ingest.receipts import generate_signing_key
from tt.facts.v1 import identity_pb2


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
    name = check_text("--name", name.strip(), 200)
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
    admin = ensure_anchor(settings)
    async with FactProducer(settings.kafka, registry, client_id="1tt-admin", signer=admin) as out:
        await out.publish(envelope)
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


def check_text(what: str, value: str, limit: int) -> str:
    """`value` if it is non-empty printable text of at most `limit` characters."""
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > limit:
        raise ValueError(f"{what} must be at most {limit} characters, got {len(value)}")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise ValueError(f"{what} must not contain control characters")
    return value


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
