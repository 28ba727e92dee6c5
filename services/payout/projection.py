"""The payout service's projection, payout runs and statements.

`Projector` (the Inbox handler) keeps principals, contributions, agreements, allocations
and payouts from the log. `run_payouts` is a payout run: in one transaction it settles
every contributor's unpaid allocations for a period and writes payout.issued facts to the
outbox, with ids derived from (contributor, period, currency), so a second run of the
same period pays nothing twice. `statement` reads one contributor's statement.

No fact can block or inflate a run. Facts the projection can never use are refused (and
dead-lettered): an unknown role or currency, a second payout for a contributor, period
and currency, an allocation paid twice. What the projection cannot judge alone, because
the facts it depends on arrive on other topics in any order, the run judges when it
runs: an allocation whose agreement it does not know (or that does not match it) is held
back, named in the run's result, and paid by a later run once the agreement is there;
payouts of periods that have not begun are ignored; and each contributor's opening
balance is derived from the allocations its earlier payouts settled less what they paid,
never taken from a fact's carried_forward_micros.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from google.protobuf import json_format

from services.common.bus import Delivery, PermanentFactError
from services.common.facts import Envelope, make_envelope, payload_of
from services.common.money import INT64_MAX, UnknownCurrencyError, micros_per_minor
from services.common.outbox import write_outbox
from services.common.periods import period_bounds, period_of
from services.common.principals import (
    projected_role,
    refuse_a_key_of_another,
    refuse_revoking_a_key_of_another,
)
from services.rules import ids, settlement
from services.rules.allocation import ALLOCATION_FIELDS
from tt.facts.v1 import ledger_pb2

log = logging.getLogger(__name__)
SCHEMA = "payout"
PRODUCER = "payout"
SQL_DIR = Path(__file__).parent / "sql"
EVENT_TYPES = (
    "principal.registered",
    "principal.revoked",
    "contribution.received",
    "contribution.processed",
    "contribution.withdrawn",
    "agreement.published",
    "allocation.made",
    "payout.issued",
)
PROJECTION_TABLES: dict[str, str] = {
    "principals": "principal_id",
    "revoked_keys": "api_key_sha256",
    "contributions": "contribution_id",
    "agreements": "agreement_id",
    "allocations": "allocation_id",
    "payouts": "payout_id",
    "payout_allocations": "allocation_id",
}


def _ts(stamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def _micros_per_minor(currency: str) -> int:
    """For a fact's currency: a refusal (dead-lettered) if the platform does not settle in
    it, since no payout could ever be computed in it."""
    try:
        return micros_per_minor(currency)
    except UnknownCurrencyError as error:
        raise PermanentFactError(str(error)) from None


class Projector:
    async def __call__(self, conn: asyncpg.Connection, delivery: Delivery) -> list[Envelope]:
        envelope = delivery.envelope
        fact = payload_of(envelope)
        kind = envelope.event_type
        if kind == "principal.registered":
            await _record_principal(conn, fact)
        elif kind == "principal.revoked":
            await _record_revocation(conn, fact, _ts(envelope.occurred_at))
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
                "INSERT INTO agreements (agreement_id, service_id, currency, share_bps, "
                "min_payout_minor, consumer_id) VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT DO NOTHING",
                fact.agreement_id,
                fact.service_id,
                fact.currency,
                fact.share_bps,
                fact.min_payout_minor,
                fact.consumer_id,
            )
        elif kind == "allocation.made":
            _micros_per_minor(fact.currency)
            columns = (*ALLOCATION_FIELDS, "made_at")
            await conn.execute(
                f"INSERT INTO allocations ({', '.join(columns)}) VALUES "
                f"({', '.join(f'${i}' for i in range(1, len(columns) + 1))}) "
                "ON CONFLICT DO NOTHING",
                *(getattr(fact, column) for column in ALLOCATION_FIELDS),
                _ts(envelope.occurred_at),
            )
        elif kind == "payout.issued":
            await _record_payout(conn, fact, _ts(envelope.occurred_at))
        return []


async def _record_principal(conn: asyncpg.Connection, fact) -> None:
    """A principal, revoked from the start if its key or id was revoked already (the
    revocation may be read first)."""
    role = projected_role(fact.role)
    await refuse_a_key_of_another(conn, fact)
    await conn.execute(
        "INSERT INTO principals (principal_id, role, name, api_key_sha256, revoked_at) "
        "VALUES ($1, $2, $3, $4, (SELECT min(revoked_at) FROM revoked_keys "
        "WHERE api_key_sha256 = $4 OR principal_id = $1)) ON CONFLICT DO NOTHING",
        fact.principal_id,
        role,
        fact.name,
        fact.api_key_sha256,
    )


async def _record_revocation(conn: asyncpg.Connection, fact, revoked_at: datetime) -> None:
    """The key and its principal no longer authenticate, and the principal's dashboard
    sessions end. Revocation is final: the earliest one counts."""
    await refuse_revoking_a_key_of_another(conn, fact)
    await conn.execute(
        "INSERT INTO revoked_keys (api_key_sha256, principal_id, revoked_at) "
        "VALUES ($1, $2, $3) ON CONFLICT (api_key_sha256) DO UPDATE "
        "SET revoked_at = LEAST(revoked_keys.revoked_at, EXCLUDED.revoked_at)",
        fact.api_key_sha256,
        fact.principal_id,
        revoked_at,
    )
    await conn.execute(
        "UPDATE principals SET revoked_at = LEAST(coalesce(revoked_at, $3), $3) "
        "WHERE principal_id = $1 OR api_key_sha256 = $2",
        fact.principal_id,
        fact.api_key_sha256,
        revoked_at,
    )
    await conn.execute("DELETE FROM dashboard_sessions WHERE principal_id = $1", fact.principal_id)


async def _record_payout(
    conn: asyncpg.Connection, fact: ledger_pb2.PayoutIssued, issued_at: datetime
) -> bool:
    """Store a payout (from a run here, or replayed from the log). False if known. A
    payout that would pay a contributor twice for a period and currency, or settle an
    allocation a payout already settled, is refused."""
    allocated = (
        fact.amount_minor * _micros_per_minor(fact.currency)
        + fact.carried_forward_micros
        - fact.opening_carried_micros
    )
    if await conn.fetchval("SELECT 1 FROM payouts WHERE payout_id = $1", fact.payout_id):
        return False
    other = await conn.fetchval(
        "SELECT payout_id FROM payouts WHERE contributor_id = $1 AND period = $2 AND currency = $3",
        fact.contributor_id,
        fact.period,
        fact.currency,
    )
    if other is not None:
        raise PermanentFactError(
            f"contributor {fact.contributor_id} was already paid for {fact.period} in "
            f"{fact.currency} by payout {other}; a run pays each contributor once per period "
            "and currency"
        )
    settled = await conn.fetchrow(
        "SELECT allocation_id, payout_id FROM payout_allocations "
        "WHERE allocation_id = ANY($1::text[]) ORDER BY allocation_id LIMIT 1",
        list(fact.allocation_ids),
    )
    if settled is not None:
        raise PermanentFactError(
            f"allocation {settled['allocation_id']} was already settled by payout "
            f"{settled['payout_id']}; an allocation is paid once"
        )
    if abs(allocated) > INT64_MAX:
        raise PermanentFactError(
            f"the payout's balance ({allocated} micros allocated) does not fit a 64-bit amount"
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


# Unpaid allocations of a contributor and currency up to a period, with what the run needs
# to know about the agreement each names (NULL columns: the agreement is not known here).
_UNPAID = (
    "SELECT a.*, g.agreement_id AS known_agreement, g.currency AS agreement_currency, "
    "g.service_id AS agreement_service FROM allocations a "
    "LEFT JOIN agreements g ON g.agreement_id = a.agreement_id "
    "WHERE a.contributor_id = $1 AND a.currency = $2 AND a.period <= $3 AND NOT EXISTS "
    "(SELECT 1 FROM payout_allocations p WHERE p.allocation_id = a.allocation_id) "
    "ORDER BY a.period, a.service_id, a.revenue_id, a.contribution_id"
)


def _held_reason(row: asyncpg.Record) -> str | None:
    """Why a run must not settle this allocation yet, or None. An allocation is paid under
    its agreement's terms (the minimum payout), so one whose agreement is unknown here, or
    does not match it, waits; the ledger allocates only under agreements it has, so in a
    sound log this lasts until the agreement.published fact arrives."""
    if row["known_agreement"] is None:
        return (
            f"its agreement {row['agreement_id']} has not reached the payout service; it is "
            "paid by a later run once the agreement is known"
        )
    if row["agreement_currency"] != row["currency"]:
        return (
            f"it is in {row['currency']} but its agreement {row['agreement_id']} settles in "
            f"{row['agreement_currency']}"
        )
    if row["agreement_service"] != row["service_id"]:
        return (
            f"it is for service {row['service_id']!r} but its agreement "
            f"{row['agreement_id']} is for {row['agreement_service']!r}"
        )
    return None


async def unpaid_allocations(
    conn: asyncpg.Connection, contributor_id: str, currency: str, period: str
) -> tuple[list[asyncpg.Record], list[dict]]:
    """The contributor's unpaid allocations in a currency up to the period: those a run
    settles, and those it holds back (with the reason)."""
    settle, held = [], []
    for row in await conn.fetch(_UNPAID, contributor_id, currency, period):
        reason = _held_reason(row)
        if reason is None:
            settle.append(row)
        else:
            held.append(
                {
                    "allocation_id": row["allocation_id"],
                    "contributor_id": contributor_id,
                    "currency": currency,
                    "period": row["period"],
                    "allocated_micros": row["allocated_micros"],
                    "reason": reason,
                }
            )
    return settle, held


async def minimum_payout(
    conn: asyncpg.Connection,
    contributor_id: str,
    currency: str,
    period: str,
    settling: Sequence[asyncpg.Record],
) -> int:
    """The minimum payout (services.rules.settlement.minimum_payout) for the payout of
    `period` that settles `settling`: over the agreements of those allocations and of the
    allocations the contributor's earlier payouts in the currency settled."""
    earlier = await conn.fetch(
        "SELECT DISTINCT a.agreement_id FROM payouts p "
        "JOIN payout_allocations pa ON pa.payout_id = p.payout_id "
        "JOIN allocations a ON a.allocation_id = pa.allocation_id "
        "WHERE p.contributor_id = $1 AND p.currency = $2 AND p.period < $3",
        contributor_id,
        currency,
        period,
    )
    agreement_ids = {row["agreement_id"] for row in earlier} | {
        row["agreement_id"] for row in settling
    }
    minimums = await conn.fetch(
        "SELECT min_payout_minor FROM agreements WHERE agreement_id = ANY($1::text[])",
        sorted(agreement_ids),
    )
    return settlement.minimum_payout(row["min_payout_minor"] for row in minimums)


