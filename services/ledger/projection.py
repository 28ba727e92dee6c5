"""The ledger's projection: facts in, parked revenue, allocations and a balanced journal out.

`Projector` is the Inbox handler: it stores each fact it is given (refusing a second,
different fact under an id already used) and derives nothing by itself. `release` then
allocates every parked revenue event whose named facts have all arrived; it is called
by the service's releaser after each batch (and by `1tt rebuild ledger` after replay).
Allocation reads only the facts the revenue event names, so the order in which topics
were read cannot change the result.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg

from services.common.bus import Delivery, PermanentFactError
from services.common.db import describe_refusal, refused_by_database
from services.common.facts import Envelope, make_envelope, payload_of
from services.common.money import (
    INT64_MAX,
    UnknownCurrencyError,
    micros_per_minor,
)
from services.common.outbox import write_outbox_new
from services.rules import admission, ids
from services.rules.allocation import (
    ALLOCATION_FIELDS,
    AllocationError,
    Claim,
    NothingToAllocate,
    Part,
    pool_micros,
    split,
)
from services.rules.merkle import snapshot_root
from services.rules.terms import Deployment
from tt.facts.v1 import ledger_pb2

log = logging.getLogger(__name__)
SQL_DIR = Path(__file__).parent / "sql"

SCHEMA = "ledger"
PRODUCER = "ledger"
EVENT_TYPES = (
    "contribution.processed",
    "contribution.withdrawn",
    "agreement.published",
    "snapshot.created",
    "service.deployed",
    "revenue.recorded",
    "revenue.adjusted",
    "payout.issued",
)
# The tables `1tt rebuild ledger` compares, with their ordering keys. Inbox and outbox
# rows are bookkeeping (offsets, times) and are not part of the comparison.
PROJECTION_TABLES: dict[str, str] = {
    "agreements": "agreement_id",
    "snapshots": "snapshot_id",
    "snapshot_members": "snapshot_id, contribution_id",
    "deployments": "deployment_id",
    "processed": "event_id",
    "withdrawals": "contribution_id",
    "revenue": "revenue_id",
    "allocations": "allocation_id",
    "accounts": "account",
    "entries": "movement_id, line",
}


def _ts(stamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def _payload_sha256(envelope: Envelope) -> str:
    return hashlib.sha256(payload_of(envelope).SerializeToString(deterministic=True)).hexdigest()


def _fits_int64(name: str, value: int) -> None:
    if value > INT64_MAX:
        raise PermanentFactError(f"{name} ({value}) does not fit a 64-bit integer; not wrapped")


class Projector:
    """Stores the facts the ledger allocates by."""

    async def __call__(self, conn: asyncpg.Connection, delivery: Delivery) -> list[Envelope]:
        envelope = delivery.envelope
        handler = getattr(self, "_" + envelope.event_type.replace(".", "_"))
        await handler(conn, envelope, payload_of(envelope), delivery.appended_at)
        return []

    async def _payout_issued(self, conn, envelope, fact, published_at) -> None:
        """Journal a payout: the contributor's account pays out to its "paid" account."""
        if fact.amount_minor == 0:
            return
        try:
            amount = fact.amount_minor * micros_per_minor(fact.currency)
        except UnknownCurrencyError as error:
            raise PermanentFactError(str(error)) from None
        if await conn.fetchval(
            "SELECT 1 FROM entries WHERE movement_id = $1 LIMIT 1", fact.payout_id
        ):
            return
        contributor = f"contributor:{fact.contributor_id}:{fact.currency}"
        paid = f"paid:{fact.contributor_id}:{fact.currency}"
        await conn.executemany(
            "INSERT INTO accounts (account, kind, owner_id, currency) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (account) DO NOTHING",
            [
                (contributor, "contributor", fact.contributor_id, fact.currency),
                (paid, "paid", fact.contributor_id, fact.currency),
            ],
        )
        await conn.executemany(
            "INSERT INTO entries (movement_id, line, account, currency, debit_micros, "
            "credit_micros) VALUES ($1, $2, $3, $4, $5, $6)",
            [
                (fact.payout_id, 0, contributor, fact.currency, amount, 0),
                (fact.payout_id, 1, paid, fact.currency, 0, amount),
            ],
        )

    async def _store_once(
        self, conn: asyncpg.Connection, table: str, id_column: str, fact_id: str, sql: str, *args
    ) -> None:
        """Insert a fact's row; the same id with the same payload is a no-op, with a
        different payload a rejection (facts are immutable)."""
        conflict = f" ON CONFLICT ({id_column}) DO NOTHING RETURNING 1"
        inserted = await conn.fetchval(sql + conflict, *args)
        if inserted:
            return
        stored = await conn.fetchval(
            f"SELECT payload_sha256 FROM {table} WHERE {id_column} = $1", fact_id
        )
        if stored != args[-1]:
            raise PermanentFactError(
                f"{id_column} {fact_id} was already published with different content; a "
                "published fact cannot be changed (publish a new one, or an adjustment)"
            )

    async def _contribution_processed(self, conn, envelope, fact, published_at) -> None:
        _fits_int64("tokens_accepted", fact.tokens_accepted)
        await conn.execute(
            "INSERT INTO processed (event_id, contribution_id, contributor_id, tokens_accepted) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING",
            envelope.event_id,
            fact.contribution_id,
            fact.contributor_id,
            fact.tokens_accepted,
        )

    async def _contribution_withdrawn(self, conn, envelope, fact, published_at) -> None:
        # The earliest withdrawal counts, whatever order two of them arrive in.
        await conn.execute(
            "INSERT INTO withdrawals (contribution_id, contributor_id, effective_at) "
            "VALUES ($1, $2, $3) ON CONFLICT (contribution_id) DO UPDATE "
            "SET effective_at = LEAST(withdrawals.effective_at, EXCLUDED.effective_at)",
            fact.contribution_id,
            fact.contributor_id,
            _ts(fact.effective_at),
        )

    async def _agreement_published(self, conn, envelope, fact, published_at) -> None:
        await self._store_once(
            conn,
            "agreements",
            "agreement_id",
            fact.agreement_id,
            "INSERT INTO agreements (agreement_id, consumer_id, service_id, share_bps, "
            "weighting_rule, effective_from, effective_until, currency, min_payout_minor, "
            "event_id, published_at, payload_sha256) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            fact.agreement_id,
            fact.consumer_id,
            fact.service_id,
            fact.share_bps,
            fact.weighting_rule,
            _ts(fact.effective_from),
            _ts(fact.effective_until) if fact.HasField("effective_until") else None,
            fact.currency,
            fact.min_payout_minor,
            envelope.event_id,
            published_at,
            _payload_sha256(envelope),
        )

    async def _snapshot_created(self, conn, envelope, fact, published_at) -> None:
        for member in fact.members:
            _fits_int64("tokens_accepted", member.tokens_accepted)
        expected_root = snapshot_root(fact.members)
        if fact.merkle_root != expected_root:
            raise PermanentFactError(
                f"snapshot {fact.snapshot_id}'s merkle_root {fact.merkle_root} does not match "
                f"its members (expected {expected_root}, computed by "
                "the snapshot digest docs/money.md defines)"
            )
        digest = _payload_sha256(envelope)
        exists = await conn.fetchval(
            "SELECT payload_sha256 FROM snapshots WHERE snapshot_id = $1", fact.snapshot_id
        )
        if exists is not None:
            if exists != digest:
                raise PermanentFactError(
                    f"snapshot_id {fact.snapshot_id} was already published with different "
                    "members; a snapshot is immutable (create a new one)"
                )
            return
        await conn.execute(
            "INSERT INTO snapshots (snapshot_id, consumer_id, name, selection, as_of, "
            "merkle_root, member_count, event_id, payload_sha256) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            fact.snapshot_id,
            fact.consumer_id,
            fact.name,
            fact.selection,
            _ts(fact.as_of) if fact.HasField("as_of") else None,
            fact.merkle_root,
            len(fact.members),
            envelope.event_id,
            digest,
        )
        await conn.copy_records_to_table(
            "snapshot_members",
            records=[
                (
                    fact.snapshot_id,
                    m.contribution_id,
                    m.contributor_id,
                    m.tokens_accepted,
                    m.processed_event_id,
                )
                for m in fact.members
            ],
            columns=[
                "snapshot_id",
                "contribution_id",
                "contributor_id",
                "tokens_accepted",
                "processed_event_id",
            ],
        )

    async def _service_deployed(self, conn, envelope, fact, published_at) -> None:
        await self._store_once(
            conn,
            "deployments",
            "deployment_id",
            fact.deployment_id,
            "INSERT INTO deployments (deployment_id, consumer_id, service_id, snapshot_ids, "
            "deployed_from, event_id, published_at, payload_sha256) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            fact.deployment_id,
            fact.consumer_id,
            fact.service_id,
            list(fact.snapshot_ids),
            _ts(fact.deployed_from),
            envelope.event_id,
            published_at,
            _payload_sha256(envelope),
        )

    async def _revenue_recorded(self, conn, envelope, fact, published_at) -> None:
        await self._store_revenue(
            conn,
            envelope,
            published_at=published_at,
            revenue_id=fact.revenue_id,
            kind="recorded",
            original=None,
            external_id=fact.external_id,
            period=fact.period,
            amount_minor=fact.amount_minor,
            agreement_id=fact.agreement_id,
            deployment_ids=list(fact.deployment_ids),
            reason="",
        )

    async def _revenue_adjusted(self, conn, envelope, fact, published_at) -> None:
        await self._store_revenue(
            conn,
            envelope,
            published_at=published_at,
            revenue_id=fact.adjustment_id,
            kind="adjusted",
            original=fact.revenue_id,
            external_id="",
            period="",
            amount_minor=fact.delta_minor,
            agreement_id="",
            deployment_ids=[],
            reason=fact.reason,
        )

    async def _store_revenue(
        self, conn, envelope, *, published_at, revenue_id, kind, original, **fields
    ):
        fact = payload_of(envelope)
        digest = _payload_sha256(envelope)
        stored = await conn.fetchrow(
            "SELECT payload_sha256, amount_minor, currency, period FROM revenue "
            "WHERE revenue_id = $1",
            revenue_id,
        )
        if stored is None and kind == "recorded":
            stored = await conn.fetchrow(
                "SELECT payload_sha256, amount_minor, currency, period FROM revenue "
                "WHERE kind = 'recorded' AND consumer_id = $1 AND external_id = $2",
                fact.consumer_id,
                fields["external_id"],
            )
        if stored is not None:
            if stored["payload_sha256"] == digest:
                return  # the same event published again: a no-op
            what = "revenue" if kind == "recorded" else "adjustment"
            raise PermanentFactError(
                f"{what} {fields['external_id'] or revenue_id} of consumer {fact.consumer_id} "
                f"was already recorded ({stored['amount_minor']} minor units "
                f"{stored['currency']}{', period ' + stored['period'] if stored['period'] else ''})"
                " and this fact says something different; it is not paid twice. Record a "
                "correction as revenue.adjusted referencing the original."
            )
        await conn.execute(
            "INSERT INTO revenue (revenue_id, kind, original_revenue_id, consumer_id, "
            "external_id, service_id, period, amount_minor, currency, agreement_id, "
            "deployment_ids, reason, event_id, payload_sha256, published_at, status, "
            "status_reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, "
            "$14, $15, 'parked', 'not yet examined')",
            revenue_id,
            kind,
            original,
            fact.consumer_id,
            fields["external_id"],
            fact.service_id,
            fields["period"],
            fields["amount_minor"],
            fact.currency,
            fields["agreement_id"],
            fields["deployment_ids"],
            fields["reason"],
            envelope.event_id,
            digest,
            published_at,
        )


