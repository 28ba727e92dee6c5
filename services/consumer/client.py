"""The data consumer's client: publish agreements, snapshots, deployments and revenue.

What the `1tt consumer ...` verbs use, and what the consumer's own services import to
report revenue from code:

    async with await ConsumerClient.connect(Settings.from_env()) as consumer:
        published = await consumer.record_revenue(
            service="chat", period="2026-11", amount_minor=1_000_000, currency="USD",
            external_id="INV-2026-11-0042",
        )

Every method validates before it produces (the ledger validates again and trusts
nothing) and raises ConsumerError with a message a person can act on. Ids are derived
from the content (or from the consumer's own external id), so a retry after a timeout
publishes the same fact again, which every reader discards as a duplicate.

A revenue fact names the agreement and the deployments it is paid under. They are the
rules' choice, not the consumer's (services.rules.terms: among the terms already on the
log, judged by when the broker appended them): they are resolved here from the consumer's
own facts, and a name passed explicitly that is not the rules' choice is refused here,
before the ledger would reject the fact.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from google.protobuf import json_format

from services.common.bus import PartyBus
from services.common.config import IDENTITY_FILE, ConfigError, Settings
from services.common.facts import Envelope, make_envelope, payload_of, timestamp
from services.common.identity import Principal, with_article
from services.common.logreader import LogRecord, read_log
from services.common.money import INT64_MAX, UnknownCurrencyError, minor_exponent
from services.common.periods import PeriodError, period_bounds
from services.common.topics import TopicSetupError
from services.common.validation import FactValidationError, validate_envelope
from services.rules import ids
from services.rules.ids import derived_id
from services.rules.merkle import snapshot_root
from services.rules.terms import (
    AgreementTerms,
    Deployment,
    agreement_in_force,
    deployments_for,
)
from tt.facts.v1 import consumer_pb2, contribution_pb2

PRODUCER = "consumer-client"
_EXTERNAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ConsumerError(ValueError):
    """The request cannot be published as it stands; the message says why."""


@dataclass(frozen=True)
class Published:
    """A fact the client put on the log (or found already there: `replayed`)."""

    event_type: str
    event_id: str
    fact_id: str
    fact: dict[str, Any]
    replayed: bool = False
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        id_name = {
            "agreement.published": "agreement_id",
            "snapshot.created": "snapshot_id",
            "service.deployed": "deployment_id",
            "revenue.recorded": "revenue_id",
            "revenue.adjusted": "adjustment_id",
        }[self.event_type]
        return {
            "event_type": self.event_type,
            "event_id": self.event_id,
            id_name: self.fact_id,
            "replayed": self.replayed,
            "fact": self.fact,
            **({"notes": self.notes} if self.notes else {}),
        }


def _moment(value: date | datetime | str, what: str) -> datetime:
    """A UTC instant from a date (midnight UTC), an aware datetime, or ISO text."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
        except ValueError:
            raise ConsumerError(
                f"{what} must be a date like 2026-01-01 or a time like "
                f"2026-01-01T00:00:00Z, got {value!r}"
            ) from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConsumerError(f"{what} needs a time zone (e.g. 2026-01-01T00:00:00Z)")
        return value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _check_currency(currency: str) -> None:
    try:
        minor_exponent(currency)
    except UnknownCurrencyError as error:
        raise ConsumerError(str(error)) from None


