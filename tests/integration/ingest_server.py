"""A real ingest server process for tests: its own topic prefix, Postgres schema, port,
keys and blob store, so test modules never see each other's data."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc

from services.cli.admin import add_principal, init_secrets, secret_paths, wait_serving
from services.cli.provision import prepare, remove
from services.common.config import Settings
from services.ingest.terms import CURRENT_TERMS_ID, accepted_terms
from tests.integration.conftest import read_topic
from tt.facts.v1 import contribution_pb2
from tt.ingest.v1 import ingest_pb2, ingest_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now and never handed out before in this process: a test that picks
    several ports before the servers bind them must not get the same one twice (it did:
    a metrics scrape reached a gRPC server on the same port)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@dataclass
class IngestServer:
    address: str
    settings: Settings
    schema: str
    run_dir: Path
    log_path: Path
    process: subprocess.Popen

    @property
    def blob_root(self) -> Path:
        return self.run_dir / "blobs"

    def stub(self) -> ingest_pb2_grpc.IngestServiceStub:
        channel = grpc.insecure_channel(
            self.address, options=[("grpc.max_send_message_length", 8 << 20)]
        )
        return ingest_pb2_grpc.IngestServiceStub(channel)

    def principal(self, role: str = "contributor", name: str | None = None) -> dict:
        record, seen = asyncio.run(
            add_principal(
                self.settings, role, name or f"{role}-{uuid.uuid4().hex[:6]}", self.schema, 20
            )
        )
        assert seen, f"ingest did not project the principal; log: {self.log_tail()}"
        return record

    def temp_files(self) -> list[Path]:
        return (
            [p for p in (self.blob_root / "tmp").glob("*")]
            if (self.blob_root / "tmp").exists()
            else []
        )

    def objects(self) -> list[Path]:
        objects = self.blob_root / "objects"
        return [p for p in objects.rglob("*") if p.is_file()] if objects.exists() else []

    def received_facts(self, expected: int = 0, timeout_s: float = 3.0):
        topic = self.settings.topic_registry().fact_topic("contribution.received")
        return asyncio.run(read_topic(self.settings.kafka, topic, expected, timeout_s))

    def log_tail(self) -> str:
        return self.log_path.read_text()[-3000:] if self.log_path.exists() else ""

    def blob_private_key(self) -> Path:
        return secret_paths(self.run_dir)["blob_private_key"]


def start_ingest(
    base: Settings, run_dir: Path, *, topic_prefix: str | None = None, **env_overrides: str
) -> IngestServer:
    """`topic_prefix`: share another test server's topics (default: a prefix of its own)."""
    unique = uuid.uuid4().hex[:10]
    settings = dataclasses.replace(base, topic_prefix=topic_prefix or f"it-{unique}.")
    schema = f"ing_{unique}"
    init_secrets(run_dir)
    asyncio.run(prepare(base, settings.topic_registry(), every_consumer=False))
    address = f"127.0.0.1:{free_port()}"
    log_path = run_dir / "ingest.log"
    env = {
        **os.environ,
        "TT_TOPIC_PREFIX": settings.topic_prefix,
        "TT_INGEST_SCHEMA": schema,
        "TT_INGEST_ADDRESS": address,
        "TT_RUN_DIR": str(run_dir),
        **base.party_env("ingest"),
        "TT_DATABASE_URL": base.database_url,
        "TT_VALIDATOR_WORKERS": "2",
        "TT_TOPIC_PARTITIONS": str(base.topic_partitions),
        # The stack's own services hold the default metrics ports.
        "TT_METRICS_ADDRESS": "off",
        **env_overrides,
    }
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.ingest.main"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = IngestServer(address, settings, schema, run_dir, log_path, process)
    serving, detail = asyncio.run(wait_serving(address, 60))
    if not serving:
        stop_ingest(server)
        raise RuntimeError(f"ingest did not start ({detail}): {server.log_tail()}")
    return server


def stop_ingest(server: IngestServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()

    async def cleanup() -> None:
        conn = await asyncpg.connect(server.settings.database_url)
        await conn.execute(f"DROP SCHEMA IF EXISTS {server.schema} CASCADE")
        await conn.close()
        await remove(server.settings, server.settings.topic_registry())

    asyncio.run(cleanup())


def metadata_for(**fields) -> ingest_pb2.UploadMetadata:
    values = {
        "upload_id": f"u-{uuid.uuid4().hex[:12]}",
        "dataset_name": "field manuals",
        "format": contribution_pb2.DATASET_FORMAT_TEXT,
        "compression": contribution_pb2.COMPRESSION_NONE,
        "terms_id": CURRENT_TERMS_ID,
        "terms_sha256": accepted_terms()[CURRENT_TERMS_ID],
    }
    values.update(fields)
    return ingest_pb2.UploadMetadata(**values)


def upload_requests(metadata, *chunks: bytes):
    if metadata is not None:
        yield ingest_pb2.UploadRequest(metadata=metadata)
    for chunk in chunks:
        yield ingest_pb2.UploadRequest(chunk=chunk)


def bearer(record: dict) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {record['api_key']}"),)


def wait_until(condition, timeout_s: float = 10.0, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()
