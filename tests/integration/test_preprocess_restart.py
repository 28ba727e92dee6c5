"""A preprocess worker killed mid-stream, twice, at different points, ends with the same
facts as a worker that ran without interruption: one fact per contribution, the same
counts, no document counted as a duplicate of itself."""

from __future__ import annotations

import dataclasses
import signal
import subprocess

import pytest

from services.preprocess.genres import clean_documents
from tests.integration.ingest_server import start_ingest, stop_ingest
from tests.integration.preprocess_server import (
    preprocess_log,
    processed_facts,
    start_preprocess,
    stop_preprocess,
    stuck_report,
)
from tests.integration.test_preprocess import jsonl, near_copy, upload

pytestmark = pytest.mark.integration


def workload() -> list[tuple[int, list[str]]]:
    docs = [d for d in clean_documents()["technical"] if 300 < len(d.split()) < 2000][6:14]
    return [
        (0, docs[0:3]),
        (1, [docs[3], docs[1], near_copy(docs[2])]),  # copies of contributor 0's text
        (0, [docs[4], docs[4], docs[5]]),  # a copy within the upload
        (1, [docs[6], near_copy(docs[6]), docs[7], docs[0]]),
    ]


def summary(fact) -> tuple:
    return (
        fact.documents_in,
        fact.documents_kept,
        fact.tokens_raw,
        fact.tokens_accepted,
        sorted((r.reason, r.detail, r.documents, r.tokens) for r in fact.removals),
        sorted((r.kind, r.count) for r in fact.redactions),
    )


def run(settings, run_dir, crashes: list[str]) -> list[tuple]:
    ingest = start_ingest(settings, run_dir)
    try:
        principals = [ingest.principal(), ingest.principal()]
        receipts = [upload(ingest, principals[who], jsonl(texts)) for who, texts in workload()]
        for failpoint in crashes:
            worker = start_preprocess(ingest, run_dir / "faust", failpoints=failpoint, wait=False)
            try:
                assert worker.wait(180) == -signal.SIGKILL, preprocess_log(ingest)
            except subprocess.TimeoutExpired:
                report = stuck_report(worker, ingest)
                stop_preprocess(worker)
                raise AssertionError(f"{failpoint} was never reached:\n{report}") from None
        worker = start_preprocess(ingest, run_dir / "faust")
        try:
            ids = [receipt.body.contribution_id for receipt in receipts]
            facts = processed_facts(ingest, len(ids), timeout_s=180)
            while not set(ids) <= set(facts):
                facts = processed_facts(ingest, len(ids) + 1, timeout_s=30)
                assert worker.poll() is None, preprocess_log(ingest)
        finally:
            stop_preprocess(worker)
        for contribution_id in ids:
            payloads = {
                f.contribution_processed.SerializeToString() for f in facts[contribution_id]
            }
            assert len(payloads) == 1, f"{contribution_id} got different facts"
        return [summary(facts[i][0].contribution_processed) for i in ids]
    finally:
        stop_ingest(ingest)


def test_a_worker_killed_mid_stream_produces_the_same_facts_as_an_uninterrupted_run(
    settings, tmp_path
):
    one_partition = dataclasses.replace(settings, topic_partitions=1)
    uninterrupted = run(one_partition, tmp_path / "straight", [])
    interrupted = run(
        one_partition,
        tmp_path / "crashing",
        ["preprocess.after_sequence_send@2", "preprocess.after_publish@2"],
    )
    assert interrupted == uninterrupted
    # And the facts say what the workload planted.
    removed = [sum(r[2] for r in fact[4]) for fact in uninterrupted]
    assert removed == [0, 2, 1, 2]
