"""A real payout service process for tests (own topic prefix, schema and port), and a
standard workload of facts published straight to its topics: principals of every role
with known keys, two contributors' contributions (received and processed, one with an
encrypted report in the blob store), an agreement and allocations of two revenue events.

    with PayoutServer.start(settings, tmp_path) as server:
        world = server.publish_world()
        server.get("/v1/me/statements/2026-11", world.keys["alice"])
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.cli.admin import init_secrets, secret_paths, wait_http_ready
from services.cli.provision import prepare, remove
from services.common.blobstore import BlobStore, load_public_key
from services.common.config import Settings
from services.common.db import connect
from services.common.identity import generate_api_key, role_number
from services.rules.allocation import Claim, split
from services.rules.ids import derived_id
from tests import ledger_facts as f
from tests.integration.conftest import publish_signed
from tests.integration.ingest_server import ROOT, free_port
from tt.facts.v1 import common_pb2, contribution_pb2, identity_pb2, ledger_pb2

PERIOD = "2026-10"


@dataclass
class World:
    """What publish_world put on the log, for assertions."""

    keys: dict[str, str] = field(default_factory=dict)  # name -> API key
    ids: dict[str, str] = field(default_factory=dict)  # name -> principal id
    contributions: dict[str, list[str]] = field(default_factory=dict)  # name -> ids
    allocations: list[ledger_pb2.AllocationMade] = field(default_factory=list)
    report: dict = field(default_factory=dict)  # the report of alice's first contribution

    def allocated_micros(self, name: str) -> int:
        return sum(
            a.allocated_micros for a in self.allocations if a.contributor_id == self.ids[name]
        )


@dataclass
class PayoutServer:
    settings: Settings
    schema: str
    url: str
    run_dir: Path
    process: subprocess.Popen
    metrics_url: str = ""  # the service's /metrics, on an address of its own

    @classmethod
    def start(cls, base: Settings, run_dir: Path, topic_prefix: str | None = None) -> PayoutServer:
        """`topic_prefix`: share another test server's topics (default: its own)."""
        unique = uuid.uuid4().hex[:10]
        settings = dataclasses.replace(base, topic_prefix=topic_prefix or f"it-{unique}.")
        schema = f"pay_{unique}"
        run_dir.mkdir(parents=True, exist_ok=True)
        init_secrets(run_dir)
        port, metrics_port = free_port(), free_port()
        env = {
            **os.environ,
            "TT_TOPIC_PREFIX": settings.topic_prefix,
            "TT_PAYOUT_SCHEMA": schema,
            "TT_PAYOUT_ADDRESS": f"127.0.0.1:{port}",
            "TT_RUN_DIR": str(run_dir),
            **base.party_env("payout"),
            "TT_DATABASE_URL": base.database_url,
            "TT_TOPIC_PARTITIONS": str(base.topic_partitions),
            "TT_PAYOUT_SESSION_TIMEOUT_MS": "6000",
            "TT_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
        }
        asyncio.run(prepare(base, settings.topic_registry(), every_consumer=False))
        with (run_dir / "payout.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "services.payout.main"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = cls(
            settings,
            schema,
            f"http://127.0.0.1:{port}",
            run_dir,
            process,
            f"http://127.0.0.1:{metrics_port}/metrics",
        )
        ready, detail = asyncio.run(wait_http_ready(f"{server.url}/readyz", 60))
        if not ready:
            server.stop()
            raise RuntimeError(f"payout did not start ({detail}): {server.log_tail()}")
        return server

    def __enter__(self) -> PayoutServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

        async def drop() -> None:
            conn = await connect(self.settings.database_url, "public", application_name="tests")
            try:
                await conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
            finally:
                await conn.close()
            await remove(self.settings, self.settings.topic_registry())

        asyncio.run(drop())

    def log_tail(self) -> str:
        path = self.run_dir / "payout.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    # -- HTTP ------------------------------------------------------------------------

    def request(self, method: str, path: str, key: str | None = None, **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def get(self, path: str, key: str | None = None, **kwargs) -> httpx.Response:
        return self.request("GET", path, key, **kwargs)

    def wait_until(self, predicate, timeout_s: float = 60.0, what: str = "the service") -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}\n{self.log_tail()}")

    # -- the standard workload -------------------------------------------------------

    def publish_world(self) -> World:
        """Principals alice and bob (contributors), acme (consumer), olga (operator),
        audrey (auditor); alice has 2 contributions, bob 1; one agreement; two revenue
        events split over the three contributions; waits until the service has them."""
        world = World()
        run = uuid.uuid4().hex[:6]
        envelopes = []
        for name, role in [
            ("alice", "contributor"),
            ("bob", "contributor"),
            ("acme", "consumer"),
            ("olga", "operator"),
            ("audrey", "auditor"),
        ]:
            key = generate_api_key()
            principal_id = derived_id("test.principal", run, name)
            world.keys[name], world.ids[name] = key.key, principal_id
            envelopes.append(
                f.envelope(
                    identity_pb2.PrincipalRegistered(
                        principal_id=principal_id,
                        role=role_number(role),
                        name=f"{name.title()} {run}",
                        api_key_sha256=key.sha256,
                        api_key_prefix=key.prefix,
                    ),
                    derived_id("principal.registered", principal_id),
                )
            )
        report_ref, world.report = self._write_report(run)
        tokens = {"alice": [30_000, 12_345], "bob": [20_000]}
        processed = []
        for name, counts in tokens.items():
            world.contributions[name] = []
            for index, count in enumerate(counts):
                cid = derived_id("test.contribution", run, name, str(index))
                world.contributions[name].append(cid)
                received = contribution_pb2.ContributionReceived(
                    contribution_id=cid,
                    contributor_id=world.ids[name],
                    upload_id=f"u-{run}-{name}-{index}",
                    dataset_name=f"{name}-dataset",
                    file_name=f"{name}-{index}.jsonl",
                    format=contribution_pb2.DATASET_FORMAT_JSONL,
                    compression=contribution_pb2.COMPRESSION_NONE,
                    raw_blob=common_pb2.BlobRef(
                        uri=f"blob://sha256/{'a' * 64}", sha256="a" * 64, byte_size=1000 + index
                    ),
                    document_count=3,
                    accepted_terms=contribution_pb2.AcceptedTerms(
                        terms_id="standard-2026-01",
                        terms_sha256="b" * 64,
                        accepted_at=f.timestamp(f.T0),
                    ),
                    encryption_key_id="k",
                )
                envelopes.append(f.envelope(received, derived_id("test.received", cid)))
                done = f.processed(cid, world.ids[name], count)
                if name == "alice" and index == 0:
                    done.contribution_processed.report.CopyFrom(report_ref)
                    done.contribution_processed.documents_in = 3
                    done.contribution_processed.documents_kept = 2
                    done.contribution_processed.removals.add(
                        reason=contribution_pb2.REMOVAL_REASON_NEAR_DUPLICATE,
                        detail="earlier_contribution",
                        documents=1,
                        tokens=500,
                    )
                    done.contribution_processed.tokens_raw = count + 500
                    done.contribution_processed.redactions.add(kind="email", count=2)
                    done.contribution_processed.language_documents["en"] = 2
                envelopes.append(done)
                processed.append((cid, world.ids[name], count))
        agreement_id = f"agreement-{run}"
        envelopes.append(
            f.agreement(agreement_id, world.ids["acme"], "chat", 1500, min_payout_minor=1000)
        )
        claims = [Claim(cid, owner, count) for cid, owner, count in processed]
        for external, amount_micros in [("R1", 1_500_000_000), ("R2", 333_333_333)]:
            revenue_id = derived_id("test.revenue", run, external)
            for part in split(amount_micros, claims):
                fact = ledger_pb2.AllocationMade(
                    allocation_id=derived_id("allocation.made", revenue_id, part.contribution_id),
                    revenue_id=revenue_id,
                    service_id="chat",
                    agreement_id=agreement_id,
                    contributor_id=part.contributor_id,
                    contribution_id=part.contribution_id,
                    period=PERIOD,
                    currency="USD",
                    allocated_micros=part.micros,
                    pool_micros=amount_micros,
                    weight=part.weight,
                    total_weight=part.total_weight,
                )
                world.allocations.append(fact)
                envelopes.append(f.envelope(fact, fact.allocation_id))
        asyncio.run(self._publish(envelopes))
        expected = len(world.allocations)
        self.wait_until(
            lambda: (
                len(self.get("/v1/allocations", world.keys["olga"]).json().get("allocations", []))
                == expected
                and self.get("/v1/me/contributions", world.keys["alice"]).status_code == 200
                and len(
                    self.get("/v1/me/contributions", world.keys["alice"]).json()["contributions"]
                )
                == 2
            ),
            what="the payout service to project the workload",
        )
        return world

    def _write_report(self, run: str) -> tuple[common_pb2.BlobRef, dict]:
        paths = secret_paths(self.run_dir)
        public_key = load_public_key(paths["report_public_key"])
        # The shape of ReportBuilder.to_dict, agreeing with the processed fact publish_world
        # sends for alice's first contribution; the excerpt tests that pages escape it.
        report = {
            "contribution_id": f"report-{run}",
            "pipeline_version": "test",
            "config_sha256": "c" * 64,
            "tokenizer": "tiktoken/cl100k_base",
            "documents": {"in": 3, "kept": 2},
            "tokens": {"raw": 30_500, "accepted": 30_000},
            "removals": [
                {
                    "reason": "near_duplicate",
                    "detail": "earlier_contribution",
                    "documents": 1,
                    "tokens": 500,
                    "examples": [{"document": "doc-3", "excerpt": "<b>copied</b> & pasted"}],
                }
            ],
            "redactions": {"email": 2},
            "languages": {"en": 2},
            "quality_histogram": {"bin_width": 0.1, "counts": [0, 0, 0, 0, 0, 1, 0, 1, 1, 0]},
        }
        blobs = BlobStore(Path(self.run_dir) / "blobs")
        with blobs.open_writer(public_key) as writer:
            writer.write(json.dumps(report).encode())
            stored = writer.commit()
        ref = common_pb2.BlobRef(uri=stored.uri, sha256=stored.sha256, byte_size=stored.byte_size)
        return ref, report

    async def _publish(self, envelopes) -> None:
        await publish_signed(self.settings, self.settings.topic_registry(), *envelopes)
