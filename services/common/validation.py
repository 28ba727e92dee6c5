"""Schema validation beyond what protobuf types enforce. Every consumer validates every
fact it reads (it never trusts the producer), and every producer validates before it
sends. Problems are phrased so that whoever produced the fact can fix it.

Besides each fact type's own rules, every field of every fact obeys the same general
rules (`_check_fields`), so that a fact that passes here can be stored by every
projection:

- strings are one line of printable text: no control characters (C0, DEL, C1), at most
  MAX_ID_LENGTH characters (file names, URIs and free text have their own limits, and
  free text may contain line breaks and tabs);
- an enum holds a value its schema defines (proto3 keeps unknown numbers; we do not);
- a timestamp lies between EARLIEST_TIME and LATEST_TIME;
- an unsigned count fits a signed 64-bit integer (PostgreSQL's bigint, the ledger's sums);
- a period lies between FIRST_PERIOD and LAST_PERIOD (services.common.periods).

The rules use nothing but the fact: no clock, no Unicode database (whose categories change
between Python versions), so a fact valid when it was published is valid on every replay.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.facts import BY_EVENT_TYPE, SCHEMA_VERSION, Envelope, payload_of
from services.common.money import INT64_MAX
from services.common.periods import FIRST_PERIOD, LAST_PERIOD, PERIOD_PATTERN, period_bounds
from tt.facts.v1 import consumer_pb2, contribution_pb2, identity_pb2, ledger_pb2

_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# fullmatch, [A-Z] and [0-9]: no trailing newline, no non-ASCII digits.
_CURRENCY = re.compile(r"[A-Z]{3}")
BPS_PER_UNIT = 10_000

# The longest string a field may hold, in characters: ids, names, codes and every other
# one-line string unless listed in _MAX_LENGTH_BY_FIELD.
MAX_ID_LENGTH = 200
MAX_FILE_NAME_LENGTH = 255
MAX_URI_LENGTH = 2048
MAX_TEXT_LENGTH = 4000
# Free text, where a line break or a tab is part of what a person wrote. Every other
# string field is a single line.
FREE_TEXT_FIELDS = frozenset({"reason", "rejection_reason"})
_MAX_LENGTH_BY_FIELD = {
    "file_name": MAX_FILE_NAME_LENGTH,
    "uri": MAX_URI_LENGTH,
    **dict.fromkeys(FREE_TEXT_FIELDS, MAX_TEXT_LENGTH),
}
# Unicode's control characters (category Cc), a set that never changes: C0, DEL and C1.
# PostgreSQL refuses U+0000 in text; the others forge lines in logs and terminals.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_FREE_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # \t and \n allowed
# Timestamps: after the Unix epoch (the platform has no earlier facts) and before 2200.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2200, 1, 1, tzinfo=UTC)
_LATEST_SECONDS = int((LATEST_TIME - EARLIEST_TIME).total_seconds())
_NANOS_PER_SECOND = 1_000_000_000
_TIMESTAMP = Timestamp.DESCRIPTOR.full_name


class FactValidationError(ValueError):
    """A fact breaks the schema's rules. `problems` lists each broken rule."""

    def __init__(self, subject: str, problems: list[str]):
        self.subject = subject
        self.problems = problems
        super().__init__(f"{subject} is invalid: " + "; ".join(problems))


def text_problem(path: str, value: str, field_name: str | None = None) -> str | None:
    """What is wrong with a string for the field `field_name` (default: the last part of
    `path`), or None: too long, or a control character where the field does not allow
    one. Also what the edges (gRPC, the CLIs) check before anything is published."""
    name = field_name or path.rpartition(".")[2]
    limit = _MAX_LENGTH_BY_FIELD.get(name, MAX_ID_LENGTH)
    if len(value) > limit:
        return f"{path} must be at most {limit} characters, got {len(value)}"
    free_text = name in FREE_TEXT_FIELDS
    control = (_CONTROL_IN_FREE_TEXT if free_text else _CONTROL).search(value)
    if control is not None:
        allowed = (
            "only line breaks and tabs are allowed in it"
            if free_text
            else "it must be one line of printable text"
        )
        return (
            f"{path} contains the control character U+{ord(control.group()):04X} at "
            f"position {control.start()}: {allowed}"
        )
    return None


