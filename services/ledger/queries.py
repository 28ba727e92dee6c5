"""Reading the ledger's projection for a principal: each role sees what DESIGN.md allows.

- contributor: its own allocations (with the basis: weight, total weight, pool);
- consumer: per revenue event, the pool, what was allocated and to how many
  contributions, never who;
- operator and auditor: everything.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from services.common.identity import Principal


def _revenue_filter(revenue: str | None, column: str = "r") -> tuple[str, list]:
    if not revenue:
        return "", []
    # The consumer's external id or the platform's revenue/adjustment id.
    return (
        f" AND ({column}.revenue_id = $X OR {column}.external_id = $X "
        f"OR {column}.original_revenue_id IN (SELECT revenue_id FROM revenue "
        "WHERE external_id = $X))",
        [revenue],
    )


async def allocations_view(
    conn: asyncpg.Connection, principal: Principal, revenue: str | None = None
) -> dict[str, Any]:
    where, args = _revenue_filter(revenue)
    if principal.role == "contributor":
        args = [principal.principal_id, *args]
        where = where.replace("$X", "$2")
        rows = await conn.fetch(
            "SELECT a.*, r.kind, r.external_id, r.original_revenue_id FROM allocations a "
            "JOIN revenue r USING (revenue_id) WHERE a.contributor_id = $1"
            + where
            + " ORDER BY a.period, a.revenue_id, a.contribution_id",
            *args,
        )
        return {
            "role": "contributor",
            "allocations": [_allocation(row) for row in rows],
            "total_micros_by_currency": _totals(rows),
        }
    where = where.replace("$X", "$1")
    revenue_rows = await conn.fetch(
        "SELECT r.*, (SELECT count(*) FROM allocations a WHERE a.revenue_id = r.revenue_id) "
        "AS contributions, (SELECT coalesce(sum(allocated_micros), 0) FROM allocations a "
        "WHERE a.revenue_id = r.revenue_id) AS allocated_micros FROM revenue r WHERE true"
        + where
        + " ORDER BY r.period, r.kind, r.revenue_id",
        *args,
    )
    view: dict[str, Any] = {
        "role": principal.role,
        "revenue": [_revenue(row) for row in revenue_rows],
    }
    if principal.role in ("operator", "auditor"):
        rows = await conn.fetch(
            "SELECT a.*, r.kind, r.external_id, r.original_revenue_id FROM allocations a "
            "JOIN revenue r USING (revenue_id) WHERE true"
            + where
            + " ORDER BY a.period, a.revenue_id, a.contribution_id",
            *args,
        )
        view["allocations"] = [_allocation(row) for row in rows]
        view["total_micros_by_currency"] = _totals(rows)
    return view


def _allocation(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "allocation_id": row["allocation_id"],
        "revenue_id": row["revenue_id"],
        "external_id": row["external_id"],
        "kind": row["kind"],
        "corrects": row["original_revenue_id"],
        "service_id": row["service_id"],
        "period": row["period"],
        "contribution_id": row["contribution_id"],
        "contributor_id": row["contributor_id"],
        "currency": row["currency"],
        "allocated_micros": row["allocated_micros"],
        "weight": row["weight"],
        "total_weight": row["total_weight"],
        "pool_micros": row["pool_micros"],
    }


def _revenue(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "revenue_id": row["revenue_id"],
        "kind": row["kind"],
        "external_id": row["external_id"],
        "corrects": row["original_revenue_id"],
        "service_id": row["service_id"],
        "period": row["period"],
        "amount_minor": row["amount_minor"],
        "currency": row["currency"],
        "status": row["status"],
        "status_reason": row["status_reason"],
        "share_bps": row["share_bps"],
        "pool_micros": row["pool_micros"],
        "allocated_micros": int(row["allocated_micros"]),
        "contributions": row["contributions"],
    }


def _totals(rows) -> dict[str, int]:
    totals: dict[str, int] = {}
    for row in rows:
        totals[row["currency"]] = totals.get(row["currency"], 0) + row["allocated_micros"]
    return totals