async def opening_balance(
    conn: asyncpg.Connection, contributor_id: str, currency: str, period: str, current: str
) -> int:
    """What the contributor's earlier payouts (periods before `period`, and none of a
    period after `current`, which no run can have issued) carried forward, in micros:
    the allocations they settled less what they paid. Derived from the allocations rather
    than read from the last fact's carried_forward_micros, so that a payout fact cannot
    carry in more than was allocated."""
    row = await conn.fetchrow(
        "WITH earlier AS (SELECT payout_id, amount_minor FROM payouts WHERE contributor_id = $1 "
        "AND currency = $2 AND period < $3 AND period <= $4) "
        "SELECT (SELECT coalesce(sum(a.allocated_micros), 0) FROM earlier e "
        "JOIN payout_allocations p ON p.payout_id = e.payout_id "
        "JOIN allocations a ON a.allocation_id = p.allocation_id "
        "WHERE a.contributor_id = $1 AND a.currency = $2) AS settled, "
        "(SELECT coalesce(sum(amount_minor), 0) FROM earlier) AS paid_minor",
        contributor_id,
        currency,
        period,
        current,
    )
    return int(row["settled"]) - int(row["paid_minor"]) * micros_per_minor(currency)


def _fits_int64(*values: int) -> bool:
    return all(abs(value) <= INT64_MAX for value in values)