def as_free_text(value: str, field_name: str = "reason") -> str:
    """`value` made fit for a free-text field: control characters other than line breaks
    and tabs replaced by U+FFFD, cut to the field's length. For text a program writes
    (an error message quoted as a reason), which must never make its own fact invalid."""
    limit = _MAX_LENGTH_BY_FIELD.get(field_name, MAX_ID_LENGTH)
    cleaned = _CONTROL_IN_FREE_TEXT.sub("\ufffd", value)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "\u2026"


class _Problems(list[str]):
    """Collects rule violations with field-path-first wording."""

    def required(self, message: Message, *fields: str) -> None:
        for field in fields:
            value = getattr(message, field)
            if value in ("", 0) or (hasattr(value, "__len__") and len(value) == 0):
                self.append(f"{field} is required")

    def sha256(self, path: str, value: str) -> None:
        if not _HEX_SHA256.match(value):
            self.append(f"{path} must be 64 lower-case hex characters (a SHA-256), got {value!r}")

    def currency(self, value: str) -> None:
        if not _CURRENCY.fullmatch(value):
            self.append(f"currency must be a 3-letter ISO 4217 code such as 'USD', got {value!r}")

    def period(self, value: str) -> None:
        if not PERIOD_PATTERN.fullmatch(value):
            self.append(
                f"period must be a calendar month 'YYYY-MM' such as '2026-11', got {value!r}"
            )
        elif not FIRST_PERIOD <= value <= LAST_PERIOD:
            self.append(
                f"period {value} is outside the months the platform accepts "
                f"({FIRST_PERIOD} to {LAST_PERIOD}); check the year"
            )

    def timestamp_set(self, path: str, stamp: Timestamp) -> None:
        if stamp.seconds <= 0 and stamp.nanos == 0:
            self.append(f"{path} is required (a time after 1970-01-01)")

    def timestamp_in_range(self, path: str, stamp: Timestamp) -> None:
        if not 0 <= stamp.nanos < _NANOS_PER_SECOND:
            self.append(f"{path}.nanos must be 0 to 999999999, got {stamp.nanos}")
        elif not 0 <= stamp.seconds < _LATEST_SECONDS:
            self.append(
                f"{path} must lie between {EARLIEST_TIME:%Y-%m-%d} and "
                f"{LATEST_TIME:%Y-%m-%d} (UTC), got {stamp.seconds} seconds since the epoch"
            )

    def enum_set(self, message: Message, field: str) -> None:
        if getattr(message, field) == 0:
            enum = message.DESCRIPTOR.fields_by_name[field].enum_type
            choices = ", ".join(v.name for v in enum.values if v.number != 0)
            self.append(f"{field} must be set to one of {choices}")

    def enum_known(self, path: str, field: FieldDescriptor, value: int) -> None:
        enum = field.enum_type
        if value not in enum.values_by_number:
            choices = ", ".join(f"{v.name} ({v.number})" for v in enum.values if v.number != 0)
            self.append(f"{path} is {value}, which is not a {enum.name}: use one of {choices}")

    def text(self, path: str, value: str, field_name: str) -> None:
        problem = text_problem(path, value, field_name)
        if problem is not None:
            self.append(problem)

    def unique(self, path: str, values: Iterable[str]) -> None:
        seen: set[str] = set()
        for value in values:
            if value in seen:
                self.append(f"{path} lists {value!r} more than once")
            seen.add(value)


# A field's check: (its value, the path of the message holding it, the problems).
_FieldCheck = Callable[[object, str, "_Problems"], None]
# Each message type's checks by field number, built once: validation runs on every fact
# every service reads, so the common case (nothing wrong) costs a few comparisons.
_CHECKS: dict[str, dict[int, _FieldCheck]] = {}


def _check_fields(message: Message, prefix: str, p: _Problems) -> None:
    """The general rules (see the module's docstring) on every field set in `message` and,
    recursively, in the messages it holds. `prefix` is the path of `message` in problems."""
    descriptor = message.DESCRIPTOR
    checks = _CHECKS.get(descriptor.full_name)
    if checks is None:
        checks = _CHECKS[descriptor.full_name] = {
            field.number: _field_check(field) for field in descriptor.fields
        }
    for field, value in message.ListFields():
        checks[field.number](value, prefix, p)


