"""The fact registry and the envelope codec: one place that knows every fact type, its
payload message, its Kafka key and its topic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp

from tt.facts.v1 import consumer_pb2, contribution_pb2, envelope_pb2, identity_pb2, ledger_pb2

Envelope = envelope_pb2.Envelope

# Every fact in tt.facts.v1 has payload schema version 1. A change of meaning is a new
# message (or tt.facts.v2), never a silent reinterpretation of version 1.
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class FactSpec:
    """One fact type: its name, payload message, the payload field that is its Kafka key."""

    event_type: str
    message: type[Message]
    key_field: str

    @property
    def payload_field(self) -> str:
        """The Envelope oneof case that carries this fact: "contribution.received" ->
        "contribution_received"."""
        return self.event_type.replace(".", "_")

    @property
    def topic_base(self) -> str:
        """The topic name before any deployment prefix."""
        return f"{self.event_type}.v{SCHEMA_VERSION}"


FACTS: tuple[FactSpec, ...] = (
    FactSpec("contribution.received", contribution_pb2.ContributionReceived, "contribution_id"),
    FactSpec("contribution.processed", contribution_pb2.ContributionProcessed, "contribution_id"),
    FactSpec("contribution.withdrawn", contribution_pb2.ContributionWithdrawn, "contribution_id"),
    FactSpec("agreement.published", consumer_pb2.AgreementPublished, "agreement_id"),
    FactSpec("snapshot.created", consumer_pb2.SnapshotCreated, "snapshot_id"),
    FactSpec("service.deployed", consumer_pb2.ServiceDeployed, "service_id"),
    FactSpec("revenue.recorded", consumer_pb2.RevenueRecorded, "service_id"),
    FactSpec("revenue.adjusted", consumer_pb2.RevenueAdjusted, "service_id"),
    FactSpec("allocation.made", ledger_pb2.AllocationMade, "contributor_id"),
    FactSpec("payout.issued", ledger_pb2.PayoutIssued, "contributor_id"),
    FactSpec("principal.registered", identity_pb2.PrincipalRegistered, "principal_id"),
    FactSpec("snapshot.exported", consumer_pb2.SnapshotExported, "snapshot_id"),
    FactSpec("key.registered", identity_pb2.KeyRegistered, "key_id"),
    FactSpec("reference.registered", consumer_pb2.ReferenceRegistered, "reference_id"),
    FactSpec("principal.revoked", identity_pb2.PrincipalRevoked, "principal_id"),
)
BY_EVENT_TYPE: dict[str, FactSpec] = {spec.event_type: spec for spec in FACTS}
_BY_MESSAGE: dict[str, FactSpec] = {spec.message.DESCRIPTOR.full_name: spec for spec in FACTS}


class FactDecodeError(ValueError):
    """The bytes are not a tt.facts.v1.Envelope."""


def spec_for_payload(payload: Message) -> FactSpec:
    try:
        return _BY_MESSAGE[payload.DESCRIPTOR.full_name]
    except KeyError:
        raise TypeError(f"{payload.DESCRIPTOR.full_name} is not a registered fact") from None


def spec_for_event_type(event_type: str) -> FactSpec:
    try:
        return BY_EVENT_TYPE[event_type]
    except KeyError:
        known = ", ".join(sorted(BY_EVENT_TYPE))
        raise KeyError(f"unknown fact type {event_type!r}; known types: {known}") from None


def timestamp(moment: datetime) -> Timestamp:
    """A protobuf Timestamp from an aware datetime (naive datetimes are refused)."""
    if moment.tzinfo is None:
        raise ValueError(f"timestamp needs a timezone-aware datetime, got naive {moment!r}")
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def make_envelope(
    payload: Message,
    *,
    event_id: str,
    producer: str,
    occurred_at: datetime,
    recorded_at: datetime,
    causation_id: str = "",
    correlation_id: str = "",
    traceparent: str = "",
) -> Envelope:
    """Wrap a fact payload. The event type and Kafka key are taken from the registry, so
    they cannot disagree with the payload."""
    spec = spec_for_payload(payload)
    envelope = Envelope(
        event_id=event_id,
        event_type=spec.event_type,
        schema_version=SCHEMA_VERSION,
        key=getattr(payload, spec.key_field),
        producer=producer,
        causation_id=causation_id,
        correlation_id=correlation_id or event_id,
        traceparent=traceparent,
    )
    envelope.occurred_at.CopyFrom(timestamp(occurred_at))
    envelope.recorded_at.CopyFrom(timestamp(recorded_at))
    getattr(envelope, spec.payload_field).CopyFrom(payload)
    return envelope


def payload_of(envelope: Envelope) -> Message:
    """The typed payload carried by the envelope."""
    case = envelope.WhichOneof("payload")
    if case is None:
        raise ValueError(f"envelope {envelope.event_id!r} carries no payload")
    return getattr(envelope, case)


def encode(envelope: Envelope) -> bytes:
    """Serialise deterministically, so the same fact always has the same bytes."""
    return envelope.SerializeToString(deterministic=True)


def decode(data: bytes | None) -> Envelope:
    """Parse bytes into an Envelope, or raise FactDecodeError saying why not."""
    if data is None:
        raise FactDecodeError("message has no value (a tombstone); fact topics never carry one")
    if not data:
        raise FactDecodeError("message value is empty; expected a serialised tt.facts.v1.Envelope")
    envelope = Envelope()
    try:
        envelope.ParseFromString(data)
    except DecodeError as error:
        raise FactDecodeError(
            f"message value ({len(data)} bytes) is not a tt.facts.v1.Envelope: {error}"
        ) from None
    return envelope