# -- release -----------------------------------------------------------------------------


class _Waiting(Exception):
    """A named fact has not arrived yet."""


class _Rejected(Exception):
    """The named facts can never be allocated as published."""


async def parked_revenue(conn: asyncpg.Connection) -> list[str]:
    """Parked revenue ids in release order: recorded events before adjustments."""
    rows = await conn.fetch(
        "SELECT revenue_id FROM revenue WHERE status = 'parked' "
        "ORDER BY kind = 'adjusted', revenue_id"
    )
    return [row["revenue_id"] for row in rows]


async def release(conn: asyncpg.Connection, revenue_ids: Sequence[str]) -> int:
    """Try to allocate each parked revenue event, each in its own transaction. Returns
    how many left the parked state. Safe to run concurrently with itself (row locks).

    A revenue event whose allocation PostgreSQL refuses to store (a value out of range,
    a violated constraint: services.common.db.refused_by_database) is rejected with that
    reason in a transaction of its own, rather than stopping the releaser on every
    restart; the same facts give the same refusal on every replay."""
    released = 0
    for revenue_id in revenue_ids:
        try:
            released += await _release_one(conn, revenue_id)
        except Exception as error:
            if not refused_by_database(error):
                raise
            reason = f"its allocation cannot be stored: {describe_refusal(error)}"
            log.warning("revenue %s rejected: %s", revenue_id, reason)
            async with conn.transaction():
                await conn.execute(
                    "UPDATE revenue SET status = 'rejected', status_reason = $2 "
                    "WHERE revenue_id = $1 AND status = 'parked'",
                    revenue_id,
                    reason,
                )
            released += 1
    return released


