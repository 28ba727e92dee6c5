"""Builders of the facts the ledger reads, valid by construction, for tests and benches."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

from services.common.facts import Envelope, make_envelope, timestamp
from services.rules.ids import derived_id
from services.rules.merkle import snapshot_root
from tt.facts.v1 import consumer_pb2, contribution_pb2

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def envelope(payload, event_id: str, at: datetime = T0) -> Envelope:
    return make_envelope(
        payload, event_id=event_id, producer="tests", occurred_at=at, recorded_at=at
    )


def processed(contribution_id: str, contributor_id: str, tokens: int) -> Envelope:
    fact = contribution_pb2.ContributionProcessed(
        contribution_id=contribution_id,
        contributor_id=contributor_id,
        outcome=contribution_pb2.PROCESSING_OUTCOME_PROCESSED,
        pipeline_version="test",
        config_sha256=_sha("config"),
        tokenizer="tiktoken/cl100k_base",
        documents_in=1,
        documents_kept=1,
        tokens_raw=tokens,
        tokens_accepted=tokens,
    )
    return envelope(fact, derived_id("test.processed", contribution_id))


def withdrawn(contribution_id: str, contributor_id: str, at: datetime) -> Envelope:
    fact = contribution_pb2.ContributionWithdrawn(
        contribution_id=contribution_id, contributor_id=contributor_id
    )
    fact.effective_at.CopyFrom(timestamp(at))
    return envelope(fact, derived_id("test.withdrawn", contribution_id, at.isoformat()))


def agreement(
    agreement_id: str,
    consumer_id: str,
    service: str,
    share_bps: int,
    start: datetime = T0,
    until: datetime | None = None,
    currency: str = "USD",
    min_payout_minor: int = 0,
) -> Envelope:
    fact = consumer_pb2.AgreementPublished(
        agreement_id=agreement_id,
        consumer_id=consumer_id,
        service_id=service,
        share_bps=share_bps,
        weighting_rule=consumer_pb2.WEIGHTING_RULE_ACCEPTED_TOKENS,
        effective_from=timestamp(start),
        currency=currency,
        min_payout_minor=min_payout_minor,
    )
    if until is not None:
        fact.effective_until.CopyFrom(timestamp(until))
    return envelope(fact, derived_id("agreement.published", agreement_id))


def snapshot(snapshot_id: str, consumer_id: str, members: Sequence[Envelope]) -> Envelope:
    """A snapshot of the given contribution.processed envelopes."""
    rows = sorted(
        (
            consumer_pb2.SnapshotMember(
                contribution_id=e.contribution_processed.contribution_id,
                contributor_id=e.contribution_processed.contributor_id,
                tokens_accepted=e.contribution_processed.tokens_accepted,
                processed_event_id=e.event_id,
            )
            for e in members
        ),
        key=lambda m: m.contribution_id,
    )
    fact = consumer_pb2.SnapshotCreated(
        snapshot_id=snapshot_id,
        consumer_id=consumer_id,
        name=f"name-{snapshot_id}",
        selection=consumer_pb2.SNAPSHOT_SELECTION_LISTED,
        members=rows,
        merkle_root=snapshot_root(rows),
    )
    return envelope(fact, derived_id("snapshot.created", snapshot_id))


def deployment(
    deployment_id: str, consumer_id: str, service: str, snapshot_ids: Sequence[str], at=T0
) -> Envelope:
    fact = consumer_pb2.ServiceDeployed(
        deployment_id=deployment_id,
        consumer_id=consumer_id,
        service_id=service,
        snapshot_ids=list(snapshot_ids),
        deployed_from=timestamp(at),
    )
    return envelope(fact, derived_id("service.deployed", deployment_id))


def revenue(
    consumer_id: str,
    external_id: str,
    service: str,
    period: str,
    amount_minor: int,
    agreement_id: str,
    deployment_ids: Sequence[str],
    currency: str = "USD",
) -> Envelope:
    revenue_id = derived_id("revenue.recorded", consumer_id, external_id)
    fact = consumer_pb2.RevenueRecorded(
        revenue_id=revenue_id,
        consumer_id=consumer_id,
        external_id=external_id,
        service_id=service,
        period=period,
        amount_minor=amount_minor,
        currency=currency,
        agreement_id=agreement_id,
        deployment_ids=list(deployment_ids),
    )
    digest = _sha(fact.SerializeToString(deterministic=True).hex())
    return envelope(fact, derived_id("revenue.recorded.event", revenue_id, digest))


def adjustment(
    consumer_id: str,
    adjustment_id: str,
    revenue_id: str,
    service: str,
    delta_minor: int,
    currency: str = "USD",
) -> Envelope:
    fact = consumer_pb2.RevenueAdjusted(
        adjustment_id=adjustment_id,
        consumer_id=consumer_id,
        revenue_id=revenue_id,
        service_id=service,
        delta_minor=delta_minor,
        currency=currency,
        reason="test correction",
    )
    return envelope(fact, derived_id("revenue.adjusted", adjustment_id))
