"""The ledger service as a real process over real Kafka and PostgreSQL: facts in,
balances and allocation.made out; killed between its database commit and its offset
commit (and its relay between publishing and marking published) it allocates nothing
twice; revenue published before what it names is parked, then released; `1tt rebuild
ledger` gives an identical projection."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys

import asyncpg
import pytest

from services.audit.audit import run_audit
from services.cli.admin import wait_group_stable
from services.common.db import connect
from services.common.facts import decode, encode
from services.ledger.rebuild import rebuild_ledger
from tests import ledger_facts as f
from tests.integration.conftest import read_topic
from tests.integration.ingest_server import ROOT
from tt.facts.v1 import ledger_pb2


@pytest.fixture
def ledger_env(settings, registry, unique, tmp_path):
    schema = f"ledger_{unique}"
    ledger_settings = dataclasses.replace(settings, topic_prefix=registry.prefix)
    env = {
        **os.environ,
        "TT_TOPIC_PREFIX": registry.prefix,
        "TT_LEDGER_SCHEMA": schema,
        **settings.party_env("ledger"),
        "TT_DATABASE_URL": settings.database_url,
        "TT_TOPIC_PARTITIONS": str(registry.partitions),
        "TT_LEDGER_SESSION_TIMEOUT_MS": "6000",
        "TT_METRICS_ADDRESS": "off",
    }
    return ledger_settings, schema, env, tmp_path / "ledger.log"


async def _drop(settings, schema):
    conn = await connect(settings.database_url, "public", application_name="tests")
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


def _start(env, log_path, failpoints: str = "") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "services.ledger.main"],
        cwd=ROOT,
        env={**env, "TT_FAILPOINTS": failpoints, "TT_LOG_LEVEL": "INFO"},
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        await asyncio.to_thread(process.wait, 30)


async def _query(settings, schema, sql, *args):
    conn = await connect(settings.database_url, schema, application_name="tests")
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def _wait_for(predicate, timeout_s: float = 60.0, what: str = "condition"):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            result = await predicate()
        except asyncpg.UndefinedTableError:  # the service has not migrated its schema yet
            result = None
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)


def _workload(unique: str):
    consumer = f"consumer-{unique}"
    contributions = [
        f.processed(f"c{i}-{unique}", f"p{i % 3}-{unique}", tokens)
        for i, tokens in enumerate([1000, 2000, 3001, 0, 777])
    ]
    snap = f.snapshot(f"s-{unique}", consumer, contributions)
    deploy = f.deployment(f"d-{unique}", consumer, f"chat-{unique}", [f"s-{unique}"])
    terms = f.agreement(f"a-{unique}", consumer, f"chat-{unique}", 1500)
    revenue = f.revenue(
        consumer,
        f"EXT-{unique}",
        f"chat-{unique}",
        "2026-11",
        1_000_003,
        f"a-{unique}",
        [f"d-{unique}"],
    )
    return contributions, snap, deploy, terms, revenue


async def _allocation_facts(settings, expected: int):
    topic = settings.topic_registry().fact_topic("allocation.made")
    records = await read_topic(settings.kafka, topic, expected, timeout_s=60)
    return [decode(r.value) for r in records]


async def test_facts_in_allocations_out_parked_until_named_facts_arrive(
    ledger_env, producer, unique
):
    settings, schema, env, log_path = ledger_env
    contributions, snap, deploy, terms, revenue = _workload(unique)
    process = _start(env, log_path)
    try:
        ready, detail = await wait_group_stable(
            settings.kafka, f"{settings.topic_prefix}ledger", 90
        )
        assert ready, f"{detail}\n{log_path.read_text()[-3000:]}"
        # Awkward order: revenue before the snapshot its deployment names and most of the
        # processed facts (its terms come first: terms published after a revenue event
        # never count for it).
        await producer.publish(terms)
        await producer.publish(deploy)
        await producer.publish(revenue)
        for fact in contributions[:2]:
            await producer.publish(fact)
        rows = await _wait_for(
            lambda: _query(
                settings,
                schema,
                "SELECT * FROM revenue WHERE status = 'parked' "
                "AND status_reason LIKE 'waiting for snapshot%'",
            ),
            what="the revenue to be parked",
        )
        assert f"snapshot s-{unique}" in rows[0]["status_reason"]
        for fact in [snap, *contributions[2:]]:
            await producer.publish(fact)
        allocated = await _wait_for(
            lambda: _query(settings, schema, "SELECT * FROM revenue WHERE status = 'allocated'"),
            what="the revenue to be allocated",
        )
        pool = allocated[0]["pool_micros"]
        assert pool == 1_000_003 * 10_000 * 1500 // 10_000
        facts = await _allocation_facts(settings, 4)
        parts = {
            e.allocation_made.contribution_id: e.allocation_made.allocated_micros for e in facts
        }
        assert sum(parts.values()) == pool
        assert f"c3-{unique}" not in parts  # zero accepted tokens: no part
        # By weight: 1000 : 2000 : 3001 : 777 of the pool, largest remainder.
        total = 1000 + 2000 + 3001 + 777
        for cid, tokens in [("c0", 1000), ("c1", 2000), ("c2", 3001), ("c4", 777)]:
            assert abs(parts[f"{cid}-{unique}"] * total - pool * tokens) < total
        [unbalanced] = await _query(settings, schema, "SELECT count(*) FROM unbalanced_movements")
        assert unbalanced["count"] == 0
        balances = await _query(settings, schema, "SELECT * FROM balances ORDER BY account")
        assert sum(b["balance_micros"] for b in balances) == 0
    finally:
        await _stop(process)
        await _drop(settings, schema)


async def test_crashes_allocate_nothing_twice_and_rebuild_is_identical(
    ledger_env, producer, unique
):
    settings, schema, env, log_path = ledger_env
    contributions, snap, deploy, terms, revenue = _workload(unique)
    for fact in [*contributions, snap, deploy, terms, revenue, revenue]:  # one duplicate
        await producer.publish(fact)
    try:
        # Killed after its database commit, before the offset commit (twice), then with
        # its relay killed after publishing, before marking the rows published.
        for failpoint in (
            "consumer.before_offset_commit",
            "consumer.before_offset_commit@2",
            "relay.after_publish",
        ):
            process = _start(env, log_path, failpoint)
            code = await asyncio.to_thread(process.wait, 90)
            assert code == -9, f"{failpoint}: exit {code}\n{log_path.read_text()[-3000:]}"
        process = _start(env, log_path)
        try:
            await _wait_for(
                lambda: _query(
                    settings, schema, "SELECT 1 FROM revenue WHERE status = 'allocated'"
                ),
                what="allocation after the crashes",
            )
            await _wait_for(
                lambda: _query(
                    settings,
                    schema,
                    "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM outbox WHERE published_at IS NULL)",
                ),
                what="the outbox to drain",
            )
        finally:
            await _stop(process)
        facts = await _allocation_facts(settings, 4)
        by_id = {}
        for envelope in facts:  # a relay crash may publish a fact twice: same id, same content
            previous = by_id.setdefault(envelope.event_id, envelope.allocation_made)
            assert previous == envelope.allocation_made
        assert len(by_id) == 4
        rows = await _query(settings, schema, "SELECT * FROM allocations")
        assert len(rows) == 4
        assert sum(r["allocated_micros"] for r in rows) == rows[0]["pool_micros"]
        [revenue_rows] = [await _query(settings, schema, "SELECT count(*) FROM revenue")]
        assert revenue_rows[0]["count"] == 1

        result = await rebuild_ledger(settings, schema)
        assert result.digest_before is not None
        assert result.identical, (result.counts_before, result.counts_after)
        assert result.counts_after["allocations"] == 4
        # The rebuild did not queue the allocations again for publishing.
        [pending] = await _query(
            settings, schema, "SELECT count(*) FROM outbox WHERE published_at IS NULL"
        )
        assert pending["count"] == 0
    finally:
        await _drop(settings, schema)


async def test_audit_matches_then_detects_a_tampered_row_a_missing_and_a_rogue_fact(
    ledger_env, producer, unique
):
    settings, schema, env, log_path = ledger_env
    contributions, snap, deploy, terms, revenue = _workload(unique)
    for fact in [*contributions, snap, deploy, terms, revenue]:
        await producer.publish(fact)
    process = _start(env, log_path)
    try:
        await _wait_for(
            lambda: _query(
                settings, schema,
                "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM outbox WHERE published_at IS NULL) "
                "AND EXISTS (SELECT 1 FROM revenue WHERE status = 'allocated')",
            ),
            what="allocation and publication",
        )  # fmt: skip
    finally:
        await _stop(process)
    report = await run_audit(settings, schema, f"no_payout_{unique}")
    assert report.matched, report.mismatches
    assert report.allocations == 4 and report.fact_counts["allocation.made"] == 4
    assert report.totals["USD"]["allocated_micros"] == report.totals["USD"]["pool_micros"]

    # A projection row changed behind the ledger's back.
    [row] = await _query(
        settings, schema,
        "UPDATE allocations SET allocated_micros = allocated_micros + 1 "
        "WHERE allocation_id = (SELECT min(allocation_id) FROM allocations) RETURNING *",
    )  # fmt: skip
    report = await run_audit(settings, schema, f"no_payout_{unique}")
    assert not report.matched
    [line] = report.mismatches
    assert row["allocation_id"] in line and "allocated_micros" in line

    # An outcome changed behind the ledger's back: the audit compares outcomes, not only money.
    [status] = await _query(
        settings, schema,
        "UPDATE revenue SET status = 'rejected', status_reason = 'made up' "
        "WHERE revenue_id = $1 RETURNING revenue_id",
        revenue.revenue_recorded.revenue_id,
    )  # fmt: skip
    report = await run_audit(settings, schema, f"no_payout_{unique}")
    assert (
        f"ledger projection: revenue {status['revenue_id']} is rejected (made up), but the "
        "rules give allocated"
    ) in report.mismatches, report.mismatches
    await _query(
        settings, schema,
        "UPDATE revenue SET status = 'allocated', status_reason = '' WHERE revenue_id = $1",
        revenue.revenue_recorded.revenue_id,
    )  # fmt: skip

    # A revenue event the ledger never allocated (it is stopped): its facts are missing.
    second = f.revenue(
        f"consumer-{unique}", f"EXT2-{unique}", f"chat-{unique}", "2026-11", 5000,
        f"a-{unique}", [f"d-{unique}"],
    )  # fmt: skip
    await producer.publish(second)
    report = await run_audit(settings, schema, "", check_projections=False)
    assert len(report.mismatches) == 4
    assert all(line.startswith("missing fact: allocation.made") for line in report.mismatches)

    # A rogue allocation nobody is owed.
    rogue = f.envelope(
        ledger_pb2.AllocationMade(
            allocation_id=f"rogue-{unique}", revenue_id="nothing", service_id="chat",
            agreement_id="a", contributor_id="p", contribution_id="c", period="2026-11",
            currency="USD", allocated_micros=5, pool_micros=5, weight=1, total_weight=1,
        ),
        f"rogue-{unique}",
    )  # fmt: skip
    await producer.publish(rogue)
    report = await run_audit(settings, schema, "", check_projections=False)
    assert any(
        line.startswith(f"unexpected fact: allocation.made rogue-{unique}")
        for line in report.mismatches
    )
    # Its id is not derived from its revenue and contribution as docs/money.md says.
    assert any(
        line.startswith(f"allocation.made rogue-{unique}: allocation id rogue-{unique} is not")
        for line in report.mismatches
    ), report.mismatches

    # A fact on another type's topic is skipped and reported, never counted.
    before = report.fact_counts["revenue.recorded"]
    misplaced = f.revenue(
        f"consumer-{unique}", f"EXT3-{unique}", f"chat-{unique}", "2026-11", 7000,
        f"a-{unique}", [f"d-{unique}"],
    )  # fmt: skip
    await producer.publish_raw(
        producer.registry.fact_topic("snapshot.created"), misplaced.key.encode(),
        encode(misplaced), [],
    )  # fmt: skip
    report = await run_audit(settings, schema, "", check_projections=False)
    assert report.fact_counts["revenue.recorded"] == before
    assert report.misplaced_records == 1
    assert "belongs on" in report.misplaced[0] and misplaced.event_id in report.misplaced[0]
    await _drop(settings, schema)