def _as_dict(payload) -> dict[str, Any]:
    return json_format.MessageToDict(
        payload, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def consumer_identity(settings: Settings) -> Principal:
    """The consumer whose credentials folder this process uses (TT_PARTY, or --credentials):
    its identity file, written by `1tt admin add-principal --role consumer`. The broker
    authenticates the folder's Kafka user and every reader checks its signing key, which
    is registered on the log for this principal only: no database is consulted."""
    folder = settings.party_credentials()
    path = folder / IDENTITY_FILE
    try:
        identity = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConsumerError(
            f"no consumer credentials at {folder}: pass --credentials FOLDER (the folder "
            "'1tt admin add-principal --role consumer' printed) or set TT_PARTY=consumer-<id>"
        ) from None
    except (OSError, ValueError) as error:
        raise ConsumerError(f"{path} is unreadable: {error}") from None
    if identity.get("party") != "consumer" or not identity.get("principal_id"):
        raise ConsumerError(f"{folder} holds no data consumer's credentials")
    return Principal(identity["principal_id"], "consumer", identity.get("name", ""))


class ConsumerClient:
    def __init__(self, settings: Settings, principal: Principal, bus: PartyBus):
        if principal.role != "consumer":
            raise ConsumerError(
                f"{principal.name!r} is {with_article(principal.role)}, not the consumer"
            )
        self.settings = settings
        self.registry = settings.topic_registry()
        self.principal = principal
        self.bus = bus
        self.producer = bus.producer

    @classmethod
    async def connect(cls, settings: Settings) -> ConsumerClient:
        """A client acting as the consumer whose credentials `settings` names."""
        principal = consumer_identity(settings)
        try:
            bus = await PartyBus.open(settings, settings.topic_registry(), client_id=PRODUCER)
        except (ConfigError, TopicSetupError) as error:
            raise ConsumerError(str(error)) from None
        return cls(settings, principal, bus)

    async def __aenter__(self) -> ConsumerClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.bus.close()

    async def read(self, event_types: Iterable[str]) -> list[Envelope]:
        """Every trusted fact of these types on the log now."""
        return [record.envelope for record in await self.read_records(event_types)]

    async def read_records(self, event_types: Iterable[str]) -> list[LogRecord]:
        """The same, as records (with when the broker appended each)."""
        return [
            record
            async for record in read_log(
                self.settings.kafka, self.registry, event_types, self.bus.keys
            )
        ]

    @property
    def consumer_id(self) -> str:
        return self.principal.principal_id

    # -- publishing --------------------------------------------------------------------

    async def _publish(self, payload, event_id: str, occurred_at: datetime | None = None):
        now = datetime.now(UTC)
        envelope = make_envelope(
            payload,
            event_id=event_id,
            producer=PRODUCER,
            occurred_at=occurred_at or now,
            recorded_at=now,
        )
        try:
            validate_envelope(envelope)
        except FactValidationError as error:
            raise ConsumerError(str(error)) from None
        await self.producer.publish(envelope)
        return envelope

    async def _own_facts(self, *event_types: str) -> list[Envelope]:
        return [record.envelope for record in await self._own_records(*event_types)]

    async def _own_records(self, *event_types: str) -> list[LogRecord]:
        return [
            record
            for record in await self.read_records(event_types)
            if getattr(payload_of(record.envelope), "consumer_id", None) == self.consumer_id
        ]

    async def publish_agreement(
        self,
        *,
        service: str,
        share_bps: int,
        effective_from: date | datetime | str,
        currency: str,
        effective_until: date | datetime | str | None = None,
        min_payout_minor: int = 0,
        agreement_id: str | None = None,
    ) -> Published:
        _check_currency(currency)
        if not 0 <= share_bps <= 10_000:
            raise ConsumerError(f"--share-bps must be 0..10000 (100%), got {share_bps}")
        if not 0 <= min_payout_minor <= INT64_MAX:
            raise ConsumerError(
                f"--min-payout-minor must be 0..{INT64_MAX}, got {min_payout_minor}"
            )
        if not _NAME.match(service):
            raise ConsumerError(
                f"service names are letters, digits, '.', '_' or '-'; got {service!r}"
            )
        start = _moment(effective_from, "--from")
        until = _moment(effective_until, "--until") if effective_until is not None else None
        if until is not None and until <= start:
            raise ConsumerError("--until must be later than --from")
        agreement_id = agreement_id or derived_id(
            "agreement",
            self.consumer_id,
            service,
            start.isoformat(),
            until.isoformat() if until else "",
            str(share_bps),
            currency,
            str(min_payout_minor),
        )
        fact = consumer_pb2.AgreementPublished(
            agreement_id=agreement_id,
            consumer_id=self.consumer_id,
            service_id=service,
            share_bps=share_bps,
            weighting_rule=consumer_pb2.WEIGHTING_RULE_ACCEPTED_TOKENS,
            effective_from=timestamp(start),
            currency=currency,
            min_payout_minor=min_payout_minor,
        )
        if until is not None:
            fact.effective_until.CopyFrom(timestamp(until))
        replayed = await self._already_published("agreement.published", "agreement_id", fact)
        if replayed is not None:
            return replayed
        envelope = await self._publish(fact, derived_id("agreement.published", agreement_id))
        return Published("agreement.published", envelope.event_id, agreement_id, _as_dict(fact))

    async def _already_published(
        self, event_type: str, id_field: str, fact, facts: list[Envelope] | None = None
    ) -> Published | None:
        """The same fact already on the log (a retry): returned as replayed. The same id
        with different content: ConsumerError, since facts are immutable. `facts`: the
        consumer's facts if the caller has read them already."""
        fact_id = getattr(fact, id_field)
        for envelope in facts if facts is not None else await self._own_facts(event_type):
            if envelope.event_type != event_type:
                continue
            before = payload_of(envelope)
            if getattr(before, id_field) != fact_id:
                continue
            if before == fact:
                return Published(event_type, envelope.event_id, fact_id, _as_dict(fact), True)
            raise ConsumerError(
                f"{id_field} {fact_id} is already on the log with different content; "
                "published facts cannot be changed: use a new id"
            )
        return None

    async def create_snapshot(
        self,
        *,
        name: str,
        all_processed: bool = False,
        contribution_ids: Sequence[str] = (),
        as_of: date | datetime | str | None = None,
    ) -> Published:
        if not _NAME.match(name):
            raise ConsumerError(
                f"snapshot names are letters, digits, '.', '_' or '-'; got {name!r}"
            )
        if all_processed == bool(contribution_ids):
            raise ConsumerError(
                "say which contributions the snapshot takes: --all-processed, or "
                "--contribution ID (repeatable), not both"
            )
        cutoff = _moment(as_of, "--as-of") if as_of is not None else datetime.now(UTC)
        facts = await self.read(
            ["contribution.processed", "contribution.withdrawn", "snapshot.created"]
        )
        latest: dict[str, Envelope] = {}
        withdrawn: dict[str, datetime] = {}
        existing: Envelope | None = None
        snapshot_id = derived_id("snapshot", self.consumer_id, name)
        for envelope in facts:
            fact = payload_of(envelope)
            if envelope.event_type == "contribution.processed":
                if (
                    fact.outcome == contribution_pb2.PROCESSING_OUTCOME_PROCESSED
                    and envelope.occurred_at.ToDatetime(tzinfo=UTC) <= cutoff
                ):
                    latest[fact.contribution_id] = envelope  # log order: the last wins
            elif envelope.event_type == "contribution.withdrawn":
                withdrawn[fact.contribution_id] = fact.effective_at.ToDatetime(tzinfo=UTC)
            elif fact.snapshot_id == snapshot_id:
                existing = envelope
        if all_processed:
            chosen = [
                cid
                for cid, envelope in latest.items()
                if payload_of(envelope).tokens_accepted > 0
                and not (cid in withdrawn and withdrawn[cid] <= cutoff)
            ]
            if not chosen:
                raise ConsumerError(
                    "no processed contribution with accepted tokens exists yet (as of "
                    f"{cutoff.isoformat()}); wait for preprocessing, or check `1tt status`"
                )
        else:
            unknown = [cid for cid in contribution_ids if cid not in latest]
            if unknown:
                raise ConsumerError(
                    f"not processed (or not known) as of {cutoff.isoformat()}: {', '.join(unknown)}"
                )
            gone = [cid for cid in contribution_ids if cid in withdrawn]
            if gone:
                raise ConsumerError(f"withdrawn by their contributors: {', '.join(gone)}")
            chosen = list(dict.fromkeys(contribution_ids))
        members = [
            consumer_pb2.SnapshotMember(
                contribution_id=cid,
                contributor_id=payload_of(latest[cid]).contributor_id,
                tokens_accepted=payload_of(latest[cid]).tokens_accepted,
                processed_event_id=latest[cid].event_id,
            )
            for cid in sorted(chosen)
        ]
        fact = consumer_pb2.SnapshotCreated(
            snapshot_id=snapshot_id,
            consumer_id=self.consumer_id,
            name=name,
            selection=(
                consumer_pb2.SNAPSHOT_SELECTION_ALL_PROCESSED
                if all_processed
                else consumer_pb2.SNAPSHOT_SELECTION_LISTED
            ),
            members=members,
            merkle_root=snapshot_root(members),
        )
        if all_processed:
            fact.as_of.CopyFrom(timestamp(cutoff))
        if existing is not None:
            before = payload_of(existing)
            if [m.SerializeToString() for m in before.members] != [
                m.SerializeToString() for m in members
            ]:
                raise ConsumerError(
                    f"a snapshot named {name!r} already exists ({snapshot_id}, "
                    f"{len(before.members)} members) with a different member set; snapshots "
                    "are immutable: choose a new name"
                )
            return Published(
                "snapshot.created", existing.event_id, snapshot_id, _as_dict(before), True
            )
        envelope = await self._publish(fact, derived_id("snapshot.created", snapshot_id))
        return Published("snapshot.created", envelope.event_id, snapshot_id, _as_dict(fact))

    async def deploy(
        self,
        *,
        service: str,
        snapshot_ids: Sequence[str],
        deployed_from: date | datetime | str,
        deployment_id: str | None = None,
    ) -> Published:
        if not snapshot_ids:
            raise ConsumerError("name at least one snapshot the service was trained on")
        if not _NAME.match(service):
            raise ConsumerError(
                f"service names are letters, digits, '.', '_' or '-'; got {service!r}"
            )
        start = _moment(deployed_from, "--from")
        facts = await self._own_facts("snapshot.created", "service.deployed")
        known = {payload_of(e).snapshot_id for e in facts if e.event_type == "snapshot.created"}
        unknown = [s for s in snapshot_ids if s not in known]
        if unknown:
            raise ConsumerError(
                f"no snapshot of yours with id {', '.join(unknown)} is on the log; create it "
                "with `1tt consumer snapshot` first"
            )
        snapshots = sorted(dict.fromkeys(snapshot_ids))
        deployment_id = deployment_id or derived_id(
            "deployment", self.consumer_id, service, start.isoformat(), *snapshots
        )
        fact = consumer_pb2.ServiceDeployed(
            deployment_id=deployment_id,
            consumer_id=self.consumer_id,
            service_id=service,
            snapshot_ids=snapshots,
            deployed_from=timestamp(start),
        )
        replayed = await self._already_published("service.deployed", "deployment_id", fact, facts)
        if replayed is not None:
            return replayed
        envelope = await self._publish(fact, derived_id("service.deployed", deployment_id))
        return Published("service.deployed", envelope.event_id, deployment_id, _as_dict(fact))

    async def resolve(
        self, service: str, period: str, records: list[LogRecord] | None = None
    ) -> tuple[consumer_pb2.AgreementPublished, list[str]]:
        """The agreement in force and the deployments live for a service in a period, as
        the rules select them among the consumer's own facts on the log now (`records`,
        if the caller has read them): what a revenue event published now must name."""
        if records is None:
            records = await self._own_records("agreement.published", "service.deployed")
        agreements = {}
        terms = []
        deployments = []
        for record in records:
            fact = payload_of(record.envelope)
            if record.envelope.event_type == "agreement.published":
                if fact.agreement_id in agreements:
                    continue  # the first fact under an id is the one every reader keeps
                agreements[fact.agreement_id] = fact
                terms.append(
                    AgreementTerms(
                        fact.agreement_id,
                        fact.service_id,
                        fact.share_bps,
                        fact.currency,
                        fact.effective_from.ToDatetime(tzinfo=UTC),
                        fact.effective_until.ToDatetime(tzinfo=UTC)
                        if fact.HasField("effective_until")
                        else None,
                        published_at=record.appended_at,
                    )
                )
            elif record.envelope.event_type == "service.deployed":
                if any(d.deployment_id == fact.deployment_id for d in deployments):
                    continue
                deployments.append(
                    Deployment(
                        fact.deployment_id,
                        fact.service_id,
                        tuple(fact.snapshot_ids),
                        fact.deployed_from.ToDatetime(tzinfo=UTC),
                        record.appended_at,
                    )
                )
        chosen = agreement_in_force(terms, service, period)
        if chosen is None:
            raise ConsumerError(
                f"no agreement of yours covers service {service!r} in {period}; publish one "
                "with `1tt consumer agreement` first"
            )
        live = deployments_for(deployments, service, period)
        if not live:
            raise ConsumerError(
                f"service {service!r} has no deployment live in {period}; publish one with "
                "`1tt consumer deploy` first"
            )
        return agreements[chosen.agreement_id], [d.deployment_id for d in live]

    async def record_revenue(
        self,
        *,
        service: str,
        period: str,
        amount_minor: int,
        currency: str,
        external_id: str,
        agreement_id: str | None = None,
        deployment_ids: Iterable[str] = (),
    ) -> Published:
        _check_currency(currency)
        if not _EXTERNAL_ID.match(external_id):
            raise ConsumerError(
                "--id is your own id for this revenue (e.g. an invoice number): 1-128 "
                f"letters, digits or . _ : / -; got {external_id!r}"
            )
        if not 0 < amount_minor <= INT64_MAX:
            raise ConsumerError(
                f"--amount-minor must be a positive whole number of minor units up to "
                f"{INT64_MAX}, got {amount_minor}; record a correction with "
                "`1tt consumer adjust`"
            )
        try:
            start, _ = period_bounds(period)
        except PeriodError as error:
            raise ConsumerError(str(error)) from None
        if start > datetime.now(UTC):
            raise ConsumerError(
                f"period {period} has not begun; revenue is recorded after it is earned"
            )
        deployment_ids = list(dict.fromkeys(deployment_ids))
        records = await self._own_records(
            "agreement.published", "service.deployed", "revenue.recorded"
        )
        revenue_id = ids.revenue_id(self.consumer_id, external_id)
        for record in records:
            before = payload_of(record.envelope)
            if record.envelope.event_type == "revenue.recorded" and before.revenue_id == revenue_id:
                return self._replayed_revenue(
                    record.envelope, service, period, amount_minor, currency, agreement_id,
                    deployment_ids,
                )  # fmt: skip
        agreement, live = await self.resolve(service, period, records)
        if agreement_id is not None and agreement_id != agreement.agreement_id:
            raise ConsumerError(
                f"agreement {agreement_id} is not the one in force for {service!r} in "
                f"{period}: the rules select {agreement.agreement_id} ({agreement.share_bps} "
                "bps) and the ledger would reject any other. The agreement in force when a "
                "period begins governs all of it; terms take effect no earlier than they "
                'are published (docs/allocation.md, "Which terms apply")'
            )
        named = sorted(deployment_ids)
        if named and named != sorted(live):
            raise ConsumerError(
                f"the deployments named ({', '.join(named)}) are not the ones live for "
                f"{service!r} in {period} ({', '.join(live)}); the ledger would reject "
                "them: leave --deployment out and the client names the live ones"
            )
        if agreement.currency != currency:
            raise ConsumerError(
                f"the agreement in force for {service!r} in {period} "
                f"({agreement.agreement_id}) settles in {agreement.currency}, not "
                f"{currency}; currencies never mix"
            )
        agreement_id = agreement.agreement_id
        deployment_ids = live
        notes = [
            f"agreement in force: {agreement_id} ({agreement.share_bps} bps)",
            f"deployments live in {period}: {', '.join(live)}",
        ]
        fact = consumer_pb2.RevenueRecorded(
            revenue_id=revenue_id,
            consumer_id=self.consumer_id,
            external_id=external_id,
            service_id=service,
            period=period,
            amount_minor=amount_minor,
            currency=currency,
            agreement_id=agreement_id,
            deployment_ids=deployment_ids,
        )
        digest = hashlib.sha256(fact.SerializeToString(deterministic=True)).hexdigest()
        envelope = await self._publish(
            fact, derived_id("revenue.recorded.event", revenue_id, digest)
        )
        return Published(
            "revenue.recorded", envelope.event_id, revenue_id, _as_dict(fact), notes=notes
        )

    @staticmethod
    def _replayed_revenue(
        envelope: Envelope,
        service: str,
        period: str,
        amount_minor: int,
        currency: str,
        agreement_id: str | None,
        deployment_ids: Iterable[str],
    ) -> Published:
        """A retry of revenue already on the log: the same fact if the request says the
        same (terms published since change nothing: it was judged by those before it)."""
        before = payload_of(envelope)
        same = (
            (before.service_id, before.period, before.amount_minor, before.currency)
            == (service, period, amount_minor, currency)
            and agreement_id in (None, before.agreement_id)
            and (not deployment_ids or sorted(set(deployment_ids)) == sorted(before.deployment_ids))
        )
        if not same:
            raise ConsumerError(
                f"revenue {before.external_id} was already recorded ({before.amount_minor} "
                f"{before.currency}, service {before.service_id}, period {before.period}) "
                "with different content; it is not paid twice. Record a correction with "
                f"`1tt consumer adjust --revenue {before.external_id}`"
            )
        return Published(
            "revenue.recorded", envelope.event_id, before.revenue_id, _as_dict(before), True
        )

    async def adjust_revenue(
        self, *, external_id: str, adjustment_id: str, delta_minor: int, reason: str
    ) -> Published:
        """A signed correction of revenue recorded earlier under `external_id`."""
        if not delta_minor or abs(delta_minor) > INT64_MAX:
            raise ConsumerError(f"--delta-minor must be a non-zero amount, got {delta_minor}")
        if not reason.strip():
            raise ConsumerError("--reason is required: say why the revenue is corrected")
        if not _EXTERNAL_ID.match(adjustment_id):
            raise ConsumerError(
                f"--id must be your own id for this adjustment; got {adjustment_id!r}"
            )
        revenue_id = ids.revenue_id(self.consumer_id, external_id)
        adjustment = ids.adjustment_id(self.consumer_id, adjustment_id)
        facts = await self._own_facts("revenue.recorded", "revenue.adjusted")
        about = [payload_of(e) for e in facts if payload_of(e).revenue_id == revenue_id]
        original = next((f for f in about if isinstance(f, consumer_pb2.RevenueRecorded)), None)
        if original is None:
            raise ConsumerError(f"no revenue of yours was recorded with id {external_id!r}")
        net = original.amount_minor + sum(
            f.delta_minor
            for f in about
            if isinstance(f, consumer_pb2.RevenueAdjusted) and f.adjustment_id != adjustment
        )
        if net + delta_minor < 0:
            raise ConsumerError(
                f"this adjustment would take revenue {external_id} below zero: recorded "
                f"{original.amount_minor}, net of earlier adjustments {net}, this one "
                f"{delta_minor} (minor units of {original.currency})"
            )
        fact = consumer_pb2.RevenueAdjusted(
            adjustment_id=adjustment,
            consumer_id=self.consumer_id,
            revenue_id=revenue_id,
            service_id=original.service_id,
            delta_minor=delta_minor,
            currency=original.currency,
            reason=reason.strip(),
        )
        replayed = await self._already_published("revenue.adjusted", "adjustment_id", fact, facts)
        if replayed is not None:
            return replayed
        digest = hashlib.sha256(fact.SerializeToString(deterministic=True)).hexdigest()
        envelope = await self._publish(
            fact, derived_id("revenue.adjusted.event", adjustment, digest)
        )
        return Published("revenue.adjusted", envelope.event_id, adjustment, _as_dict(fact))