async def _release_one(conn: asyncpg.Connection, revenue_id: str) -> int:
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT * FROM revenue WHERE revenue_id = $1 AND status = 'parked' FOR UPDATE",
            revenue_id,
        )
        if row is None:
            return 0
        try:
            if row["kind"] == "recorded":
                await _allocate_recorded(conn, row)
            else:
                await _allocate_adjustment(conn, row)
            return 1
        except _Waiting as waiting:
            if row["status_reason"] != f"waiting for {waiting}":
                await conn.execute(
                    "UPDATE revenue SET status_reason = $2 WHERE revenue_id = $1",
                    revenue_id,
                    f"waiting for {waiting}",
                )
            return 0
        except _Rejected as rejected:
            log.warning("revenue %s rejected: %s", revenue_id, rejected)
            await conn.execute(
                "UPDATE revenue SET status = 'rejected', status_reason = $2 WHERE revenue_id = $1",
                revenue_id,
                str(rejected),
            )
            return 1


def _stop_unless_admitted(outcome) -> None:
    """A parked or rejected verdict of the rules as the release's control flow."""
    if isinstance(outcome, admission.Park):
        raise _Waiting("; ".join(outcome.waiting_for))
    if isinstance(outcome, admission.Reject):
        raise _Rejected(outcome.reason)