def _field_check(field: FieldDescriptor) -> _FieldCheck:
    if field.containing_oneof is not None and field.containing_oneof.name == "payload":
        # The envelope's payload is phrased as the fact's own fields: "role", not
        # "principal_registered.role".
        return lambda value, prefix, p: _check_fields(value, "", p)
    name = field.name
    if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
        check_key = _value_check(field.message_type.fields_by_name["key"], name)
        check_value = _value_check(field.message_type.fields_by_name["value"], name)

        def check_map(entries, prefix, p):
            for key, item in entries.items():
                check_key(key, prefix, " key", p)
                check_value(item, prefix, f"[{key!r}]", p)

        return check_map
    check = _value_check(field, name)
    if field.is_repeated:

        def check_each(values, prefix, p):
            for index, value in enumerate(values):
                check(value, prefix, f"[{index}]", p)

        return check_each
    return lambda value, prefix, p: check(value, prefix, "", p)


def _value_check(field: FieldDescriptor, name: str) -> Callable[..., None]:
    """A check of one value of `field`, reported as prefix + name + suffix."""
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        limit = _MAX_LENGTH_BY_FIELD.get(name, MAX_ID_LENGTH)
        control = _CONTROL_IN_FREE_TEXT if name in FREE_TEXT_FIELDS else _CONTROL

        def check_text(value, prefix, suffix, p):
            if len(value) > limit or control.search(value):
                p.text(f"{prefix}{name}{suffix}", value, name)

        return check_text
    if kind == FieldDescriptor.TYPE_ENUM:
        defined = frozenset(field.enum_type.values_by_number)

        def check_enum(value, prefix, suffix, p):
            if value not in defined:
                p.enum_known(f"{prefix}{name}{suffix}", field, value)

        return check_enum
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):

        def check_count(value, prefix, suffix, p):
            if value > INT64_MAX:
                p.append(
                    f"{prefix}{name}{suffix} ({value}) must fit a signed 64-bit integer "
                    f"(at most {INT64_MAX})"
                )

        return check_count
    if kind == FieldDescriptor.TYPE_MESSAGE:
        if field.message_type.full_name == _TIMESTAMP:

            def check_time(stamp, prefix, suffix, p):
                if not (0 <= stamp.seconds < _LATEST_SECONDS and 0 <= stamp.nanos < 10**9):
                    p.timestamp_in_range(f"{prefix}{name}{suffix}", stamp)

            return check_time

        def check_message(value, prefix, suffix, p):
            _check_fields(value, f"{prefix}{name}{suffix}.", p)

        return check_message
    return lambda value, prefix, suffix, p: None


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
        # Compared as numbers: ToNanoseconds() raises for a time protobuf cannot represent,
        # and validation must answer every fact with a list of problems, never a crash.
        (fact.effective_until.seconds, fact.effective_until.nanos)
        <= (fact.effective_from.seconds, fact.effective_from.nanos)
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


def _principal_revoked(fact: identity_pb2.PrincipalRevoked, p: _Problems) -> None:
    p.required(fact, "principal_id")
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
    "principal.revoked": _principal_revoked,
}
if set(_VALIDATORS) != set(BY_EVENT_TYPE):  # a new fact type must come with its rules
    raise RuntimeError("validation rules and the fact registry list different fact types")


def _payout_issued_after_its_period_began(envelope: Envelope, p: _Problems) -> None:
    """A payout run settles only periods that have begun (services.payout.projection), so a
    payout.issued fact dated before its period's first day is not one a run wrote. Judged
    by the fact's own occurred_at, so the answer is the same on every replay."""
    fact = envelope.payout_issued
    if not PERIOD_PATTERN.fullmatch(fact.period) or not FIRST_PERIOD <= fact.period <= LAST_PERIOD:
        return  # reported by the period rule
    start, _ = period_bounds(fact.period)
    stamp = envelope.occurred_at
    if 0 <= stamp.seconds < _LATEST_SECONDS and stamp.seconds < int(start.timestamp()):
        p.append(
            f"period {fact.period} had not begun when the payout was issued (occurred_at "
            f"{stamp.ToJsonString()}): a payout run settles only periods that have begun"
        )


# Rules that need the envelope as well as the payload.
_ENVELOPE_RULES: dict[str, Callable[[Envelope, _Problems], None]] = {
    "payout.issued": _payout_issued_after_its_period_began,
}


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
        if spec.event_type in _ENVELOPE_RULES:
            _ENVELOPE_RULES[spec.event_type](envelope, problems)
    _check_fields(envelope, "", problems)
    if problems:
        raise FactValidationError(subject, list(problems))
