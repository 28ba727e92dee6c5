"""A real preprocess worker (Faust) beside a real ingest, for tests: same topic prefix,
keys and blob store; its own Faust data folder."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from services.cli.admin import wait_group_stable
from services.common.facts import decode
from tests.integration.conftest import read_topic
from tests.integration.ingest_server import ROOT, IngestServer


def start_preprocess(
    ingest: IngestServer,
    datadir: Path,
    failpoints: str = "",
    wait: bool = True,
    **env_overrides: str,
) -> subprocess.Popen:
    env = {
        **os.environ,
        "TT_TOPIC_PREFIX": ingest.settings.topic_prefix,
        "TT_RUN_DIR": str(ingest.run_dir),
        "TT_PREPROCESS_DATADIR": str(datadir),
        **ingest.settings.party_env("preprocess"),
        "TT_DATABASE_URL": ingest.settings.database_url,
        "TT_PREPROCESS_WORKERS": "2",
        "TT_FAILPOINTS": failpoints,
        "TT_PREPROCESS_SESSION_TIMEOUT_S": "6",
        "TT_TOPIC_PARTITIONS": str(ingest.settings.topic_partitions),
        "TT_METRICS_ADDRESS": "off",
        **env_overrides,
    }
    log = (ingest.run_dir / "preprocess.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.preprocess.main"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    if not wait:
        return process
    group = f"{ingest.settings.topic_prefix}tt-preprocess"
    ready, detail = asyncio.run(wait_group_stable(ingest.settings.kafka, group, 120))
    if not ready and process.poll() is None:
        process.kill()
    if not ready:
        raise RuntimeError(f"preprocess did not start ({detail}): {preprocess_log(ingest)}")
    return process


def stop_preprocess(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def preprocess_log(ingest: IngestServer) -> str:
    path = ingest.run_dir / "preprocess.log"
    return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def processed_facts(ingest: IngestServer, expected: int, timeout_s: float = 120.0) -> dict:
    """contribution_id -> the ContributionProcessed payloads seen (a list: repeats allowed)."""
    topic = ingest.settings.topic_registry().fact_topic("contribution.processed")
    records = asyncio.run(read_topic(ingest.settings.kafka, topic, expected, timeout_s))
    facts: dict[str, list] = {}
    for record in records:
        envelope = decode(record.value)
        facts.setdefault(envelope.key, []).append(envelope)
    return facts
