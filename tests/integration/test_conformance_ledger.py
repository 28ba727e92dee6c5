"""The ledger, replaying the conformance kit's log into a fresh schema, reaches the
outcomes and allocations the kit expects (tests/conformance/kit/expected.json): the
platform's own money path agrees with the kit an outside implementation is checked by."""

from __future__ import annotations

import json

import pytest

from services.common.bus import Delivery, PermanentFactError
from services.common.db import connect
from services.common.logreader import read_log_file
from services.common.migrations import load_migrations, migrate
from services.common.signing import load_anchors
from services.ledger.projection import SQL_DIR, Projector, parked_revenue, release
from tests.conformance.build_kit import KIT

pytestmark = pytest.mark.integration


async def test_the_ledger_replaying_the_kit_reaches_the_expected_results(settings, unique):
    expected = json.loads((KIT / "expected.json").read_text())
    records, _ = read_log_file(KIT / "log.jsonl", load_anchors(KIT / "anchors.json"))
    schema = f"ledger_kit_{unique}"
    conn = await connect(settings.database_url, schema, application_name="tests")
    try:
        await migrate(conn, schema, load_migrations("ledger", SQL_DIR))
        projector = Projector()
        seen, refused = set(), []
        # In the order the broker appended them; as the inbox does: each fact once, a
        # refused one dead-lettered (its transaction rolled back), the rest applied.
        for record in sorted(records, key=lambda r: (r.appended_at, r.topic, r.offset)):
            envelope = record.envelope
            handles = hasattr(projector, "_" + envelope.event_type.replace(".", "_"))
            if not handles or envelope.event_id in seen:
                continue
            seen.add(envelope.event_id)
            try:
                async with conn.transaction():
                    await projector(conn, Delivery(envelope, record.topic, 0, 0, record.signer,
                                                   record.appended_at))  # fmt: skip
            except PermanentFactError as error:
                refused.append(str(error))
        # Every input applied: the releaser's condition.
        await release(conn, await parked_revenue(conn))
        rows = await conn.fetch("SELECT revenue_id, status, status_reason FROM revenue")
        outcomes = {r["revenue_id"]: (r["status"], r["status_reason"]) for r in rows}
        want = {i: (o["status"], o["reason"]) for i, o in expected["outcomes"].items()}
        assert outcomes == want
        fields = list(expected["allocations"][0])
        rows = await conn.fetch(f"SELECT {', '.join(fields)} FROM allocations")
        assert {r["allocation_id"]: dict(r) for r in rows} == {
            a["allocation_id"]: a for a in expected["allocations"]
        }
        assert len(refused) == len(expected["skipped"]["refused"]), refused
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
