"""Each rule of the schema validation, broken one at a time on an otherwise valid fact."""

from collections.abc import Callable

import pytest

from services.common.examples import example_envelopes
from services.common.facts import Envelope, payload_of
from services.common.validation import FactValidationError, validate_envelope
from tt.facts.v1 import contribution_pb2


def _example(event_type: str) -> Envelope:
    return next(e for e in example_envelopes("v") if e.event_type == event_type)


def _payload(change: Callable) -> Callable[[Envelope], None]:
    return lambda envelope: change(payload_of(envelope))


def _set(**fields) -> Callable:
    def change(message):
        for name, value in fields.items():
            setattr(message, name, value)

    return change


CASES = [
    # envelope
    ("revenue.recorded", lambda e: setattr(e, "event_id", ""), "event_id is required"),
    ("revenue.recorded", lambda e: setattr(e, "producer", ""), "producer is required"),
    (
        "revenue.recorded",
        lambda e: setattr(e, "schema_version", 2),
        "schema_version 2 is not supported",
    ),
    (
        "revenue.recorded",
        lambda e: setattr(e, "key", "other"),
        "must equal the payload's service_id",
    ),
    (
        "revenue.recorded",
        lambda e: setattr(e, "event_type", "payout.issued"),
        "does not match payload",
    ),
    (
        "revenue.recorded",
        lambda e: setattr(e, "event_type", "revenue.stolen"),
        "not a known fact type",
    ),
    ("revenue.recorded", lambda e: e.ClearField("payload"), "carries no payload"),
    ("revenue.recorded", lambda e: e.ClearField("occurred_at"), "occurred_at is required"),
    ("revenue.recorded", lambda e: setattr(e, "event_id", "x" * 201), "at most 200 characters"),
    # contribution.received
    ("contribution.received", _payload(_set(upload_id="")), "upload_id is required"),
    ("contribution.received", _payload(_set(format=0)), "format must be set to one of"),
    (
        "contribution.received",
        _payload(lambda p: setattr(p.raw_blob, "sha256", "ABC")),
        "raw_blob.sha256 must be 64",
    ),
    (
        "contribution.received",
        _payload(lambda p: setattr(p.raw_blob, "byte_size", 0)),
        "empty upload",
    ),
    (
        "contribution.received",
        _payload(lambda p: setattr(p.accepted_terms, "terms_id", "")),
        "accepted_terms.terms_id",
    ),
    # contribution.processed
    ("contribution.processed", _payload(_set(documents_kept=500)), "cannot exceed documents_in"),
    ("contribution.processed", _payload(_set(tokens_accepted=10**9)), "cannot exceed tokens_raw"),
    (
        "contribution.processed",
        _payload(_set(documents_kept=111)),
        "every removed document needs a reason",
    ),
    ("contribution.processed", _payload(_set(config_sha256="nope")), "config_sha256 must be 64"),
    (
        "contribution.processed",
        _payload(_set(outcome=contribution_pb2.PROCESSING_OUTCOME_REJECTED, rejection_reason="")),
        "rejection_reason is required",
    ),
    # contribution.withdrawn
    (
        "contribution.withdrawn",
        _payload(lambda p: p.ClearField("effective_at")),
        "effective_at is required",
    ),
    # agreement.published
    (
        "agreement.published",
        _payload(_set(share_bps=10_001)),
        "share_bps must be between 0 and 10000",
    ),
    ("agreement.published", _payload(_set(currency="usd")), "ISO 4217"),
    (
        "agreement.published",
        _payload(_set(min_payout_minor=-1)),
        "min_payout_minor cannot be negative",
    ),
    ("agreement.published", _payload(_set(weighting_rule=0)), "weighting_rule must be set"),
    (
        "agreement.published",
        _payload(lambda p: p.effective_until.CopyFrom(p.effective_from)),
        "effective_until must be later",
    ),
    # snapshot.created
    (
        "snapshot.created",
        _payload(lambda p: p.ClearField("members")),
        "at least one processed contribution",
    ),
    ("snapshot.created", _payload(lambda p: p.members.append(p.members[0])), "more than once"),
    ("snapshot.created", _payload(_set(merkle_root="")), "merkle_root must be 64"),
    # service.deployed
    (
        "service.deployed",
        _payload(lambda p: p.ClearField("snapshot_ids")),
        "snapshot_ids is required",
    ),
    (
        "service.deployed",
        _payload(lambda p: p.snapshot_ids.append(p.snapshot_ids[0])),
        "more than once",
    ),
    # revenue.recorded
    ("revenue.recorded", _payload(_set(amount_minor=0)), "amount_minor must be positive"),
    ("revenue.recorded", _payload(_set(amount_minor=-5)), "revenue.adjusted instead"),
    ("revenue.recorded", _payload(_set(period="2026-13")), "calendar month 'YYYY-MM'"),
    ("revenue.recorded", _payload(_set(period="Nov 2026")), "calendar month 'YYYY-MM'"),
    ("revenue.recorded", _payload(_set(period="2026-11\n")), "calendar month 'YYYY-MM'"),
    ("revenue.recorded", _payload(_set(period="\uff12\uff10\uff12\uff16-11")), "calendar month"),
    ("revenue.recorded", _payload(_set(currency="USD\n")), "3-letter ISO 4217 code"),
    ("revenue.recorded", _payload(_set(external_id="")), "external_id is required"),
    # revenue.adjusted
    ("revenue.adjusted", _payload(_set(delta_minor=0)), "delta_minor must not be zero"),
    ("revenue.adjusted", _payload(_set(reason="")), "reason is required"),
    # allocation.made
    ("allocation.made", _payload(_set(weight=10**9)), "cannot exceed total_weight"),
    ("allocation.made", _payload(_set(allocated_micros=10**12)), "cannot exceed the pool"),
    ("allocation.made", _payload(_set(allocated_micros=-1)), "sign of pool_micros"),
    ("allocation.made", _payload(_set(total_weight=0)), "total_weight must be positive"),
    # payout.issued
    ("payout.issued", _payload(_set(amount_minor=-1)), "a debt is carried"),
    # principal.registered
    ("principal.registered", _payload(_set(role=0)), "role must be set to one of"),
    ("principal.registered", _payload(_set(api_key_sha256="secret")), "api_key_sha256 must be 64"),
    (
        "payout.issued",
        _payload(lambda p: p.allocation_ids.append(p.allocation_ids[0])),
        "more than once",
    ),
]


@pytest.mark.parametrize(
    "event_type, breakage, phrase", CASES, ids=[f"{c[0]}:{c[2][:30]}" for c in CASES]
)
def test_each_broken_rule_is_reported_in_words(event_type, breakage, phrase):
    envelope = _example(event_type)
    validate_envelope(envelope)  # valid before the breakage
    breakage(envelope)
    with pytest.raises(FactValidationError) as caught:
        validate_envelope(envelope)
    assert phrase in str(caught.value)
    assert any(phrase in problem for problem in caught.value.problems)


def test_all_problems_are_reported_at_once():
    envelope = _example("revenue.recorded")
    revenue = payload_of(envelope)
    revenue.amount_minor = 0
    revenue.currency = "dollars"
    revenue.period = "soon"
    with pytest.raises(FactValidationError) as caught:
        validate_envelope(envelope)
    assert len(caught.value.problems) == 3
    assert str(caught.value).startswith(f"revenue.recorded {envelope.event_id} is invalid: ")


def test_a_share_of_exactly_one_hundred_percent_is_allowed():
    envelope = _example("agreement.published")
    payload_of(envelope).share_bps = 10_000
    validate_envelope(envelope)
