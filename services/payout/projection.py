"""The payout service's projection, payout runs and statements.

`Projector` (the Inbox handler) keeps principals, contributions, agreements, allocations
and payouts from the log. `run_payouts` is a payout run: in one transaction it settles
every contributor's unpaid allocations for a period and writes payout.issued facts to the
outbox, with ids derived from (contributor, period, currency), so a second run of the
same period pays nothing twice. `statement` reads one contributor's statement.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from google.protobuf import json_format

from services.common.facts import Envelope, make_envelope, payload_of
from services.common.identity import ROLE_NAMES
from services.common.ids import derived_id
from services.common.money import micros_per_minor
from services.common.outbox import write_outbox
from services.ledger.projection import ALLOCATION_COLUMNS
from services.ledger.rules import period_bounds
from services.payout import rules
from tt.facts.v1 import ledger_pb2

SCHEMA = "payout"
PRODUCER = "payout"
SQL_DIR = Path(__file__).parent / "sql"
EVENT_TYPES = (
    "principal.registered",
    "contribution.received",
    "contribution.processed",
    "contribution.withdrawn",
    "agreement.published",
    "allocation.made",
    "payout.issued",
)
PROJECTION_TABLES: dict[str, str] = {
    "principals": "principal_id",
    "contributions": "contribution_id",
    "agreements": "agreement_id",
    "allocations": "allocation_id",
    "payouts": "payout_id",
    "payout_allocations": "allocation_id",
}


def _ts(stamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


class Projector:
    async def __call__(self, conn: asyncpg.Connection, envelope: Envelope) -> list[Envelope]:
        fact = payload_of(envelope)
        kind = envelope.event_type
        if kind == "principal.registered":
            await conn.execute(
                "INSERT INTO principals VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                fact.principal_id,
                ROLE_NAMES[fact.role],
                fact.name,
                fact.api_key_sha256,
            )
        elif kind == "contribution.received":
            await conn.execute(
                "INSERT INTO contributions (contribution_id, contributor_id, dataset_name, "
                "file_name, byte_size, received_at) VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (contribution_id) DO UPDATE SET dataset_name = $3, "
                "file_name = $4, byte_size = $5, received_at = $6",
                fact.contribution_id,
                fact.contributor_id,
                fact.dataset_name,
                fact.file_name,
                fact.raw_blob.byte_size,
                _ts(envelope.occurred_at),
            )
        elif kind == "contribution.processed":
            summary = json_format.MessageToDict(
                fact, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
            await conn.execute(
                "INSERT INTO contributions (contribution_id, contributor_id, processed, "
                "report_uri) VALUES ($1, $2, $3::jsonb, $4) ON CONFLICT (contribution_id) "
                "DO UPDATE SET processed = $3::jsonb, report_uri = $4",
                fact.contribution_id,
                fact.contributor_id,
                json.dumps(summary, sort_keys=True),
                fact.report.uri,
            )
        elif kind == "contribution.withdrawn":
            await conn.execute(
                "INSERT INTO contributions (contribution_id, contributor_id, withdrawn_at) "
                "VALUES ($1, $2, $3) ON CONFLICT (contribution_id) DO UPDATE SET "
                "withdrawn_at = LEAST(coalesce(contributions.withdrawn_at, $3), $3)",
                fact.contribution_id,
                fact.contributor_id,
                _ts(fact.effective_at),
            )
        elif kind == "agreement.published":
            await conn.execute(
                "INSERT INTO agreements VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                fact.agreement_id,
                fact.service_id,
                fact.currency,
                fact.share_bps,
                fact.min_payout_minor,
            )
        elif kind == "allocation.made":
            columns = (*ALLOCATION_COLUMNS, "made_at")
            await conn.execute(
                f"INSERT INTO allocations ({', '.join(columns)}) VALUES "
                f"({', '.join(f'${i}' for i in range(1, len(columns) + 1))}) "
                "ON CONFLICT DO NOTHING",
                *(getattr(fact, column) for column in ALLOCATION_COLUMNS),
                _ts(envelope.occurred_at),
            )
        elif kind == "payout.issued":
            await _record_payout(conn, fact, _ts(envelope.occurred_at))
        return []


async def _record_payout(
    conn: asyncpg.Connection, fact: ledger_pb2.PayoutIssued, issued_at: datetime
) -> bool:
    """Store a payout (from a run here, or replayed from the log). False if known."""
    allocated = (
        fact.amount_minor * micros_per_minor(fact.currency)
        + fact.carried_forward_micros
        - fact.opening_carried_micros
    )
    inserted = await conn.fetchval(
        "INSERT INTO payouts VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
        "ON CONFLICT DO NOTHING RETURNING true",
        fact.payout_id,
        fact.payout_run_id,
        fact.contributor_id,
        fact.period,
        fact.currency,
        fact.amount_minor,
        fact.opening_carried_micros,
        fact.carried_forward_micros,
        allocated,
        issued_at,
    )
    if inserted:
        await conn.executemany(
            "INSERT INTO payout_allocations VALUES ($1, $2) ON CONFLICT DO NOTHING",
            [(allocation_id, fact.payout_id) for allocation_id in fact.allocation_ids],
        )
    return bool(inserted)


class PayoutRunError(ValueError):
    pass


async def minimum_payout(
    conn: asyncpg.Connection, contributor_id: str, currency: str, period: str
) -> int:
    """The minimum payout for a contributor's balance in a currency: the largest
    min_payout_minor of the agreements it was ever allocated under, up to the period (a
    carried balance stays under the terms it was earned under)."""
    row = await conn.fetchrow(
        "SELECT coalesce(max(g.min_payout_minor), 0) AS minimum, "
        "min(a.allocation_id) FILTER (WHERE g.agreement_id IS NULL) AS unknown "
        "FROM allocations a LEFT JOIN agreements g USING (agreement_id) "
        "WHERE a.contributor_id = $1 AND a.currency = $2 AND a.period <= $3",
        contributor_id,
        currency,
        period,
    )
    if row["unknown"] is not None:
        raise PayoutRunError(
            f"the agreement of allocation {row['unknown']} has not reached the payout "
            "service yet, so its minimum payout is unknown; run again in a moment"
        )
    return row["minimum"]


async def run_payouts(conn: asyncpg.Connection, period: str) -> dict[str, Any]:
    """Settle every contributor's unpaid allocations of periods up to `period`."""
    start, _ = period_bounds(period)
    if start > datetime.now(UTC):
        raise PayoutRunError(f"period {period} has not begun; nothing can be paid for it yet")
    run_id = derived_id("payout.run", period)
    now = datetime.now(UTC)
    issued, skipped = [], 0
    async with conn.transaction():
        # One run at a time: two concurrent runs would both see the same unpaid rows.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('payout-run'))")
        later = await conn.fetchval("SELECT max(period) FROM payouts WHERE period > $1", period)
        if later:
            raise PayoutRunError(
                f"payouts for {later} were already issued; runs go forward in time, so "
                f"{period}'s unpaid allocations are settled by the next run"
            )
        groups = await conn.fetch(
            "SELECT contributor_id, currency FROM allocations a WHERE period <= $1 AND NOT "
            "EXISTS (SELECT 1 FROM payout_allocations p WHERE p.allocation_id = "
            "a.allocation_id) UNION SELECT DISTINCT ON (contributor_id, currency) "
            "contributor_id, currency FROM payouts WHERE carried_forward_micros <> 0 "
            "ORDER BY 1, 2",
            period,
        )
        envelopes = []
        for group in groups:
            contributor_id, currency = group["contributor_id"], group["currency"]
            payout_id = derived_id("payout.issued", contributor_id, period, currency)
            if await conn.fetchval("SELECT 1 FROM payouts WHERE payout_id = $1", payout_id):
                skipped += 1
                continue
            last = await conn.fetchrow(
                "SELECT carried_forward_micros FROM payouts WHERE contributor_id = $1 "
                "AND currency = $2 ORDER BY period DESC LIMIT 1",
                contributor_id,
                currency,
            )
            opening = last["carried_forward_micros"] if last else 0
            unpaid = await conn.fetch(
                "SELECT a.allocation_id, a.allocated_micros FROM allocations a "
                "WHERE a.contributor_id = $1 AND a.currency = $2 AND a.period <= $3 AND NOT "
                "EXISTS (SELECT 1 FROM payout_allocations p WHERE p.allocation_id = "
                "a.allocation_id) ORDER BY a.allocation_id",
                contributor_id,
                currency,
                period,
            )
            if not unpaid and opening == 0:
                continue
            minimum = await minimum_payout(conn, contributor_id, currency, period)
            outcome = rules.settle(
                opening, [row["allocated_micros"] for row in unpaid], currency, minimum
            )
            fact = ledger_pb2.PayoutIssued(
                payout_id=payout_id,
                payout_run_id=run_id,
                contributor_id=contributor_id,
                period=period,
                currency=currency,
                amount_minor=outcome.amount_minor,
                opening_carried_micros=opening,
                carried_forward_micros=outcome.carried_forward_micros,
                allocation_ids=[row["allocation_id"] for row in unpaid],
            )
            await _record_payout(conn, fact, now)
            envelopes.append(
                make_envelope(
                    fact, event_id=payout_id, producer=PRODUCER, occurred_at=now, recorded_at=now
                )
            )
            issued.append(
                {
                    "payout_id": payout_id,
                    "contributor_id": contributor_id,
                    "currency": currency,
                    "amount_minor": outcome.amount_minor,
                    "opening_carried_micros": opening,
                    "allocated_micros": outcome.allocated_micros,
                    "carried_forward_micros": outcome.carried_forward_micros,
                    "allocations": len(unpaid),
                    "outcome": outcome.outcome,
                    "min_payout_minor": minimum,
                }
            )
        await write_outbox(conn, envelopes)
    return {
        "payout_run_id": run_id,
        "period": period,
        "issued": issued,
        "already_issued": skipped,
        "paid_minor_by_currency": _sum_by(issued, "amount_minor"),
        "carried_micros_by_currency": _sum_by(issued, "carried_forward_micros"),
    }


