"""`1tt rebuild ledger`: the ledger's projection, dropped and replayed from the log."""

from __future__ import annotations

from services.common.config import Settings
from services.common.rebuild import ProjectionSpec, RebuildResult, rebuild
from services.ledger import projection
from services.ledger.main import consumer_group


async def _release_all(conn) -> None:
    await projection.release(conn, await projection.parked_revenue(conn))


def spec(settings: Settings) -> ProjectionSpec:
    return ProjectionSpec(
        name="ledger",
        group=consumer_group(settings),
        event_types=projection.EVENT_TYPES,
        projector=projection.Projector,
        sql_dir=projection.SQL_DIR,
        marker_table="revenue",
        digest=projection.projection_digest,
        derived_event_types=("allocation.made",),
        after_replay=_release_all,
    )


async def rebuild_ledger(settings: Settings, schema: str = projection.SCHEMA) -> RebuildResult:
    return await rebuild(settings, spec(settings), schema)
