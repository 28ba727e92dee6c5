"""Each rule of the schema validation, broken one at a time on an otherwise valid fact."""

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.examples import example_envelopes
from services.common.facts import Envelope, FactDecodeError, decode, encode, payload_of
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
    # principal.revoked
    ("principal.revoked", _payload(_set(principal_id="")), "principal_id is required"),
    ("principal.revoked", _payload(_set(api_key_sha256="tt_abc")), "api_key_sha256 must be 64"),
    ("principal.revoked", _payload(_set(reason="a\x00b")), "control character U+0000"),
]

# The rules every field of every fact obeys, whatever its type.
GENERAL_CASES = [
    # enum values the schema does not define (not just unset ones)
    ("principal.registered", _payload(_set(role=99)), "role is 99, which is not a Role"),
    ("contribution.received", _payload(_set(format=7)), "format is 7, which is not a"),
    ("contribution.received", _payload(_set(compression=-1)), "compression is -1"),
    (
        "contribution.processed",
        _payload(lambda p: setattr(p.removals[0], "reason", 42)),
        "removals[0].reason is 42, which is not a RemovalReason",
    ),
    ("agreement.published", _payload(_set(weighting_rule=2)), "weighting_rule is 2"),
    ("snapshot.exported", _payload(_set(format=3)), "format is 3, which is not a ExportFormat"),
    # control characters: NUL, escape, DEL, C1, line breaks outside free text
    ("contribution.received", _payload(_set(file_name="a\x00.txt")), "U+0000 at position 1"),
    ("contribution.received", _payload(_set(dataset_name="manuals\n")), "U+000A"),
    ("principal.registered", _payload(_set(name="\x1b[31mroot")), "name contains the control"),
    ("principal.registered", _payload(_set(name="x\x7f")), "U+007F"),
    ("revenue.recorded", lambda e: setattr(e, "producer", "cli\x85"), "producer contains"),
    (
        "snapshot.created",
        _payload(lambda p: setattr(p.members[0], "contributor_id", "c\x00")),
        "members[0].contributor_id contains the control character",
    ),
    (
        "contribution.processed",
        _payload(lambda p: p.language_documents.__setitem__("e\x00n", 1)),
        "language_documents key contains",
    ),
    ("revenue.adjusted", _payload(_set(reason="refund\r\nforged log line")), "U+000D"),
    ("contribution.withdrawn", _payload(_set(reason="\x00")), "reason contains the control"),
    # overlong values
    ("contribution.received", _payload(_set(file_name="f" * 256)), "at most 255 characters"),
    ("contribution.received", _payload(_set(dataset_name="d" * 201)), "at most 200 characters"),
    (
        "contribution.received",
        _payload(lambda p: setattr(p.raw_blob, "uri", "blob://" + "u" * 2042)),
        "raw_blob.uri must be at most 2048 characters",
    ),
    ("revenue.adjusted", _payload(_set(reason="r" * 4001)), "at most 4000 characters"),
    ("service.deployed", _payload(lambda p: p.snapshot_ids.append("s" * 201)), "snapshot_ids[1]"),
    ("revenue.recorded", lambda e: setattr(e, "traceparent", "t" * 201), "traceparent must be"),
    # timestamps out of range
    (
        "revenue.recorded",
        lambda e: setattr(e.occurred_at, "seconds", 10_000_000_000),
        "occurred_at must lie between 1970-01-01 and 2200-01-01",
    ),
    (
        "contribution.withdrawn",
        _payload(lambda p: setattr(p.effective_at, "seconds", -86_400)),
        "effective_at must lie between",
    ),
    (
        "agreement.published",
        _payload(lambda p: setattr(p.effective_until, "seconds", 253_402_300_800)),
        "effective_until must lie between",
    ),
    ("revenue.recorded", lambda e: setattr(e.recorded_at, "nanos", -1), "nanos must be 0 to"),
    # counts that do not fit PostgreSQL's bigint
    (
        "contribution.received",
        _payload(lambda p: setattr(p.raw_blob, "byte_size", 2**63)),
        "raw_blob.byte_size (9223372036854775808) must fit a signed 64-bit integer",
    ),
    ("contribution.processed", _payload(_set(documents_in=2**64 - 1)), "documents_in ("),
    # periods outside the accepted months
    ("revenue.recorded", _payload(_set(period="0000-01")), "outside the months the platform"),
    ("revenue.recorded", _payload(_set(period="9999-12")), "(2000-01 to 2199-12)"),
    ("allocation.made", _payload(_set(period="1999-12")), "check the year"),
    ("payout.issued", _payload(_set(period="2999-12")), "period 2999-12 is outside"),
    # a payout for a period that had not begun when it was issued
    ("payout.issued", _payload(_set(period="2150-01")), "period 2150-01 had not begun"),
    ("payout.issued", _payload(_set(period="2026-12")), "occurred_at 2026-11-01T12:00:00Z"),
]
CASES += GENERAL_CASES


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


@pytest.mark.parametrize(
    "event_type, change",
    [
        ("revenue.adjusted", _payload(_set(reason="refund\n\tline two of the reason"))),
        ("principal.registered", _payload(_set(name="Zoë Ångström 李小龍 \u200e"))),
        ("contribution.received", _payload(_set(file_name=""))),
        ("contribution.received", _payload(_set(file_name="é" * 255))),
        ("payout.issued", _payload(_set(period="2026-11"))),  # issued in its own month
        ("revenue.recorded", _payload(_set(period="2199-12"))),
        ("revenue.recorded", lambda e: setattr(e.occurred_at, "seconds", 7_258_118_399)),
    ],
)
def test_what_the_general_rules_allow(event_type, change):
    envelope = _example(event_type)
    change(envelope)
    validate_envelope(envelope)


def test_a_large_snapshot_is_checked_member_by_member_in_reasonable_time():
    """Every member's strings are checked; 20,000 members (a large training set) must not
    make validation the ledger's bottleneck."""
    import time

    envelope = _example("snapshot.created")
    snapshot = payload_of(envelope)
    template = snapshot.members[0]
    del snapshot.members[:]
    for index in range(20_000):
        member = snapshot.members.add()
        member.CopyFrom(template)
        member.contribution_id = f"c-{index:06d}"
    snapshot.members[19_999].contributor_id = "bad\x00"
    started = time.perf_counter()
    with pytest.raises(FactValidationError) as caught:
        validate_envelope(envelope)
    elapsed = time.perf_counter() - started
    assert caught.value.problems == [
        "members[19999].contributor_id contains the control character U+0000 at position 3: "
        "it must be one line of printable text"
    ]
    print(f"20,000 members validated in {elapsed:.3f}s")


@given(data=st.data())
@settings(max_examples=400, deadline=None)
def test_validation_answers_any_decodable_fact_with_problems_never_a_crash(data):
    """A consumer dead-letters what validation refuses; an exception of any other type
    would stop it instead. So for facts made by flipping bytes of valid ones, validation
    either accepts or raises FactValidationError, and an accepted fact passes the general
    rules its projections rely on."""
    envelope = data.draw(st.sampled_from(example_envelopes("fuzz")))
    raw = bytearray(encode(envelope))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    try:
        mutated = decode(bytes(raw))
    except FactDecodeError:
        return
    try:
        validate_envelope(mutated)
    except FactValidationError:
        return