async def _allocate_recorded(conn: asyncpg.Connection, row: asyncpg.Record) -> None:
    revenue = admission.RevenueEvent(
        row["revenue_id"],
        row["consumer_id"],
        row["service_id"],
        row["period"],
        row["currency"],
        row["amount_minor"],
        row["agreement_id"] or "",
        tuple(row["deployment_ids"] or ()),
        row["published_at"],
    )
    # The consumer's terms for the service: the named ones are among them, and the rules
    # choose among them (the releaser has read both topics up to the revenue and beyond).
    agreements = [
        _agreement(row)
        for row in await conn.fetch(
            "SELECT * FROM agreements WHERE (consumer_id = $1 AND service_id = $2) "
            "OR agreement_id = $3",
            revenue.consumer_id,
            revenue.service_id,
            revenue.agreement_id,
        )
    ]
    agreement = next((a for a in agreements if a.agreement_id == revenue.agreement_id), None)
    published = [
        _deployment(row)
        for row in await conn.fetch(
            "SELECT * FROM deployments WHERE (consumer_id = $1 AND service_id = $2) "
            "OR deployment_id = ANY($3::text[])",
            revenue.consumer_id,
            revenue.service_id,
            list(revenue.deployment_ids),
        )
    ]
    deployments = {
        d.deployment_id: d for d in published if d.deployment_id in revenue.deployment_ids
    }
    snapshot_ids = sorted({s for d in deployments.values() for s in d.snapshot_ids})
    snapshots: dict[str, list[admission.SnapshotMember]] = {
        s["snapshot_id"]: []
        for s in await conn.fetch(
            "SELECT snapshot_id FROM snapshots WHERE snapshot_id = ANY($1::text[])", snapshot_ids
        )
    }
    processed: dict[str, admission.Processed] = {}
    for m in await conn.fetch(
        "SELECT m.snapshot_id, m.contribution_id, m.contributor_id, m.tokens_accepted AS claimed,"
        " m.processed_event_id, p.contribution_id AS p_contribution, "
        " p.contributor_id AS p_contributor, p.tokens_accepted "
        "FROM snapshot_members m LEFT JOIN processed p ON p.event_id = m.processed_event_id "
        "WHERE m.snapshot_id = ANY($1::text[]) ORDER BY m.snapshot_id, m.contribution_id",
        snapshot_ids,
    ):
        snapshots[m["snapshot_id"]].append(
            admission.SnapshotMember(
                m["contribution_id"], m["contributor_id"], m["claimed"], m["processed_event_id"]
            )
        )
        if m["tokens_accepted"] is not None:
            processed[m["processed_event_id"]] = admission.Processed(
                m["p_contribution"], m["p_contributor"], m["tokens_accepted"]
            )
    member_ids = sorted({m.contribution_id for ms in snapshots.values() for m in ms})
    withdrawn = {
        w["contribution_id"]: w["effective_at"]
        for w in await conn.fetch(
            "SELECT contribution_id, effective_at FROM withdrawals "
            "WHERE contribution_id = ANY($1::text[])",
            member_ids,
        )
    }
    outcome = admission.admit(
        revenue,
        agreement,
        deployments,
        snapshots,
        processed,
        withdrawn,
        admission.Published(agreements, published),
    )
    _stop_unless_admitted(outcome)
    await _write_split(conn, row, outcome.agreement_id, outcome.share_bps, outcome.claims)


