"""One valid example of every fact type, wrapped in an envelope. Used by `1tt demo` to show
facts flowing, and by the tests as a base to mutate. Every id is derived from `run_id`, so
one run's facts never collide with another's."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from services.common.facts import FACTS, Envelope, make_envelope, timestamp
from services.rules.ids import derived_id
from tt.facts.v1 import common_pb2, consumer_pb2, contribution_pb2, identity_pb2, ledger_pb2

_EPOCH = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def example_payloads(run_id: str) -> dict[str, object]:
    """A valid payload of every fact type, keyed by event type, all about one story:
    ACME contributes a dataset, the consumer trains service `chat` on it and earns revenue."""
    contribution_id = derived_id("example.contribution", run_id)
    contributor_id = derived_id("example.contributor", run_id, "ACME")
    snapshot_id = derived_id("example.snapshot", run_id)
    service_id = f"chat-{run_id}"
    revenue_id = derived_id("revenue.recorded", "consumer", f"EXT-{run_id}")
    raw_sha = _sha(f"raw upload {run_id}")
    return {
        "contribution.received": contribution_pb2.ContributionReceived(
            contribution_id=contribution_id,
            contributor_id=contributor_id,
            upload_id=f"upload-{run_id}",
            dataset_name="field-manuals",
            format=contribution_pb2.DATASET_FORMAT_JSONL,
            compression=contribution_pb2.COMPRESSION_GZIP,
            raw_blob=common_pb2.BlobRef(
                uri=f"blob://sha256/{raw_sha}", sha256=raw_sha, byte_size=48_213
            ),
            document_count=120,
            accepted_terms=contribution_pb2.AcceptedTerms(
                terms_id="standard-2026-01",
                terms_sha256=_sha("terms"),
                accepted_at=timestamp(_EPOCH),
            ),
            encryption_key_id="local-key-1",
        ),
        "contribution.processed": contribution_pb2.ContributionProcessed(
            contribution_id=contribution_id,
            contributor_id=contributor_id,
            outcome=contribution_pb2.PROCESSING_OUTCOME_PROCESSED,
            pipeline_version="0.1.0",
            config_sha256=_sha("config"),
            tokenizer="tiktoken/cl100k_base",
            documents_in=120,
            documents_kept=112,
            tokens_raw=61_000,
            tokens_accepted=57_250,
            removals=[
                contribution_pb2.RemovalCount(
                    reason=contribution_pb2.REMOVAL_REASON_EXACT_DUPLICATE,
                    detail="within_upload",
                    documents=5,
                    tokens=2_500,
                ),
                contribution_pb2.RemovalCount(
                    reason=contribution_pb2.REMOVAL_REASON_QUALITY,
                    detail="min_words",
                    documents=3,
                    tokens=1_250,
                ),
            ],
            redactions=[contribution_pb2.RedactionCount(kind="email", count=4)],
            processed_shards=[
                common_pb2.BlobRef(
                    uri=f"blob://sha256/{_sha('shard')}", sha256=_sha("shard"), byte_size=40_000
                )
            ],
            language_documents={"en": 110, "de": 2},
        ),
        "contribution.withdrawn": contribution_pb2.ContributionWithdrawn(
            contribution_id=contribution_id,
            contributor_id=contributor_id,
            effective_at=timestamp(datetime(2027, 1, 1, tzinfo=UTC)),
            reason="licence ended",
        ),
        "agreement.published": consumer_pb2.AgreementPublished(
            agreement_id=derived_id("example.agreement", run_id),
            consumer_id="consumer",
            service_id=service_id,
            share_bps=1500,
            weighting_rule=consumer_pb2.WEIGHTING_RULE_ACCEPTED_TOKENS,
            effective_from=timestamp(datetime(2026, 1, 1, tzinfo=UTC)),
            currency="USD",
            min_payout_minor=1000,
        ),
        "snapshot.created": consumer_pb2.SnapshotCreated(
            snapshot_id=snapshot_id,
            consumer_id="consumer",
            name=f"s1-{run_id}",
            selection=consumer_pb2.SNAPSHOT_SELECTION_ALL_PROCESSED,
            as_of=timestamp(_EPOCH),
            members=[
                consumer_pb2.SnapshotMember(
                    contribution_id=contribution_id,
                    contributor_id=contributor_id,
                    tokens_accepted=57_250,
                    processed_event_id=derived_id("example.processed", run_id),
                )
            ],
            merkle_root=_sha(contribution_id),
        ),
        "service.deployed": consumer_pb2.ServiceDeployed(
            deployment_id=derived_id("example.deployment", run_id),
            consumer_id="consumer",
            service_id=service_id,
            snapshot_ids=[snapshot_id],
            deployed_from=timestamp(datetime(2026, 1, 1, tzinfo=UTC)),
        ),
        "revenue.recorded": consumer_pb2.RevenueRecorded(
            revenue_id=revenue_id,
            consumer_id="consumer",
            external_id=f"EXT-{run_id}",
            service_id=service_id,
            period="2026-11",
            amount_minor=1_000_000,
            currency="USD",
            agreement_id=derived_id("example.agreement", run_id),
            deployment_ids=[derived_id("example.deployment", run_id)],
        ),
        "revenue.adjusted": consumer_pb2.RevenueAdjusted(
            adjustment_id=derived_id("example.adjustment", run_id),
            consumer_id="consumer",
            revenue_id=revenue_id,
            service_id=service_id,
            delta_minor=-25_000,
            currency="USD",
            reason="refund to an enterprise customer",
        ),
        "allocation.made": ledger_pb2.AllocationMade(
            allocation_id=derived_id("allocation.made", revenue_id, contribution_id),
            revenue_id=revenue_id,
            service_id=service_id,
            agreement_id=derived_id("example.agreement", run_id),
            contributor_id=contributor_id,
            contribution_id=contribution_id,
            period="2026-11",
            currency="USD",
            allocated_micros=1_500_000_000,
            pool_micros=1_500_000_000,
            weight=57_250,
            total_weight=57_250,
        ),
        "payout.issued": ledger_pb2.PayoutIssued(
            payout_id=derived_id("payout.issued", contributor_id, "2026-11"),
            payout_run_id=derived_id("example.payout-run", run_id),
            contributor_id=contributor_id,
            period="2026-11",
            currency="USD",
            amount_minor=150_000,
            opening_carried_micros=0,
            carried_forward_micros=0,
            allocation_ids=[derived_id("allocation.made", revenue_id, contribution_id)],
        ),
        "principal.registered": identity_pb2.PrincipalRegistered(
            principal_id=contributor_id,
            role=identity_pb2.ROLE_CONTRIBUTOR,
            name=f"ACME {run_id}",
            api_key_sha256=_sha(f"key {run_id}"),
            api_key_prefix="tt_example",
        ),
        "key.registered": _example_key(run_id),
        "reference.registered": consumer_pb2.ReferenceRegistered(
            reference_id=derived_id("example.reference", run_id),
            consumer_id="consumer",
            fingerprints=common_pb2.BlobRef(
                uri=f"blob://sha256/{_sha(f'reference {run_id}')}",
                sha256=_sha(f"reference {run_id}"),
                byte_size=4096,
            ),
            documents=12,
        ),
        "principal.revoked": identity_pb2.PrincipalRevoked(
            principal_id=contributor_id,
            api_key_sha256=_sha(f"key {run_id}"),
            api_key_prefix="tt_example",
            reason="the key was pasted into a public chat",
        ),
        "snapshot.exported": consumer_pb2.SnapshotExported(
            export_id=derived_id("example.export", run_id),
            consumer_id="consumer",
            snapshot_id=derived_id("example.snapshot", run_id),
            merkle_root=_sha(f"members {run_id}"),
            format=consumer_pb2.EXPORT_FORMAT_JSONL,
            manifest_sha256=_sha(f"manifest {run_id}"),
            shard_count=1,
            documents=42,
            tokens=57_250,
        ),
    }


def _example_key(run_id: str) -> identity_pb2.KeyRegistered:
    """A key registration for an example ledger key, derived from the run id."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    seed = hashlib.sha256(f"example key {run_id}".encode()).digest()
    public = (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    fact = identity_pb2.KeyRegistered(
        key_id="ed25519:" + hashlib.sha256(public).hexdigest()[:32],
        party="ledger",
        public_key=public,
    )
    fact.valid_from.CopyFrom(timestamp(_EPOCH))
    return fact


def example_envelopes(
    run_id: str, producer: str = "example", without: tuple[str, ...] = ()
) -> list[Envelope]:
    """Every example payload (but those of the types in `without`) in an envelope with a
    deterministic event id, in registry order."""
    payloads = example_payloads(run_id)
    return [
        make_envelope(
            payloads[spec.event_type],
            event_id=derived_id(spec.event_type, "example", run_id),
            producer=producer,
            occurred_at=_EPOCH,
            recorded_at=_EPOCH,
            correlation_id=f"example-{run_id}",
        )
        for spec in FACTS
        if spec.event_type not in without
    ]
