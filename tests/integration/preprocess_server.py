"""A real preprocess worker (Faust) beside a real ingest, for tests: same topic prefix,
keys and blob store; its own Faust data folder."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
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


# What a worker did, in order: group membership, readiness, work, trouble.
_EVENTS = re.compile(
    r"generation|newly assigned|Worker ready|prepared |processed |failpoint|WARNING|ERROR|"
    r"Traceback|Error:"
)


def stuck_report(process: subprocess.Popen, ingest: IngestServer) -> str:
    """For a worker that stopped making progress: the events of the whole log, then what
    each of its asyncio tasks was waiting on (Faust's worker dumps every thread and task
    on SIGUSR1; only the task names and their innermost frames are kept)."""
    path = ingest.run_dir / "preprocess.log"
    before = path.stat().st_size if path.exists() else 0
    if process.poll() is None:
        os.kill(process.pid, signal.SIGUSR1)
        time.sleep(3)
    text = path.read_text(errors="replace") if path.exists() else ""
    events = [line for line in text[:before].splitlines() if _EVENTS.search(line)]
    tasks: list[list[str]] = []  # [name, frames...]
    for line in text[before:].splitlines():
        if line.startswith("  TASK ") or line.startswith("THREAD "):
            tasks.append([line.strip()])
        elif tasks and line.lstrip().startswith('File "'):
            tasks[-1].append(line.strip())
    described = []
    for name, *frames in tasks:
        ours = [f for f in frames if "/services/" in f]
        where = ours[-1] if ours else (frames[-1] if frames else "no frame")
        described.append((not ours, f"{name}\n      at {where}"))
    described.sort(key=lambda item: item[0])  # tasks in the platform's own code first
    return "\n".join(
        [
            "events:",
            *events[-60:],
            "tasks at the time (innermost frame in services/, else innermost):",
            *[text for _, text in described[:60]],
        ]
    )


def processed_facts(ingest: IngestServer, expected: int, timeout_s: float = 120.0) -> dict:
    """contribution_id -> the ContributionProcessed payloads seen (a list: repeats allowed)."""
    topic = ingest.settings.topic_registry().fact_topic("contribution.processed")
    records = asyncio.run(read_topic(ingest.settings.kafka, topic, expected, timeout_s))
    facts: dict[str, list] = {}
    for record in records:
        envelope = decode(record.value)
        facts.setdefault(envelope.key, []).append(envelope)
    return facts
