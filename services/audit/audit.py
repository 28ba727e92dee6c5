"""`1tt audit`: replay the log and check the money (docs/audit.md).

Reads every fact topic from offset 0 with its own consumer (no group, read_committed),
as the auditor party (read-only on the fact topics), verifies every fact's signature
(services.common.signing: only facts signed by the party that owns their type count, as
for every service), recomputes allocations and payouts with the published rules
(services/audit/recompute.py, on the pure functions of services/rules/allocation.py and
services/rules/settlement.py), and
compares them with (a) the allocation.made and payout.issued facts on the log and (b)
the ledger's and payout's projections in PostgreSQL. Any difference is listed precisely.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import asyncpg

from services.audit.recompute import Allocation, Expected, check_ids, check_payouts, recompute
from services.common.config import Settings
from services.common.db import connect
from services.common.facts import BY_EVENT_TYPE, payload_of
from services.common.identity import ROLE_NAMES
from services.common.keys import KeyFeed
from services.common.logreader import ReadStats, read_log, read_log_file
from services.common.money import micros_per_minor
from services.common.signing import KeyEntry
from services.rules.allocation import ALLOCATION_FIELDS

# Every field of an allocation except its id, which is the key compared on.
FIELDS = ALLOCATION_FIELDS[1:]
MAX_LISTED = 50


@dataclass
class AuditReport:
    fact_counts: dict[str, int] = field(default_factory=dict)
    duplicate_records: int = 0
    invalid_records: int = 0
    totals: dict[str, dict[str, int]] = field(default_factory=dict)
    allocations: int = 0
    payouts: int = 0
    digest: str = ""
    outcomes: dict[str, int] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Trusted facts by who signed them and fact type: {"ledger": {"allocation.made": 12}}.
    signed_by: dict[str, dict[str, int]] = field(default_factory=dict)
    # Facts on another type's topic (every service dead-lettered them; skipped here too).
    misplaced_records: int = 0
    misplaced: list[str] = field(default_factory=list)
    # Facts on the log that no reader trusts (every service dead-lettered them).
    untrusted_records: int = 0
    untrusted: list[str] = field(default_factory=list)
    # The signing keys the log registered, and registrations that were refused.
    keys: list[dict] = field(default_factory=list)
    refused_keys: list[str] = field(default_factory=list)
    # Every principal registered by a trusted fact: id, role, name, who registered it.
    principals: list[dict] = field(default_factory=list)

    @property
    def matched(self) -> bool:
        return not self.mismatches

    def as_json(self) -> dict:
        return {
            "result": "match" if self.matched else "mismatch",
            "fact_counts": self.fact_counts,
            "duplicate_records": self.duplicate_records,
            "invalid_records": self.invalid_records,
            "totals": self.totals,
            "allocations": self.allocations,
            "payouts": self.payouts,
            "allocations_digest": self.digest,
            "revenue_outcomes": self.outcomes,
            "mismatches": self.mismatches,
            "signed_by": self.signed_by,
            "misplaced_records": self.misplaced_records,
            "misplaced": self.misplaced,
            "untrusted_records": self.untrusted_records,
            "untrusted": self.untrusted,
            "keys": self.keys,
            "refused_keys": self.refused_keys,
            "principals": self.principals,
            "notes": self.notes,
        }


def allocations_digest(allocations: dict[str, Allocation]) -> str:
    """SHA-256 over the canonical lines of the allocations, ordered by allocation id."""
    digest = hashlib.sha256()
    for allocation_id in sorted(allocations):
        digest.update(allocations[allocation_id].canonical().encode() + b"\n")
    return digest.hexdigest()


def _diff(kind: str, key: str, want: dict, got: dict) -> str | None:
    changed = [
        f"{name} {got.get(name)!r} != expected {want[name]!r}"
        for name in want
        if got.get(name) != want[name]
    ]
    return f"{kind} {key}: " + "; ".join(changed) if changed else None


async def run_audit(
    settings: Settings,
    ledger_schema: str = "ledger",
    payout_schema: str = "payout",
    check_projections: bool = True,
) -> AuditReport:
    """The audit of the log on the broker, compared with the projections in PostgreSQL."""
    stats = ReadStats()
    facts = _Facts()
    registry = settings.topic_registry()
    async with KeyFeed.for_settings(settings, registry) as keys:
        async for record in read_log(settings.kafka, registry, BY_EVENT_TYPE, keys, stats):
            facts.add(record)
        report, expected, payouts = facts.audit(stats, keys.keyring)
    if check_projections:
        await _compare_projections(
            settings, ledger_schema, payout_schema, expected, payouts, report
        )
    del report.mismatches[MAX_LISTED:]
    return report


def audit_log_file(path: Path, anchors: list[KeyEntry]) -> tuple[AuditReport, Expected]:
    """The audit of a log kept in a file (services.common.logreader's format), signatures
    checked against `anchors`: no broker, no database (the conformance kit,
    docs/conformance.md). Returns the report and what the rules give."""
    stats = ReadStats()
    records, keyring = read_log_file(path, anchors, stats)
    facts = _Facts()
    for record in records:
        facts.add(record)
    report, expected, _ = facts.audit(stats, keyring)
    return report, expected


class _Facts:
    """The trusted facts of a log, once each, as a reader keeps them (a resend of an
    event id is discarded), and what the audit makes of them."""

    def __init__(self):
        self.report = AuditReport()
        self.by_type: dict[str, list] = {event_type: [] for event_type in BY_EVENT_TYPE}
        self.seen: set[str] = set()
        self.appended_at: dict[str, datetime] = {}  # event id -> when the broker appended it
        self.revoked: dict[str, str] = {}  # key digest -> when and by whom it was revoked

    def add(self, record) -> None:
        envelope = record.envelope
        if envelope.event_id in self.seen:  # a resend: the same event id, discarded
            self.report.duplicate_records += 1
            return
        self.seen.add(envelope.event_id)
        self.by_type[envelope.event_type].append(envelope)
        self.appended_at[envelope.event_id] = record.appended_at
        if envelope.event_type == "principal.registered":
            self.report.principals.append(_principal(envelope, record.signer))
        elif envelope.event_type == "principal.revoked":
            self.revoked[envelope.principal_revoked.api_key_sha256] = (
                f"{envelope.recorded_at.ToJsonString()} by {record.signer.speaker}"
            )

    def audit(self, stats: ReadStats, keyring) -> tuple[AuditReport, Expected, dict]:
        """The report (without the projections), what the rules give, and the payouts on
        the log by id."""
        report, by_type = self.report, self.by_type
        _report_trust(report, stats, keyring)
        for principal in report.principals:
            principal["revoked"] = self.revoked.get(principal.pop("api_key_sha256"), "")
        report.invalid_records = stats.invalid
        report.fact_counts = {t: len(v) for t, v in sorted(by_type.items())}
        expected = recompute(by_type, self.appended_at)
        for outcome in expected.outcomes.values():
            status = outcome.split(":")[0]
            report.outcomes[status] = report.outcomes.get(status, 0) + 1
        report.notes += [f"refused as the ledger refuses it: {r}" for r in expected.refused]
        mismatches = report.mismatches
        _compare_allocation_facts(by_type, expected, mismatches)
        payouts = {payload_of(e).payout_id: payload_of(e) for e in by_type["payout.issued"]}
        # The first fact under an agreement id is the agreement (a different one later
        # under the same id is refused, as the ledger refuses it).
        minimums: dict[str, int] = {}
        for envelope in by_type["agreement.published"]:
            fact = payload_of(envelope)
            minimums.setdefault(fact.agreement_id, fact.min_payout_minor)
        mismatches += check_payouts(payouts.values(), expected.allocations, minimums)
        mismatches += check_ids(by_type)
        report.allocations = len(expected.allocations)
        report.payouts = len(payouts)
        report.digest = allocations_digest(expected.allocations)
        report.totals = _totals(expected, payouts.values())
        return report, expected, payouts


def _compare_allocation_facts(by_type, expected, mismatches) -> None:
    """(a) the allocation.made facts on the log against the rules."""
    on_log = {}
    for envelope in by_type["allocation.made"]:
        fact = payload_of(envelope)
        on_log[fact.allocation_id] = {name: getattr(fact, name) for name in FIELDS}
    for allocation_id in sorted(set(expected.allocations) | set(on_log)):
        want = expected.allocations.get(allocation_id)
        got = on_log.get(allocation_id)
        if got is None:
            mismatches.append(
                f"missing fact: allocation.made {allocation_id} (revenue {want.revenue_id}, "
                f"contribution {want.contribution_id}, {want.allocated_micros} micros) is due "
                "by the rules but not on the log"
            )
        elif want is None:
            mismatches.append(
                f"unexpected fact: allocation.made {allocation_id} (revenue {got['revenue_id']}, "
                f"{got['allocated_micros']} micros) is on the log but the rules give no such "
                "allocation"
            )
        elif diff := _diff("allocation.made", allocation_id, _fields(want), got):
            mismatches.append(diff)


def _principal(envelope, signer) -> dict:
    fact = payload_of(envelope)
    return {
        "principal_id": fact.principal_id,
        "role": ROLE_NAMES.get(fact.role, f"unknown role {fact.role}"),
        "name": fact.name,
        "api_key_prefix": fact.api_key_prefix,
        "api_key_sha256": fact.api_key_sha256,
        "registered_by": f"{signer.speaker} ({signer.key_id})",
    }


def _report_trust(report: AuditReport, stats: ReadStats, keyring) -> None:
    for (speaker, event_type), count in sorted(stats.by_signer.items()):
        report.signed_by.setdefault(speaker, {})[event_type] = count
    report.misplaced_records = len(stats.misplaced)
    report.misplaced = [
        f"{topic}[{partition}]@{offset}: {reason}"
        for topic, partition, offset, reason in stats.misplaced[:MAX_LISTED]
    ]
    report.untrusted_records = len(stats.untrusted)
    report.untrusted = [
        f"{topic}[{partition}]@{offset}: {reason}"
        for topic, partition, offset, reason in stats.untrusted[:MAX_LISTED]
    ]
    for entry in sorted(keyring.entries(), key=lambda e: (e.party, e.principal_id, e.key_id)):
        report.keys.append(
            {
                "key_id": entry.key_id,
                "speaks_for": entry.speaker,
                "anchor": entry.key_id in keyring.anchor_ids,
                "valid_from_ms": entry.valid_from_ms,
                "valid_until_ms": entry.valid_until_ms,
            }
        )
    report.refused_keys = [f"{key_id}: {reason}" for key_id, reason in keyring.refused]


def _fields(allocation: Allocation) -> dict:
    return {name: getattr(allocation, name) for name in FIELDS}


def _totals(expected, payouts) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}

    def bucket(currency: str) -> dict[str, int]:
        return totals.setdefault(
            currency,
            {"revenue_minor": 0, "pool_micros": 0, "allocated_micros": 0, "paid_minor": 0,
             "carried_micros": 0},
        )  # fmt: skip

    for currency, amount in expected.revenue_minor.items():
        bucket(currency)["revenue_minor"] = amount
    for currency, amount in expected.pool_micros.items():
        bucket(currency)["pool_micros"] = amount
    for allocation in expected.allocations.values():
        bucket(allocation.currency)["allocated_micros"] += allocation.allocated_micros
    latest: dict[tuple[str, str], object] = {}
    for payout in payouts:
        bucket(payout.currency)["paid_minor"] += payout.amount_minor
        key = (payout.contributor_id, payout.currency)
        if key not in latest or payout.period > latest[key].period:
            latest[key] = payout
    for (_, currency), payout in latest.items():
        bucket(currency)["carried_micros"] += payout.carried_forward_micros
    for currency, values in totals.items():
        # Every allocated micro-unit is paid, carried, or not yet settled by a run.
        values["unsettled_micros"] = (
            values["allocated_micros"]
            - values["paid_minor"] * micros_per_minor(currency)
            - values["carried_micros"]
        )
    return totals


async def _compare_projections(settings, ledger_schema, payout_schema, expected, payouts, report):
    mismatches = report.mismatches
    conn = await connect(settings.database_url, "public", application_name="audit")
    try:
        ledger = await _table(conn, ledger_schema, "allocations", report)
        if ledger is not None:
            for allocation_id in sorted(set(expected.allocations) | set(ledger)):
                want = expected.allocations.get(allocation_id)
                got = ledger.get(allocation_id)
                if got is None:
                    mismatches.append(f"ledger projection: allocation {allocation_id} is missing")
                elif want is None:
                    mismatches.append(
                        f"ledger projection: allocation {allocation_id} "
                        f"({got['allocated_micros']} micros) has no basis in the facts"
                    )
                elif diff := _diff(
                    "ledger projection: allocation", allocation_id, _fields(want), got
                ):
                    mismatches.append(diff)
            await _compare_outcomes(conn, ledger_schema, expected.outcomes, mismatches)
            unbalanced = await conn.fetch(f"SELECT * FROM {ledger_schema}.unbalanced_movements")
            for row in unbalanced:
                mismatches.append(
                    f"ledger projection: movement {row['movement_id']} is unbalanced "
                    f"({row['debits']} debited, {row['credits']} credited)"
                )
        paid = await _table(conn, payout_schema, "payouts", report, key="payout_id")
        if paid is not None:
            for payout_id in sorted(set(payouts) | set(paid)):
                fact = payouts.get(payout_id)
                row = paid.get(payout_id)
                if row is None:
                    mismatches.append(f"payout projection: payout {payout_id} is missing")
                elif fact is None:
                    mismatches.append(
                        f"payout projection: payout {payout_id} has no payout.issued fact"
                    )
                else:
                    want = {
                        "contributor_id": fact.contributor_id,
                        "period": fact.period,
                        "currency": fact.currency,
                        "amount_minor": fact.amount_minor,
                        "opening_carried_micros": fact.opening_carried_micros,
                        "carried_forward_micros": fact.carried_forward_micros,
                    }
                    if diff := _diff("payout projection: payout", payout_id, want, row):
                        mismatches.append(diff)
    finally:
        await conn.close()


# Outcomes that are final: their reason must match too. A parked event's reason says what
# the ledger was waiting for when it last looked, which may be older than the log.
_FINAL = ("rejected", "unallocated")


async def _compare_outcomes(conn, schema: str, outcomes: dict[str, str], mismatches) -> None:
    """Each revenue event's and adjustment's outcome by the rules against the ledger's
    status and reason."""
    rows = await conn.fetch(f"SELECT revenue_id, status, status_reason FROM {schema}.revenue")
    ledger = {row["revenue_id"]: (row["status"], row["status_reason"]) for row in rows}
    for revenue_id in sorted(set(outcomes) | set(ledger)):
        if revenue_id not in ledger:
            mismatches.append(
                f"ledger projection: revenue {revenue_id} is not recorded; the rules give "
                f"{outcomes[revenue_id]!r}"
            )
            continue
        status, reason = ledger[revenue_id]
        if revenue_id not in outcomes:
            mismatches.append(
                f"ledger projection: revenue {revenue_id} ({status}) has no trusted fact on the log"
            )
            continue
        want_status, _, want_reason = outcomes[revenue_id].partition(": ")
        if status != want_status or (status in _FINAL and reason != want_reason):
            mismatches.append(
                f"ledger projection: revenue {revenue_id} is {status}"
                + (f" ({reason})" if reason else "")
                + f", but the rules give {want_status}"
                + (f" ({want_reason})" if want_reason else "")
            )


async def _table(conn, schema: str, table: str, report, key: str = "allocation_id"):
    exists = await conn.fetchval(
        "SELECT true FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2",
        schema,
        table,
    )
    if not exists:
        report.notes.append(f"no {schema}.{table} projection to compare (service never ran)")
        return None
    try:
        rows = await conn.fetch(f"SELECT * FROM {schema}.{table}")
    except asyncpg.PostgresError as error:
        report.mismatches.append(f"{schema}.{table} unreadable: {error}")
        return None
    return {row[key]: dict(row) for row in rows}
