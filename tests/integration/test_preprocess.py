"""Preprocessing end to end: real ingest and preprocess processes, real Kafka, real blobs."""

from __future__ import annotations

import json

import pytest

from services.common.blobstore import BlobStore, load_private_key
from services.preprocess.genres import clean_documents
from services.preprocess.pipeline import PipelineConfig, prepare_document
from tests.integration.ingest_server import bearer, metadata_for, start_ingest, stop_ingest
from tests.integration.preprocess_server import (
    preprocess_log,
    processed_facts,
    start_preprocess,
    stop_preprocess,
)
from tt.facts.v1 import contribution_pb2

pytestmark = pytest.mark.integration
JSONL = contribution_pb2.DATASET_FORMAT_JSONL
PII_LETTER = (
    "Dear colleague, thank you for sending the archive boxes. If anything is missing, "
    "write to jane.doe@example.com or call +44 20 7946 0958 and we will arrange a "
    "second delivery before the end of the month. The inventory lists every folder "
    "by shelf and by year, so the catalogue can be checked against it quickly."
)


def near_copy(text: str) -> str:
    words = text.split()
    for position in (len(words) // 4, len(words) // 2, 3 * len(words) // 4):
        words[position] = "revised"
    return " ".join(words)


@pytest.fixture(scope="module")
def documents() -> list[str]:
    technical = [d for d in clean_documents()["technical"] if 300 < len(d.split()) < 2000]
    return technical[:6]


@pytest.fixture(scope="module")
def platform(settings, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("preprocess")
    ingest = start_ingest(settings, run_dir)
    worker = start_preprocess(ingest, run_dir / "faust")
    yield ingest
    stop_preprocess(worker)
    stop_ingest(ingest)


def jsonl(texts: list[str]) -> bytes:
    return "".join(
        json.dumps({"text": t, "id": f"doc-{i}"}) + "\n" for i, t in enumerate(texts)
    ).encode()


def upload(ingest, who, data: bytes):
    from tests.integration.ingest_server import upload_requests

    return (
        ingest.stub()
        .Upload(upload_requests(metadata_for(format=JSONL), data), metadata=bearer(who))
        .receipt
    )


def expected_tokens(texts: list[str]) -> int:
    config = PipelineConfig()
    return sum(prepare_document(i, t, None, config).tokens for i, t in enumerate(texts))


def removals(fact) -> dict:
    names = contribution_pb2.RemovalReason.Name
    return {(names(r.reason), r.detail): r.documents for r in fact.removals}


def test_duplicates_are_paid_once_to_the_earlier_contributor_and_pii_never_reaches_shards(
    platform, documents
):
    ingest = platform
    earlier, later = ingest.principal(), ingest.principal()
    first_texts = [*documents[:4], documents[4] + "\n\n" + PII_LETTER]
    first = upload(ingest, earlier, jsonl(first_texts))
    facts = processed_facts(ingest, 1)
    assert first.body.contribution_id in facts, preprocess_log(ingest)
    [fact_a] = {f.SerializeToString(): f for f in facts[first.body.contribution_id]}.values()
    a = fact_a.contribution_processed
    assert a.outcome == contribution_pb2.PROCESSING_OUTCOME_PROCESSED
    assert (a.documents_in, a.documents_kept) == (5, 5)
    assert a.tokens_accepted == a.tokens_raw == expected_tokens(first_texts)
    assert {r.kind: r.count for r in a.redactions} == {"email": 1, "phone": 1}

    # The processed shard holds the redacted text only.
    [shard] = a.processed_shards
    key = load_private_key(ingest.blob_private_key())
    stored = BlobStore(ingest.blob_root).open_reader(shard.uri, key).read().decode()
    assert "jane.doe@example.com" not in stored and "7946 0958" not in stored
    assert "[EMAIL]" in stored and "[PHONE]" in stored
    assert stored.count("\n") == 5

    # A later contributor sends an exact copy, a near copy and something new.
    second_texts = [documents[1], near_copy(documents[2]), documents[5]]
    second = upload(ingest, later, jsonl(second_texts))
    facts = processed_facts(ingest, 2)
    assert second.body.contribution_id in facts, preprocess_log(ingest)
    b = facts[second.body.contribution_id][0].contribution_processed
    assert (b.documents_in, b.documents_kept) == (3, 1)
    assert removals(b) == {
        ("REMOVAL_REASON_EXACT_DUPLICATE", "earlier_contribution"): 1,
        ("REMOVAL_REASON_NEAR_DUPLICATE", "earlier_contribution"): 1,
    }
    assert b.tokens_accepted == expected_tokens([documents[5]])
    # The full report reaches its contributor through the API, quoting only its own text.
    from tt.ingest.v1 import ingest_pb2

    own = (
        ingest.stub()
        .GetContribution(
            ingest_pb2.GetContributionRequest(contribution_id=second.body.contribution_id),
            metadata=bearer(later),
        )
        .contribution
    )
    report = json.loads(own.report_json)
    assert report["documents"] == {"in": 3, "kept": 1}
    examples = [e for removal in report["removals"] for e in removal["examples"]]
    assert sorted(e["document"] for e in examples) == ["doc-0", "doc-1"]
    assert sum(report["quality_histogram"]["counts"]) == 3
    # The earlier contributor's count did not change: it was paid, and once.
    assert facts[first.body.contribution_id][0].contribution_processed.tokens_accepted == (
        a.tokens_accepted
    )


def test_duplicates_within_one_upload_keep_the_first_copy(platform, documents):
    ingest = platform
    who = ingest.principal()
    # Text no one has contributed: the words of a document in reverse order.
    fresh = " ".join(reversed(documents[4].split()))
    receipt = upload(ingest, who, jsonl([fresh, fresh, near_copy(fresh)]))
    facts = processed_facts(ingest, 3)
    fact = facts[receipt.body.contribution_id][0].contribution_processed
    assert (fact.documents_in, fact.documents_kept) == (3, 1)
    assert removals(fact) == {
        ("REMOVAL_REASON_EXACT_DUPLICATE", "within_upload"): 1,
        ("REMOVAL_REASON_NEAR_DUPLICATE", "within_upload"): 1,
    }
    assert fact.tokens_accepted == expected_tokens([fresh])


def test_copies_of_the_consumers_reference_corpus_earn_nothing(platform, documents, tmp_path):
    import asyncio

    from services.cli.ledger_cli import consumer_settings
    from services.cli.reference import reference

    ingest = platform
    reference_text = " ".join(reversed(documents[2].split()))  # text nobody contributed
    reference_file = tmp_path / "reference.jsonl"
    reference_file.write_text(json.dumps({"text": reference_text}) + "\n")
    # The consumer publishes a reference.registered fact with its own credentials.
    consumer = consumer_settings(ingest.settings, ingest.principal("consumer")["credentials"])
    registered = asyncio.run(reference(consumer, [str(reference_file)], ingest.run_dir))
    assert registered["documents"] == 1

    who = ingest.principal()
    own = " ".join(reversed(documents[5].split()))
    receipt = upload(ingest, who, jsonl([reference_text, near_copy(reference_text), own]))
    facts = processed_facts(ingest, 4)
    assert receipt.body.contribution_id in facts, preprocess_log(ingest)
    fact = facts[receipt.body.contribution_id][0].contribution_processed
    assert removals(fact) == {
        ("REMOVAL_REASON_REFERENCE_DUPLICATE", "exact"): 1,
        ("REMOVAL_REASON_REFERENCE_DUPLICATE", "near"): 1,
    }
    assert fact.tokens_accepted == expected_tokens([own])


def test_only_the_consumer_may_register_a_reference_corpus(platform, tmp_path):
    import os
    import subprocess
    import sys

    from tests.integration.ingest_server import ROOT

    ingest = platform
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("A reference document of the consumer's own. " * 20)
    env = {
        **os.environ,
        **ingest.settings.party_env("admin"),
        "TT_TOPIC_PREFIX": ingest.settings.topic_prefix,
        "TT_RUN_DIR": str(ingest.run_dir),
    }

    def reference(credentials: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                *(sys.executable, "-m", "services.cli.main", "consumer", "reference"),
                *(str(corpus), "--json", "--credentials", credentials),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    # A contributor has no consumer credentials; a service's folder is not a consumer's.
    refused = reference(str(ingest.settings.party_credentials("ingest")))
    assert refused.returncode == 1 and "no consumer credentials" in refused.stderr
    accepted = reference(ingest.principal("consumer")["credentials"])
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["documents"] == 1