def _agreement(row: asyncpg.Record) -> admission.Agreement:
    return admission.Agreement(
        row["agreement_id"],
        row["service_id"],
        row["share_bps"],
        row["currency"],
        row["effective_from"],
        row["effective_until"],
        row["min_payout_minor"],
        row["weighting_rule"],
        row["published_at"],
        consumer_id=row["consumer_id"],
    )


def _deployment(row: asyncpg.Record) -> Deployment:
    return Deployment(
        row["deployment_id"],
        row["service_id"],
        tuple(row["snapshot_ids"]),
        row["deployed_from"],
        row["published_at"],
        row["consumer_id"],
    )


async def _allocate_adjustment(conn: asyncpg.Connection, row: asyncpg.Record) -> None:
    adjustment = admission.Adjustment(
        row["revenue_id"],
        row["original_revenue_id"],
        row["consumer_id"],
        row["service_id"],
        row["currency"],
        row["amount_minor"],
    )
    original = await conn.fetchrow(
        "SELECT * FROM revenue WHERE revenue_id = $1", row["original_revenue_id"]
    )
    standing = None
    if original is not None:
        standing = admission.Outcome(
            original["kind"],
            original["status"],
            original["status_reason"],
            original["consumer_id"],
            original["service_id"],
            original["currency"],
        )
    outcome = admission.admit_adjustment(adjustment, standing)
    _stop_unless_admitted(outcome)
    claims = [
        Claim(a["contribution_id"], a["contributor_id"], a["weight"])
        for a in await conn.fetch(
            "SELECT contribution_id, contributor_id, weight FROM allocations "
            "WHERE revenue_id = $1 ORDER BY contribution_id",
            original["revenue_id"],
        )
    ]
    agreement_id = original["agreement_id"]
    await conn.execute(
        "UPDATE revenue SET period = $2, agreement_id = $3, deployment_ids = $4 "
        "WHERE revenue_id = $1",
        row["revenue_id"],
        original["period"],
        agreement_id,
        original["deployment_ids"],
    )
    row = await conn.fetchrow("SELECT * FROM revenue WHERE revenue_id = $1", row["revenue_id"])
    await _write_split(conn, row, agreement_id, original["share_bps"] or 0, claims)


