"""Builds the conformance kit in tests/conformance/kit/ (docs/conformance.md):

- `log.jsonl`: every record of a small platform's log, as the broker holds it (the signed
  fact's bytes, its topic, partition, offset and append time), in the log file format of
  services/common/logreader.py;
- `anchors.json`: the trust anchor (the admin key) the log's key registrations are signed
  with;
- `expected.json`: what the rules give for that log: each revenue event's and
  adjustment's outcome and reason, every allocation, every payout, the allocations digest
  and the totals, and what a reader must skip (a resent record, a fact on the wrong topic,
  facts signed by a party that may not publish them, a second fact under a used id).

Every scenario says what it expects in words (`Scenario.expect`); the builder fails if the
rules give anything else, so expected.json is checked by hand-written intent, not only
computed. Everything is deterministic (fixed keys, fixed times; Ed25519 signatures are
deterministic): `python -m tests.conformance.build_kit` rewrites the same bytes, and
tests/conformance/test_kit.py checks that the committed files are what this makes.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.audit import audit_log_file
from services.cli.provision import key_registration
from services.common.facts import Envelope, payload_of, timestamp
from services.common.logreader import RawRecord, write_log_file
from services.common.signing import Signer, anchor_record, load_anchors
from services.common.topics import TopicRegistry
from services.rules import ids
from services.rules.ids import derived_id
from services.rules.merkle import snapshot_root
from services.rules.settlement import minimum_payout, settle
from tests import ledger_facts as f
from tt.facts.v1 import ledger_pb2

KIT = Path(__file__).parent / "kit"
REGISTRY = TopicRegistry()
START = datetime(2026, 1, 1, tzinfo=UTC)


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def signer(name: str) -> Signer:
    seed = hashlib.sha256(f"1tt conformance kit key {name}".encode()).digest()
    return Signer(Ed25519PrivateKey.from_private_bytes(seed))


def kit_id(kind: str, name: str) -> str:
    return derived_id(f"kit.{kind}", name)


@dataclass
class Scenario:
    """One case: the revenue event (or adjustment) it is about and what must come of it."""

    name: str
    revenue_id: str
    status: str
    reason_contains: str = ""
    # Parts it must give, by contribution name (None: no allocation for it).
    parts: dict[str, int | None] = field(default_factory=dict)


@dataclass
class Log:
    records: list[tuple[int, int, RawRecord]] = field(default_factory=list)
    offsets: Counter = field(default_factory=Counter)
    scenarios: list[Scenario] = field(default_factory=list)

    appended: dict[str, datetime] = field(default_factory=dict)  # revenue/adjustment ids

    def append(self, by: Signer, envelope: Envelope, at: datetime, topic: str = "") -> Envelope:
        """Sign the fact (recorded at `at`) and append it as the broker would at `at`."""
        envelope.occurred_at.CopyFrom(timestamp(at))
        envelope.recorded_at.CopyFrom(timestamp(at))
        self.append_value(by.seal(envelope), topic or REGISTRY.fact_topic(envelope.event_type), at)
        return envelope

    def append_value(self, value: bytes, topic: str, at: datetime) -> None:
        offset = self.offsets[topic]
        self.offsets[topic] += 1
        ms = int(at.timestamp() * 1000)
        self.records.append((ms, len(self.records), RawRecord(topic, 0, offset, ms, value)))

    def expect(self, name, revenue_id, status, reason_contains="", parts=None):
        self.scenarios.append(Scenario(name, revenue_id, status, reason_contains, parts or {}))

    def ordered(self) -> list[RawRecord]:
        return [record for _, _, record in sorted(self.records)]


ADMIN = signer("admin")
INGEST = signer("ingest")
PREPROCESS = signer("preprocess")
LEDGER = signer("ledger")
PAYOUT = signer("payout")
ACME = signer("consumer acme")
GLOBEX = signer("consumer globex")
ACME_ID = kit_id("consumer", "acme")
GLOBEX_ID = kit_id("consumer", "globex")


def contributor(name: str) -> str:
    return kit_id("contributor", name)


def revenue_at(period: str) -> datetime:
    """Revenue for a month is recorded on the 2nd of the next."""
    year, month = map(int, period.split("-"))
    return utc(year + month // 12, month % 12 + 1, 2)


def build(scratch: Path) -> Log:
    log = Log()
    keys = [
        ("ingest", INGEST, ""),
        ("preprocess", PREPROCESS, ""),
        ("ledger", LEDGER, ""),
        ("payout", PAYOUT, ""),
        ("consumer", ACME, ACME_ID),
        ("consumer", GLOBEX, GLOBEX_ID),
    ]
    for party, key, principal in keys:
        log.append(ADMIN, key_registration(ADMIN, party, key, principal, valid_from=START), START)

    # -- contributions ---------------------------------------------------------------------
    processed = {}
    for name, who, tokens in [
        ("a1", "alice", 1000),
        ("b1", "bob", 1000),
        ("c1", "carol", 1000),  # three equal weights: the split's remainders tie
        ("d0", "dave", 0),  # no accepted tokens: no claim
        ("a2", "alice", 2500),
        ("b2", "bob", 7),
        ("e1", "erin", 400),  # withdrawn before March
        ("f1", "frank", 600),  # withdrawn during March
    ]:
        envelope = f.processed(kit_id("contribution", name), contributor(who), tokens)
        processed[name] = log.append(PREPROCESS, envelope, START + timedelta(hours=1))
    for name, when in [("e1", utc(2026, 2, 20)), ("f1", utc(2026, 3, 10))]:
        fact = processed[name].contribution_processed
        log.append(
            INGEST,
            f.withdrawn(fact.contribution_id, fact.contributor_id, when),
            when,
        )

    def snapshot(by, consumer, name, members, at=START):
        envelope = f.snapshot(kit_id("snapshot", name), consumer, [processed[m] for m in members])
        return log.append(by, envelope, at + timedelta(hours=2))

    def agreement(by, consumer, name, service, bps, currency="USD", start=START, at=None, **kw):
        envelope = f.agreement(
            kit_id("agreement", name), consumer, service, bps, start, currency=currency, **kw
        )
        log.append(by, envelope, at or start)
        return kit_id("agreement", name)

    def deploy(by, consumer, name, service, snapshots, start=START, at=None):
        envelope = f.deployment(
            kit_id("deployment", name),
            consumer,
            service,
            [kit_id("snapshot", s) for s in snapshots],
            start,
        )
        log.append(by, envelope, at or start)
        return kit_id("deployment", name)

    def revenue(by, consumer, external, service, period, amount, agreement_id, deployments,
                currency="USD", at=None):  # fmt: skip
        envelope = f.revenue(
            consumer, external, service, period, amount, agreement_id, deployments, currency
        )
        log.append(by, envelope, at or revenue_at(period))
        log.appended[envelope.revenue_recorded.revenue_id] = at or revenue_at(period)
        return envelope.revenue_recorded.revenue_id

    def adjust(by, consumer, external, revenue_id, service, delta, currency, at):
        adjustment_id = ids.adjustment_id(consumer, external)
        envelope = f.adjustment(consumer, adjustment_id, revenue_id, service, delta, currency)
        log.append(by, envelope, at)
        log.appended[adjustment_id] = at
        return adjustment_id

    # -- acme's terms ---------------------------------------------------------------------
    snapshot(ACME, ACME_ID, "s1", ["a1", "b1", "c1", "d0"])
    snapshot(ACME, ACME_ID, "s2", ["a1", "a2", "b2", "e1", "f1"], at=utc(2026, 3, 1))
    snapshot(ACME, ACME_ID, "s-zero", ["d0"])
    bad = f.snapshot(kit_id("snapshot", "s-bad"), ACME_ID, [processed["b1"]])
    bad.snapshot_created.members[0].tokens_accepted = 999  # the processed fact says 1000
    bad.snapshot_created.merkle_root = snapshot_root(bad.snapshot_created.members)
    log.append(ACME, bad, START + timedelta(hours=2))

    chat = agreement(ACME, ACME_ID, "chat", "chat", 333, min_payout_minor=500)
    jp = agreement(ACME, ACME_ID, "jp", "jp", 1500, "JPY", min_payout_minor=1000)
    zero = agreement(ACME, ACME_ID, "zero", "zero", 0, "EUR")
    gulf = agreement(ACME, ACME_ID, "gulf", "gulf", 250, "BHD")
    empty = agreement(ACME, ACME_ID, "empty", "empty", 1000)
    audited = agreement(ACME, ACME_ID, "audited", "audited", 1000)
    ghost = agreement(ACME, ACME_ID, "ghost", "ghost", 1000)
    # Cheaper terms the consumer might try to name.
    # Cheaper terms the consumer might try to name for February (each ends with February:
    # terms published in advance of a month do govern it, and that is no attack).
    cheap = agreement(
        ACME, ACME_ID, "cheap", "chat", 1, start=utc(2026, 2, 28), at=utc(2026, 2, 20),
        until=utc(2026, 3, 1),
    )  # fmt: skip
    backdated = agreement(
        ACME, ACME_ID, "backdated", "chat", 1, start=utc(2026, 2, 1), at=utc(2026, 2, 10),
        until=utc(2026, 3, 1),
    )  # fmt: skip
    late = agreement(
        ACME, ACME_ID, "late", "chat", 1, start=utc(2026, 1, 15), at=utc(2026, 6, 1),
        until=utc(2026, 3, 1),
    )  # fmt: skip
    d1 = deploy(ACME, ACME_ID, "chat-1", "chat", ["s1"])
    d2 = deploy(ACME, ACME_ID, "chat-2", "chat", ["s1", "s2"], start=utc(2026, 3, 15))
    d_future = deploy(ACME, ACME_ID, "chat-future", "chat", ["s1"], start=utc(2026, 9, 1))
    d_jp = deploy(ACME, ACME_ID, "jp", "jp", ["s1"])
    d_zero = deploy(ACME, ACME_ID, "zero", "zero", ["s1"])
    d_gulf = deploy(ACME, ACME_ID, "gulf", "gulf", ["s1"])
    d_empty = deploy(ACME, ACME_ID, "empty", "empty", ["s-zero"])
    d_bad = deploy(ACME, ACME_ID, "audited", "audited", ["s-bad"])
    # A second, different agreement under an id already used: refused.
    changed = f.agreement(chat, ACME_ID, "chat", 1, START)
    changed.event_id = kit_id("event", "chat agreement changed")
    log.append(ACME, changed, utc(2026, 1, 20))

    # -- acme's revenue ---------------------------------------------------------------------
    r1 = revenue(ACME, ACME_ID, "INV-2026-02", "chat", "2026-02", 1_000_000, chat, [d1])
    log.expect(
        "three equal claims, a pool divisible by three", r1, "allocated",
        parts={"a1": 111_000_000, "b1": 111_000_000, "c1": 111_000_000, "d0": None},
    )  # fmt: skip
    r2 = revenue(ACME, ACME_ID, "INV-2026-03", "chat", "2026-03", 9_999_999_999, chat, [d1, d2])
    log.expect(
        "largest amount; two deployments (a1 in both counts once); withdrawn before the "
        "period (e1) takes no part, withdrawn during it (f1) does",
        r2,
        "allocated",
        # A pool of 3,329,999,999,667 micros over 6,107 tokens: f1's 600 give a quota of
        # 327,165,547,699 and the third-largest remainder, so one of the 3 micros left.
        parts={"e1": None, "d0": None, "f1": 327_165_547_700, "b2": 3_816_931_390},
    )
    r3 = revenue(ACME, ACME_ID, "INV-2026-04", "chat", "2026-04", 1, chat, [d2])
    log.expect("one cent: a pool of 333 micros", r3, "allocated")
    r_jp1 = revenue(ACME, ACME_ID, "JP-2026-02", "jp", "2026-02", 12_345, jp, [d_jp], "JPY")
    log.expect("JPY: exponent 0", r_jp1, "allocated")
    r_jp2 = revenue(ACME, ACME_ID, "JP-2026-03", "jp", "2026-03", 10_000, jp, [d_jp], "JPY")
    log.expect("JPY: a second month, paid over the minimum", r_jp2, "allocated")
    r_zero = revenue(ACME, ACME_ID, "EU-2026-02", "zero", "2026-02", 500, zero, [d_zero], "EUR")
    log.expect("a share of 0 bps: a pool of 0, parts of 0", r_zero, "allocated")
    r_gulf = revenue(
        ACME, ACME_ID, "BH-2026-02", "gulf", "2026-02", 1_234_567, gulf, [d_gulf], "BHD"
    )
    log.expect(
        "BHD: exponent 3; a pool of 30,864,175 micros over three equal claims: the micro "
        "left over goes to the smallest contribution id",
        r_gulf,
        "allocated",
        parts=dict(zip(sorted(["a1", "b1", "c1"], key=lambda n: kit_id("contribution", n)),
                       [10_288_059, 10_288_058, 10_288_058], strict=True)),
    )  # fmt: skip
    r_empty = revenue(ACME, ACME_ID, "EMPTY-2026-02", "empty", "2026-02", 1000, empty, [d_empty])
    log.expect("no claim with weight", r_empty, "unallocated", "the pool stays with the consumer")
    # What the consumer may not choose.
    for name, external, named_agreement, named, reason in [
        ("an agreement starting on the period's last day", "TRY-CHEAP", cheap, [d1],
         f"the rules select {chat} (333 bps)"),
        ("an agreement backdated into the period", "TRY-BACK", backdated, [d1],
         f"the rules select {chat} (333 bps)"),
        ("an agreement published after the revenue", "TRY-LATE", late, [d1],
         "was published after this revenue was recorded"),
        ("a deployment left out", "TRY-LEFT-OUT", chat, [d1],
         f"are not the ones live for service 'chat' in 2026-03 ({', '.join(sorted([d1, d2]))})"),
    ]:  # fmt: skip
        period = "2026-03" if external == "TRY-LEFT-OUT" else "2026-02"
        revenue_id = revenue(ACME, ACME_ID, external, "chat", period, 50_000, named_agreement,
                             named)  # fmt: skip
        log.expect(name, revenue_id, "rejected", reason)
    r_old = revenue(ACME, ACME_ID, "TRY-OLD", "chat", "2026-04", 50_000, chat, [d1])
    log.expect(
        "a superseded deployment",
        r_old,
        "rejected",
        f"are not the ones live for service 'chat' in 2026-04 ({d2})",
    )
    for name, external, service, period, currency, named_agreement, named, reason in [
        ("an unknown currency", "BAD-CUR", "chat", "2026-02", "XXX", chat, [d1],
         "currency 'XXX' is not one the platform settles in"),
        ("another currency than the agreement's", "BAD-EUR", "chat", "2026-02", "EUR", chat,
         [d1], "currencies never mix"),
        ("another service's agreement", "BAD-SVC", "chat", "2026-02", "JPY", jp, [d1],
         "is for service 'jp', not 'chat'"),
        ("a deployment that began after the period", "BAD-DEP", "chat", "2026-02", "USD", chat,
         [d_future], "began after"),
        ("a snapshot that misstates a processed fact", "BAD-SNAP", "audited", "2026-02", "USD",
         audited, [d_bad], "claims 999 accepted tokens"),
    ]:  # fmt: skip
        revenue_id = revenue(ACME, ACME_ID, external, service, period, 70_000, named_agreement,
                             named, currency)  # fmt: skip
        log.expect(name, revenue_id, "rejected", reason)
    r_ghost = revenue(
        ACME, ACME_ID, "GHOST-2026-02", "ghost", "2026-02", 1000, ghost,
        [kit_id("deployment", "never-published")],
    )  # fmt: skip
    log.expect("a deployment that never arrives", r_ghost, "parked", "waiting for deployment")

    # Adjustments.
    clawback = adjust(ACME, ACME_ID, "ADJ-1", r1, "chat", -300_000, "USD", utc(2026, 3, 5))
    log.expect("a clawback (negative parts)", clawback, "allocated")
    more = adjust(ACME, ACME_ID, "ADJ-2", r2, "chat", 1, "USD", utc(2026, 4, 5))
    log.expect("an adjustment of 1 minor unit", more, "allocated")
    of_rejected = adjust(
        ACME, ACME_ID, "ADJ-3", ids.revenue_id(ACME_ID, "TRY-CHEAP"), "chat", -10, "USD",
        utc(2026, 3, 6),
    )  # fmt: skip
    log.expect("an adjustment of rejected revenue", of_rejected, "rejected", "which was rejected")

    # -- globex joins in May and records revenue for months already past ------------------
    snapshot(GLOBEX, GLOBEX_ID, "gx", ["a2", "b2"], at=utc(2026, 5, 1))
    gx = agreement(GLOBEX, GLOBEX_ID, "gx", "gx", 700, at=utc(2026, 5, 1))
    gx_cheaper = agreement(GLOBEX, GLOBEX_ID, "gx-cheaper", "gx", 1, at=utc(2026, 5, 2))
    d_gx = deploy(GLOBEX, GLOBEX_ID, "gx", "gx", ["gx"], at=utc(2026, 5, 1))
    r_gx = revenue(GLOBEX, GLOBEX_ID, "GX-2026-02", "gx", "2026-02", 80_000, gx, [d_gx],
                   at=utc(2026, 5, 3))  # fmt: skip
    log.expect("a period that ended without terms takes the earliest published", r_gx,
               "allocated")  # fmt: skip
    r_gx2 = revenue(GLOBEX, GLOBEX_ID, "GX-2026-03", "gx", "2026-03", 80_000, gx_cheaper,
                    [d_gx], at=utc(2026, 5, 3))  # fmt: skip
    log.expect("a later publication never replaces a filled gap", r_gx2, "rejected",
               f"the rules select {gx} (700 bps)")  # fmt: skip
    r_other = revenue(GLOBEX, GLOBEX_ID, "GX-ACME", "chat", "2026-02", 5_000, chat, [d1],
                      at=utc(2026, 5, 3))  # fmt: skip
    log.expect("another consumer's agreement", r_other, "rejected", "another consumer's")

    # -- what a reader must skip ------------------------------------------------------------
    first = next(r for _, _, r in log.records if r.topic.startswith("revenue.recorded"))
    log.append_value(first.value, first.topic, utc(2026, 3, 3))  # the same record, resent
    misplaced = f.revenue(ACME_ID, "MISPLACED", "chat", "2026-02", 1, chat, [d1])
    log.append(ACME, misplaced, utc(2026, 3, 3), REGISTRY.fact_topic("agreement.published"))
    forged = f.revenue(ACME_ID, "FORGED", "chat", "2026-02", 1_000_000, chat, [d1])
    log.append(GLOBEX, forged, utc(2026, 3, 3))  # globex may not speak for acme
    log.append(ACME, allocation_fact(r1, "forged", 10**9, at_period="2026-02"), utc(2026, 3, 3))

    emulate_ledger_and_payouts(log, scratch)
    return log


def allocation_fact(revenue_id, contribution, micros, at_period) -> Envelope:
    fact = ledger_pb2.AllocationMade(
        allocation_id=ids.allocation_id(revenue_id, kit_id("contribution", contribution)),
        revenue_id=revenue_id,
        service_id="chat",
        agreement_id=kit_id("agreement", "chat"),
        contributor_id=contributor("mallory"),
        contribution_id=kit_id("contribution", contribution),
        period=at_period,
        currency="USD",
        allocated_micros=micros,
        pool_micros=micros,
        weight=1,
        total_weight=1,
    )
    return f.envelope(fact, fact.allocation_id)


MINIMUMS = {kit_id("agreement", "chat"): 500, kit_id("agreement", "jp"): 1000}
PAYOUT_RUNS = [("2026-02", utc(2026, 3, 3)), ("2026-03", utc(2026, 4, 3)),
               ("2026-04", utc(2026, 5, 4))]  # fmt: skip


def audit(log: Log, folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    write_log_file(folder / "log.jsonl", log.ordered())
    (folder / "anchors.json").write_text(
        json.dumps([anchor_record(ADMIN.entry("admin", START))], indent=2) + "\n"
    )
    return audit_log_file(folder / "log.jsonl", load_anchors(folder / "anchors.json"))


def emulate_ledger_and_payouts(log: Log, scratch: Path) -> None:
    """What the ledger and the payout service publish for this log, by the rules: an
    allocation.made fact per allocation a minute after its revenue event, and a payout run
    per month (each contributor and currency: the allocations of that month or earlier
    not yet settled, made before the run)."""
    _, expected = audit(log, scratch)
    made: dict[str, datetime] = {}
    for allocation in sorted(expected.allocations.values(), key=lambda a: a.allocation_id):
        at = log.appended[allocation.revenue_id] + timedelta(minutes=1)
        fact = ledger_pb2.AllocationMade(
            **{
                name: getattr(allocation, name)
                for name in ledger_pb2.AllocationMade.DESCRIPTOR.fields_by_name
            }
        )
        log.append(LEDGER, f.envelope(fact, allocation.allocation_id), at)
        made[allocation.allocation_id] = at
    covered: set[str] = set()
    carried: dict[tuple[str, str], int] = {}
    minimums: dict[tuple[str, str], list[int]] = {}
    for period, at in PAYOUT_RUNS:
        due: dict[tuple[str, str], list] = {}
        for allocation in expected.allocations.values():
            if (
                allocation.period <= period
                and made[allocation.allocation_id] < at
                and allocation.allocation_id not in covered
            ):
                due.setdefault((allocation.contributor_id, allocation.currency), []).append(
                    allocation
                )
        for (contributor_id, currency), allocations in sorted(due.items()):
            allocations.sort(key=lambda a: a.allocation_id)
            key = (contributor_id, currency)
            opening = carried.get(key, 0)
            minimums.setdefault(key, []).extend(
                MINIMUMS.get(a.agreement_id, 0) for a in allocations
            )
            result = settle(
                opening,
                [a.allocated_micros for a in allocations],
                currency,
                minimum_payout(minimums[key]),
            )
            payout_id = ids.payout_id(contributor_id, period, currency)
            fact = ledger_pb2.PayoutIssued(
                payout_id=payout_id,
                payout_run_id=ids.payout_run_id(period),
                contributor_id=contributor_id,
                period=period,
                currency=currency,
                amount_minor=result.amount_minor,
                opening_carried_micros=opening,
                carried_forward_micros=result.carried_forward_micros,
                allocation_ids=[a.allocation_id for a in allocations],
            )
            log.append(PAYOUT, f.envelope(fact, payout_id), at)
            covered.update(a.allocation_id for a in allocations)
            carried[key] = result.carried_forward_micros


def expected_json(log: Log, report, expected) -> dict:
    problems = []
    for scenario in log.scenarios:
        status, _, reason = expected.outcomes.get(scenario.revenue_id, "absent").partition(": ")
        if status != scenario.status or scenario.reason_contains not in reason:
            problems.append(
                f"{scenario.name}: the rules give {status} ({reason}), the kit expects "
                f"{scenario.status} ({scenario.reason_contains})"
            )
        for name, micros in scenario.parts.items():
            allocation_id = ids.allocation_id(scenario.revenue_id, kit_id("contribution", name))
            got = expected.allocations.get(allocation_id)
            got_micros = None if got is None else got.allocated_micros
            if got_micros != micros:
                problems.append(f"{scenario.name}: {name} gets {got_micros}, not {micros}")
    if report.mismatches:
        problems += [f"audit: {m}" for m in report.mismatches]
    if problems:
        raise SystemExit("the kit is not what its scenarios say:\n" + "\n".join(problems))
    outcomes = {}
    for revenue_id, outcome in sorted(expected.outcomes.items()):
        status, _, reason = outcome.partition(": ")
        outcomes[revenue_id] = {"status": status, "reason": reason}
    names = {s.revenue_id: s.name for s in log.scenarios}
    for revenue_id, outcome in outcomes.items():
        outcome["scenario"] = names.get(revenue_id, "")
    allocations = [
        {name: getattr(a, name) for name in ledger_pb2.AllocationMade.DESCRIPTOR.fields_by_name}
        for _, a in sorted(expected.allocations.items())
    ]
    return {
        "format": 1,
        "outcomes": outcomes,
        "allocations": allocations,
        "allocations_digest": report.digest,
        "payouts": report_payouts(log),
        "totals": report.totals,
        "skipped": {
            "resent_records": report.duplicate_records,
            "invalid_records": report.invalid_records,
            "misplaced": report.misplaced,
            "untrusted": report.untrusted,
            "refused": expected.refused,
        },
    }


def report_payouts(log: Log) -> list[dict]:
    from services.common.facts import decode

    payouts = []
    for record in log.ordered():
        if record.topic == REGISTRY.fact_topic("payout.issued"):
            fact = payload_of(decode(record.value))
            payouts.append(
                {
                    "payout_id": fact.payout_id,
                    "payout_run_id": fact.payout_run_id,
                    "contributor_id": fact.contributor_id,
                    "period": fact.period,
                    "currency": fact.currency,
                    "amount_minor": fact.amount_minor,
                    "opening_carried_micros": fact.opening_carried_micros,
                    "carried_forward_micros": fact.carried_forward_micros,
                    "allocation_ids": list(fact.allocation_ids),
                }
            )
    return sorted(payouts, key=lambda p: p["payout_id"])


def write_kit(folder: Path) -> dict:
    """Build the kit into `folder` (log.jsonl, anchors.json, expected.json)."""
    with tempfile.TemporaryDirectory() as scratch:
        log = build(Path(scratch))
    report, expected = audit(log, folder)
    result = expected_json(log, report, expected)
    (folder / "expected.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return result


def main() -> int:
    result = write_kit(KIT)
    print(
        f"conformance kit in {KIT}: {len(result['outcomes'])} revenue events and "
        f"adjustments, {len(result['allocations'])} allocations, {len(result['payouts'])} "
        f"payouts, digest {result['allocations_digest']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