def _sum_by(rows: list[dict], key: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for row in rows:
        totals[row["currency"]] = totals.get(row["currency"], 0) + row[key]
    return totals


async def statement(conn: asyncpg.Connection, contributor_id: str, period: str) -> dict:
    """The contributor's statement for a period, one section per currency.

    A section is "issued" if a payout run settled it (its allocations are exactly those
    the payout names), else "provisional": what the next run would settle."""
    period_bounds(period)  # validates the period
    name = await conn.fetchval(
        "SELECT name FROM principals WHERE principal_id = $1", contributor_id
    )
    sections = []
    payouts = await conn.fetch(
        "SELECT * FROM payouts WHERE contributor_id = $1 AND period = $2 ORDER BY currency",
        contributor_id,
        period,
    )
    for payout in payouts:
        rows = await conn.fetch(
            "SELECT a.* FROM allocations a JOIN payout_allocations p USING (allocation_id) "
            "WHERE p.payout_id = $1 ORDER BY a.period, a.service_id, a.revenue_id, "
            "a.contribution_id",
            payout["payout_id"],
        )
        sections.append(
            _section(
                payout["currency"],
                "issued",
                payout["opening_carried_micros"],
                rows,
                payout["amount_minor"],
                payout["carried_forward_micros"],
                payout["payout_id"],
            )
        )
    done = {p["currency"] for p in payouts}
    pending = await conn.fetch(
        "SELECT a.* FROM allocations a WHERE a.contributor_id = $1 AND a.period <= $2 AND NOT "
        "EXISTS (SELECT 1 FROM payout_allocations p WHERE p.allocation_id = a.allocation_id) "
        "ORDER BY a.currency, a.period, a.service_id, a.revenue_id, a.contribution_id",
        contributor_id,
        period,
    )
    by_currency: dict[str, list] = {}
    for row in pending:
        by_currency.setdefault(row["currency"], []).append(row)
    carried: dict[str, int] = {}
    for row in await conn.fetch(
        "SELECT DISTINCT ON (currency) currency, carried_forward_micros FROM payouts "
        "WHERE contributor_id = $1 AND period < $2 ORDER BY currency, period DESC",
        contributor_id,
        period,
    ):
        carried[row["currency"]] = row["carried_forward_micros"]
    # A carried balance with nothing new is settled (or carried again) by the next run too.
    for currency in sorted((set(by_currency) | {c for c, v in carried.items() if v}) - done):
        rows = by_currency.get(currency, [])
        opening = carried.get(currency, 0)
        try:
            minimum = await minimum_payout(conn, contributor_id, currency, period)
        except PayoutRunError:
            minimum = 0  # shown as the best estimate until the agreement arrives
        outcome = rules.settle(opening, [r["allocated_micros"] for r in rows], currency, minimum)
        sections.append(
            _section(
                currency,
                "provisional",
                opening,
                rows,
                outcome.amount_minor,
                outcome.carried_forward_micros,
                None,
            )
        )
    return {
        "contributor_id": contributor_id,
        "contributor_name": name,
        "period": period,
        "statements": sections,
        "rules": (
            "payout = opening carried balance + allocations, floored to the currency's minor "
            "unit; the sub-minor remainder, any amount under the agreement's minimum payout, "
            "and any negative balance are carried forward"
        ),
    }


def _section(currency, status, opening, rows, amount_minor, carried, payout_id) -> dict:
    allocations = [
        {
            "allocation_id": r["allocation_id"],
            "period": r["period"],
            "service_id": r["service_id"],
            "revenue_id": r["revenue_id"],
            "contribution_id": r["contribution_id"],
            "weight": r["weight"],
            "total_weight": r["total_weight"],
            "pool_micros": r["pool_micros"],
            "allocated_micros": r["allocated_micros"],
        }
        for r in rows
    ]
    allocated = sum(a["allocated_micros"] for a in allocations)
    return {
        "currency": currency,
        "status": status,
        "payout_id": payout_id,
        "opening_carried_micros": opening,
        "allocations": allocations,
        "allocated_micros": allocated,
        "amount_minor": amount_minor,
        "closing_carried_micros": carried,
        "balanced": amount_minor * micros_per_minor(currency) + carried == opening + allocated,
    }


async def projection_digest(conn: asyncpg.Connection) -> tuple[str, dict[str, int]]:
    """SHA-256 over every projection table's rows in key order, and the row counts."""
    digest = hashlib.sha256()
    counts = {}
    for table, order in PROJECTION_TABLES.items():
        digest.update(f"table {table}\n".encode())
        rows = await conn.fetch(f"SELECT * FROM {table} ORDER BY {order}")
        counts[table] = len(rows)
        for row in rows:
            values = {
                k: (v.astimezone(UTC).isoformat() if isinstance(v, datetime) else v)
                for k, v in row.items()
            }
            digest.update(json.dumps(values, sort_keys=True, default=str).encode() + b"\n")
    return digest.hexdigest(), counts
