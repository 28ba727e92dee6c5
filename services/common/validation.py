"""Schema validation beyond what protobuf types enforce. Every consumer validates every
fact it reads (it never trusts the producer), and every producer validates before it
sends. Problems are phrased so that whoever produced the fact can fix it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.facts import BY_EVENT_TYPE, SCHEMA_VERSION, Envelope, payload_of
from tt.facts.v1 import consumer_pb2, contribution_pb2, identity_pb2, ledger_pb2

_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# fullmatch, [A-Z] and [0-9]: no trailing newline, no non-ASCII digits.
_CURRENCY = re.compile(r"[A-Z]{3}")
_PERIOD = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")
MAX_ID_LENGTH = 200
BPS_PER_UNIT = 10_000


class FactValidationError(ValueError):
    """A fact breaks the schema's rules. `problems` lists each broken rule."""

    def __init__(self, subject: str, problems: list[str]):
        self.subject = subject
        self.problems = problems
        super().__init__(f"{subject} is invalid: " + "; ".join(problems))


class _Problems(list[str]):
    """Collects rule violations with field-path-first wording."""

    def required(self, message: Message, *fields: str) -> None:
        for field in fields:
            value = getattr(message, field)
            if value in ("", 0) or (hasattr(value, "__len__") and len(value) == 0):
                self.append(f"{field} is required")
            elif isinstance(value, str) and len(value) > MAX_ID_LENGTH and field.endswith("_id"):
                self.append(f"{field} must be at most {MAX_ID_LENGTH} characters")

    def sha256(self, path: str, value: str) -> None:
        if not _HEX_SHA256.match(value):
            self.append(f"{path} must be 64 lower-case hex characters (a SHA-256), got {value!r}")

    def currency(self, value: str) -> None:
        if not _CURRENCY.fullmatch(value):
            self.append(f"currency must be a 3-letter ISO 4217 code such as 'USD', got {value!r}")

    def period(self, value: str) -> None:
        if not _PERIOD.fullmatch(value):
            self.append(
                f"period must be a calendar month 'YYYY-MM' such as '2026-11', got {value!r}"
            )

    def timestamp_set(self, path: str, stamp: Timestamp) -> None:
        if stamp.seconds <= 0 and stamp.nanos == 0:
            self.append(f"{path} is required (a time after 1970-01-01)")

    def enum_set(self, message: Message, field: str) -> None:
        if getattr(message, field) == 0:
            enum = message.DESCRIPTOR.fields_by_name[field].enum_type
            choices = ", ".join(v.name for v in enum.values if v.number != 0)
            self.append(f"{field} must be set to one of {choices}")

    def unique(self, path: str, values: Iterable[str]) -> None:
        seen: set[str] = set()
        for value in values:
            if value in seen:
                self.append(f"{path} lists {value!r} more than once")
            seen.add(value)


def _contribution_received(fact: contribution_pb2.ContributionReceived, p: _Problems) -> None:
    p.required(fact, "contribution_id", "contributor_id", "upload_id", "dataset_name")
    p.enum_set(fact, "format")
    p.enum_set(fact, "compression")
    if not fact.raw_blob.uri:
        p.append("raw_blob.uri is required")
    p.sha256("raw_blob.sha256", fact.raw_blob.sha256)
    if fact.raw_blob.byte_size == 0:
        p.append("raw_blob.byte_size must be positive: an empty upload is not a contribution")
    if not fact.accepted_terms.terms_id:
        p.append("accepted_terms.terms_id is required")
    p.sha256("accepted_terms.terms_sha256", fact.accepted_terms.terms_sha256)
    p.timestamp_set("accepted_terms.accepted_at", fact.accepted_terms.accepted_at)


def _contribution_processed(fact: contribution_pb2.ContributionProcessed, p: _Problems) -> None:
    p.required(fact, "contribution_id", "contributor_id")
    p.enum_set(fact, "outcome")
    if fact.outcome == contribution_pb2.PROCESSING_OUTCOME_REJECTED:
        if not fact.rejection_reason:
            p.append("rejection_reason is required when outcome is REJECTED")
        if fact.tokens_accepted:
            p.append("tokens_accepted must be 0 when outcome is REJECTED")
        return
    p.required(fact, "pipeline_version", "tokenizer")
    p.sha256("config_sha256", fact.config_sha256)
    if fact.documents_kept > fact.documents_in:
        p.append(
            f"documents_kept ({fact.documents_kept}) cannot exceed "
            f"documents_in ({fact.documents_in})"
        )
    if fact.tokens_accepted > fact.tokens_raw:
        p.append(
            f"tokens_accepted ({fact.tokens_accepted}) cannot exceed tokens_raw ({fact.tokens_raw})"
        )
    removed = sum(removal.documents for removal in fact.removals)
    if (
        fact.documents_kept <= fact.documents_in
        and removed != fact.documents_in - fact.documents_kept
    ):
        p.append(
            f"removals account for {removed} documents but documents_in - documents_kept is "
            f"{fact.documents_in - fact.documents_kept}: every removed document needs a reason"
        )
    for index, removal in enumerate(fact.removals):
        if removal.reason == contribution_pb2.REMOVAL_REASON_UNSPECIFIED:
            p.append(f"removals[{index}].reason must be set")
    for index, shard in enumerate(fact.processed_shards):
        p.sha256(f"processed_shards[{index}].sha256", shard.sha256)