async def run_payouts(conn: asyncpg.Connection, period: str) -> dict[str, Any]:
    """Settle every contributor's unpaid allocations of periods up to `period`."""
    start, _ = period_bounds(period)
    now = datetime.now(UTC)
    if start > now:
        raise PayoutRunError(f"period {period} has not begun; nothing can be paid for it yet")
    current = period_of(now)
    run_id = ids.payout_run_id(period)
    issued, held, skipped = [], [], 0
    async with conn.transaction():
        # One run at a time: two concurrent runs would both see the same unpaid rows.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('payout-run'))")
        # A payout of a period that has not begun cannot come from a run (see above), so
        # it is ignored here rather than allowed to stop every run until then.
        later = await conn.fetchval(
            "SELECT max(period) FROM payouts WHERE period > $1 AND period <= $2", period, current
        )
        if later:
            raise PayoutRunError(
                f"payouts for {later} were already issued; runs go forward in time, so "
                f"{period}'s unpaid allocations are settled by the next run"
            )
        groups = await conn.fetch(
            "SELECT contributor_id, currency FROM allocations a WHERE period <= $1 AND NOT "
            "EXISTS (SELECT 1 FROM payout_allocations p WHERE p.allocation_id = "
            "a.allocation_id) UNION SELECT contributor_id, currency FROM payouts "
            "WHERE period <= $1 ORDER BY 1, 2",
            period,
        )
        envelopes = []
        for group in groups:
            contributor_id, currency = group["contributor_id"], group["currency"]
            payout_id = ids.payout_id(contributor_id, period, currency)
            if await conn.fetchval(
                "SELECT 1 FROM payouts WHERE contributor_id = $1 AND period = $2 AND currency = $3",
                contributor_id,
                period,
                currency,
            ):
                skipped += 1
                continue
            opening = await opening_balance(conn, contributor_id, currency, period, current)
            unpaid, waiting = await unpaid_allocations(conn, contributor_id, currency, period)
            held += waiting
            if not unpaid and opening == 0:
                continue
            minimum = await minimum_payout(conn, contributor_id, currency, period, unpaid)
            outcome = settlement.settle(
                opening, [row["allocated_micros"] for row in unpaid], currency, minimum
            )
            if not _fits_int64(
                opening, outcome.allocated_micros, outcome.amount_minor,
                outcome.carried_forward_micros,
            ):  # fmt: skip
                held += [
                    {
                        "allocation_id": row["allocation_id"],
                        "contributor_id": contributor_id,
                        "currency": currency,
                        "period": row["period"],
                        "allocated_micros": row["allocated_micros"],
                        "reason": "the contributor's balance does not fit a 64-bit amount",
                    }
                    for row in unpaid
                ]
                continue
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
    if held:
        log.warning(
            "payout run %s held back %d allocation(s); first: %s (%s)",
            period,
            len(held),
            held[0]["allocation_id"],
            held[0]["reason"],
        )
    return {
        "payout_run_id": run_id,
        "period": period,
        "issued": issued,
        "already_issued": skipped,
        "held": held,
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
    currencies = await conn.fetch(
        "SELECT currency FROM allocations a WHERE a.contributor_id = $1 AND a.period <= $2 "
        "AND NOT EXISTS (SELECT 1 FROM payout_allocations p WHERE p.allocation_id = "
        "a.allocation_id) UNION SELECT currency FROM payouts WHERE contributor_id = $1 "
        "AND period < $2 ORDER BY 1",
        contributor_id,
        period,
    )
    current = period_of(datetime.now(UTC))
    # What the next run would settle: the same figures run_payouts computes. A carried
    # balance with nothing new is settled (or carried again) by the next run too.
    for currency in [row["currency"] for row in currencies if row["currency"] not in done]:
        opening = await opening_balance(conn, contributor_id, currency, period, current)
        rows, held = await unpaid_allocations(conn, contributor_id, currency, period)
        if not rows and not held and opening == 0:
            continue
        minimum = await minimum_payout(conn, contributor_id, currency, period, rows)
        outcome = settlement.settle(
            opening, [r["allocated_micros"] for r in rows], currency, minimum
        )
        section = _section(
            currency,
            "provisional",
            opening,
            rows,
            outcome.amount_minor,
            outcome.carried_forward_micros,
            None,
        )
        if held:  # allocations the next run holds back, and why
            section["held"] = held
        sections.append(section)
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