async def _write_split(
    conn: asyncpg.Connection,
    row: asyncpg.Record,
    agreement_id: str,
    share_bps: int,
    claims: list[Claim],
) -> None:
    revenue_id, currency = row["revenue_id"], row["currency"]
    try:
        pool = pool_micros(row["amount_minor"], currency, share_bps)
    except AllocationError as error:
        raise _Rejected(str(error)) from None
    try:
        parts = split(pool, claims)
    except NothingToAllocate as error:
        await conn.execute(
            "UPDATE revenue SET status = 'unallocated', status_reason = $2, share_bps = $3, "
            "pool_micros = $4, total_weight = 0 WHERE revenue_id = $1",
            revenue_id,
            f"{error}; the pool stays with the consumer",
            share_bps,
            pool,
        )
        return
    except AllocationError as error:  # claims that cannot be split (e.g. one claimed twice)
        raise _Rejected(str(error)) from None
    total_weight = parts[0].total_weight
    if total_weight > INT64_MAX:
        raise _Rejected(f"the total weight ({total_weight}) does not fit a 64-bit integer")
    allocations = []
    envelopes = []
    now = datetime.now(UTC)
    for part in parts:
        allocation_id = ids.allocation_id(revenue_id, part.contribution_id)
        fact = ledger_pb2.AllocationMade(
            allocation_id=allocation_id,
            revenue_id=revenue_id,
            service_id=row["service_id"],
            agreement_id=agreement_id,
            contributor_id=part.contributor_id,
            contribution_id=part.contribution_id,
            period=row["period"],
            currency=currency,
            allocated_micros=part.micros,
            pool_micros=pool,
            weight=part.weight,
            total_weight=part.total_weight,
        )
        allocations.append(tuple(getattr(fact, column) for column in ALLOCATION_FIELDS))
        envelopes.append(
            make_envelope(
                fact,
                event_id=allocation_id,
                producer=PRODUCER,
                occurred_at=now,
                recorded_at=now,
                causation_id=row["event_id"],
            )
        )
    await conn.copy_records_to_table(
        "allocations", records=allocations, columns=list(ALLOCATION_FIELDS)
    )
    await _journal(conn, revenue_id, row["consumer_id"], currency, pool, parts)
    # The revenue row is locked and still parked: none of these ids can exist yet.
    await write_outbox_new(conn, envelopes)
    await conn.execute(
        "UPDATE revenue SET status = 'allocated', status_reason = '', share_bps = $2, "
        "pool_micros = $3, total_weight = $4 WHERE revenue_id = $1",
        revenue_id,
        share_bps,
        pool,
        total_weight,
    )


async def _journal(
    conn: asyncpg.Connection,
    movement_id: str,
    consumer_id: str,
    currency: str,
    pool: int,
    parts: list[Part],
) -> None:
    """One balanced movement: the consumer's revenue share against the contributors'
    parts. A positive pool debits the consumer and credits contributors; a negative one
    (a clawback) the reverse."""
    if pool == 0:
        return
    consumer_account = f"consumer:{consumer_id}:{currency}"
    accounts = {(consumer_account, "consumer", consumer_id)}
    lines = [(movement_id, 0, consumer_account, currency, max(pool, 0), max(-pool, 0))]
    for part in parts:
        if part.micros == 0:
            continue
        account = f"contributor:{part.contributor_id}:{currency}"
        accounts.add((account, "contributor", part.contributor_id))
        lines.append(
            (movement_id, len(lines), account, currency, max(-part.micros, 0), max(part.micros, 0))
        )
    await conn.executemany(
        "INSERT INTO accounts (account, kind, owner_id, currency) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (account) DO NOTHING",
        [(a, kind, owner, currency) for a, kind, owner in sorted(accounts)],
    )
    await conn.copy_records_to_table(
        "entries",
        records=lines,
        columns=["movement_id", "line", "account", "currency", "debit_micros", "credit_micros"],
    )


# -- the canonical digest ----------------------------------------------------------------


def _canonical(value):
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


async def projection_digest(conn: asyncpg.Connection) -> tuple[str, dict[str, int]]:
    """SHA-256 over every projection table's rows in key order (canonical JSON, one line
    per row), and the row count of each table."""
    digest = hashlib.sha256()
    counts = {}
    for table, order in PROJECTION_TABLES.items():
        rows = await conn.fetch(f"SELECT * FROM {table} ORDER BY {order}")
        counts[table] = len(rows)
        digest.update(f"table {table}\n".encode())
        for row in rows:
            line = json.dumps(
                {key: _canonical(value) for key, value in row.items()},
                sort_keys=True,
                separators=(",", ":"),
            )
            digest.update(line.encode() + b"\n")
    return digest.hexdigest(), counts