def _contribution_withdrawn(fact: contribution_pb2.ContributionWithdrawn, p: _Problems) -> None:
    p.required(fact, "contribution_id", "contributor_id")
    p.timestamp_set("effective_at", fact.effective_at)


def _agreement_published(fact: consumer_pb2.AgreementPublished, p: _Problems) -> None:
    p.required(fact, "agreement_id", "consumer_id", "service_id")
    if fact.share_bps > BPS_PER_UNIT:
        p.append(f"share_bps must be between 0 and {BPS_PER_UNIT} (100%), got {fact.share_bps}")
    p.enum_set(fact, "weighting_rule")
    p.timestamp_set("effective_from", fact.effective_from)
    if fact.HasField("effective_until") and (
        fact.effective_until.ToNanoseconds() <= fact.effective_from.ToNanoseconds()
    ):
        p.append("effective_until must be later than effective_from")
    p.currency(fact.currency)
    if fact.min_payout_minor < 0:
        p.append(f"min_payout_minor cannot be negative, got {fact.min_payout_minor}")


def _snapshot_created(fact: consumer_pb2.SnapshotCreated, p: _Problems) -> None:
    p.required(fact, "snapshot_id", "consumer_id", "name")
    p.enum_set(fact, "selection")
    if not fact.members:
        p.append("members is empty: a snapshot must contain at least one processed contribution")
    ids = [member.contribution_id for member in fact.members]
    p.unique("members", ids)
    if ids != sorted(ids):
        p.append("members must be ordered by contribution_id")
    for index, member in enumerate(fact.members):
        if not member.contribution_id or not member.contributor_id:
            p.append(f"members[{index}] needs contribution_id and contributor_id")
    p.sha256("merkle_root", fact.merkle_root)


def _service_deployed(fact: consumer_pb2.ServiceDeployed, p: _Problems) -> None:
    p.required(fact, "deployment_id", "consumer_id", "service_id", "snapshot_ids")
    p.unique("snapshot_ids", fact.snapshot_ids)
    p.timestamp_set("deployed_from", fact.deployed_from)


def _revenue_recorded(fact: consumer_pb2.RevenueRecorded, p: _Problems) -> None:
    p.required(fact, "revenue_id", "consumer_id", "external_id", "service_id")
    p.period(fact.period)
    p.unique("deployment_ids", fact.deployment_ids)
    if fact.amount_minor <= 0:
        p.append(
            f"amount_minor must be positive, got {fact.amount_minor}; "
            "record a correction as revenue.adjusted instead"
        )
    p.currency(fact.currency)


def _revenue_adjusted(fact: consumer_pb2.RevenueAdjusted, p: _Problems) -> None:
    p.required(fact, "adjustment_id", "consumer_id", "revenue_id", "service_id", "reason")
    if fact.delta_minor == 0:
        p.append("delta_minor must not be zero: an adjustment of nothing is not a correction")
    p.currency(fact.currency)


def _allocation_made(fact: ledger_pb2.AllocationMade, p: _Problems) -> None:
    p.required(
        fact,
        "allocation_id",
        "revenue_id",
        "service_id",
        "agreement_id",
        "contributor_id",
        "contribution_id",
    )
    p.period(fact.period)
    p.currency(fact.currency)
    if fact.total_weight == 0:
        p.append("total_weight must be positive")
    if fact.weight > fact.total_weight:
        p.append(f"weight ({fact.weight}) cannot exceed total_weight ({fact.total_weight})")
    if abs(fact.allocated_micros) > abs(fact.pool_micros):
        p.append(
            f"allocated_micros ({fact.allocated_micros}) cannot exceed the pool "
            f"({fact.pool_micros}) in magnitude"
        )
    if fact.allocated_micros and (fact.allocated_micros > 0) != (fact.pool_micros > 0):
        p.append("allocated_micros must have the sign of pool_micros")


def _payout_issued(fact: ledger_pb2.PayoutIssued, p: _Problems) -> None:
    p.required(fact, "payout_id", "payout_run_id", "contributor_id")
    p.period(fact.period)
    p.currency(fact.currency)
    if fact.amount_minor < 0:
        p.append(f"amount_minor cannot be negative, got {fact.amount_minor}: a debt is carried")
    p.unique("allocation_ids", fact.allocation_ids)


