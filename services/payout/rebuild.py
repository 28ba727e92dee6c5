"""`1tt rebuild payout`: the payout service's projection, dropped and replayed from the
log. Payouts come back from their payout.issued facts (with the allocations they name),
never from a new run."""

from __future__ import annotations

from services.common.config import Settings
from services.common.rebuild import ProjectionSpec, RebuildResult, rebuild
from services.payout import projection
from services.payout.main import consumer_group


def spec(settings: Settings) -> ProjectionSpec:
    return ProjectionSpec(
        name="payout",
        group=consumer_group(settings),
        event_types=projection.EVENT_TYPES,
        projector=projection.Projector,
        sql_dir=projection.SQL_DIR,
        marker_table="payouts",
        digest=projection.projection_digest,
        derived_event_types=("payout.issued",),
    )


async def rebuild_payout(settings: Settings, schema: str = projection.SCHEMA) -> RebuildResult:
    return await rebuild(settings, spec(settings), schema)