def _principal_registered(fact: identity_pb2.PrincipalRegistered, p: _Problems) -> None:
    p.required(fact, "principal_id", "name", "api_key_prefix")
    p.enum_set(fact, "role")
    p.sha256("api_key_sha256", fact.api_key_sha256)


def _snapshot_exported(fact: consumer_pb2.SnapshotExported, p: _Problems) -> None:
    p.required(fact, "export_id", "consumer_id", "snapshot_id")
    p.sha256("merkle_root", fact.merkle_root)
    p.enum_set(fact, "format")
    p.sha256("manifest_sha256", fact.manifest_sha256)


_KEY_ID = re.compile(r"ed25519:[0-9a-f]{32}")
# Parties a key may speak for (the auditor only reads, so it signs nothing).
_SIGNING_PARTIES = ("ingest", "preprocess", "ledger", "payout", "admin", "consumer")


def _key_registered(fact: identity_pb2.KeyRegistered, p: _Problems) -> None:
    p.required(fact, "key_id", "party")
    if not _KEY_ID.fullmatch(fact.key_id):
        p.append(f"key_id must be 'ed25519:' and 32 lower-case hex digits, got {fact.key_id!r}")
    if fact.party not in _SIGNING_PARTIES:
        p.append(f"party must be one of {', '.join(_SIGNING_PARTIES)}, got {fact.party!r}")
    if (fact.party == "consumer") != bool(fact.principal_id):
        p.append("principal_id is required for a consumer's key, and only for one")
    if len(fact.public_key) != 32:
        p.append(f"public_key must be a raw 32-byte Ed25519 key, got {len(fact.public_key)} bytes")
    p.timestamp_set("valid_from", fact.valid_from)
    if fact.HasField("valid_until") and (
        fact.valid_until.ToNanoseconds() <= fact.valid_from.ToNanoseconds()
    ):
        p.append("valid_until must be later than valid_from")


def _reference_registered(fact: consumer_pb2.ReferenceRegistered, p: _Problems) -> None:
    p.required(fact, "reference_id", "consumer_id", "documents")
    if not fact.fingerprints.uri:
        p.append("fingerprints.uri is required")
    p.sha256("fingerprints.sha256", fact.fingerprints.sha256)


_VALIDATORS: dict[str, Callable[[Message, _Problems], None]] = {
    "contribution.received": _contribution_received,
    "contribution.processed": _contribution_processed,
    "contribution.withdrawn": _contribution_withdrawn,
    "agreement.published": _agreement_published,
    "snapshot.created": _snapshot_created,
    "service.deployed": _service_deployed,
    "revenue.recorded": _revenue_recorded,
    "revenue.adjusted": _revenue_adjusted,
    "allocation.made": _allocation_made,
    "payout.issued": _payout_issued,
    "principal.registered": _principal_registered,
    "snapshot.exported": _snapshot_exported,
    "key.registered": _key_registered,
    "reference.registered": _reference_registered,
}
if set(_VALIDATORS) != set(BY_EVENT_TYPE):  # a new fact type must come with its rules
    raise RuntimeError("validation rules and the fact registry list different fact types")


def validate_envelope(envelope: Envelope) -> None:
    """Raise FactValidationError listing every broken rule of the envelope and its payload."""
    subject = f"{envelope.event_type or 'fact'} {envelope.event_id or '(no event_id)'}"
    problems = _Problems()
    problems.required(envelope, "event_id", "producer")
    problems.timestamp_set("occurred_at", envelope.occurred_at)
    problems.timestamp_set("recorded_at", envelope.recorded_at)
    if envelope.schema_version != SCHEMA_VERSION:
        problems.append(
            f"schema_version {envelope.schema_version} is not supported; this reader "
            f"understands version {SCHEMA_VERSION}"
        )
    spec = BY_EVENT_TYPE.get(envelope.event_type)
    case = envelope.WhichOneof("payload")
    if spec is None:
        problems.append(f"event_type {envelope.event_type!r} is not a known fact type")
    elif case is None:
        problems.append(f"the envelope carries no payload; expected {spec.payload_field}")
    elif case != spec.payload_field:
        problems.append(f"event_type {envelope.event_type!r} does not match payload {case!r}")
    else:
        payload = payload_of(envelope)
        expected_key = getattr(payload, spec.key_field)
        if envelope.key != expected_key:
            problems.append(
                f"key {envelope.key!r} must equal the payload's {spec.key_field} {expected_key!r}"
            )
        _VALIDATORS[spec.event_type](payload, problems)
    if problems:
        raise FactValidationError(subject, list(problems))
