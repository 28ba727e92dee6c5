"""Crashes at the worst moments do not lose or double an effect. The crashing processes
are real and die by SIGKILL at exact points (failpoints), as `kill -9` would kill them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.bus import Delivery
from services.common.db import connect
from services.common.examples import example_envelopes
from services.common.facts import decode
from services.common.inbox import Inbox
from services.common.migrations import MigrationError, load_migrations, migrate
from services.common.outbox import OutboxConflictError, write_outbox
from tests.integration.conftest import read_topic
from tests.integration.worker import EFFECTS_TABLE, count_effect

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def run_worker(
    *args: str, failpoints: str = "", timeout_s: float = 90
) -> subprocess.CompletedProcess:
    env = {**os.environ, "TT_FAILPOINTS": failpoints}
    return subprocess.run(
        [sys.executable, "-m", "tests.integration.worker", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def stats(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


async def effects(pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT event_id, applications FROM effects")
    return {row["event_id"]: row["applications"] for row in rows}


async def test_a_consumer_killed_after_its_db_commit_reprocesses_without_a_second_effect(
    registry, producer, pool, schema, unique
):
    sent = example_envelopes(unique, without=("key.registered",))
    for envelope in sent:
        await producer.publish(envelope)
    args = [
        "consume",
        "--prefix",
        registry.prefix,
        "--schema",
        schema,
        "--group",
        f"crash-{unique}",
        "--expect",
        str(len(sent)),
    ]

    crashed = run_worker(*args, failpoints="consumer.before_offset_commit")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    assert "failpoint consumer.before_offset_commit reached" in crashed.stderr
    applied_before_crash = await effects(pool)
    assert applied_before_crash, "the crashed consumer committed nothing to Postgres"

    restarted = stats(run_worker(*args))
    # Everything the first process applied came back (its offsets were never committed)
    # and was recognised by the inbox; the rest was applied once.
    assert restarted["duplicates"] >= len(applied_before_crash)
    assert restarted["applied"] == len(sent) - len(applied_before_crash)
    assert await effects(pool) == {envelope.event_id: 1 for envelope in sent}


async def _fill_outbox(pool, envelopes) -> None:
    async with pool.acquire() as conn, conn.transaction():
        assert await write_outbox(conn, envelopes) == len(envelopes)


async def _apply_all(consumer_for, pool, group: str, expected: int) -> Inbox:
    await pool.execute(EFFECTS_TABLE)
    inbox = Inbox(pool, group, count_effect)
    consumer = consumer_for(group, inbox)
    async with consumer:
        deadline = asyncio.get_running_loop().time() + 30
        while inbox.applied_count + inbox.duplicate_count < expected:
            assert asyncio.get_running_loop().time() < deadline, "facts did not arrive"
            await consumer.poll_once(timeout_ms=300)
    return inbox


async def _crash_relay(registry, pool, schema, unique, failpoint: str):
    """Fill the outbox, run a relay that dies at `failpoint`, and check nothing was marked
    published. Returns the facts and the relay's arguments for the restart."""
    derived = example_envelopes(unique, without=("key.registered",))
    await _fill_outbox(pool, derived)
    args = ["relay", "--prefix", registry.prefix, "--schema", schema]
    crashed = run_worker(*args, failpoints=failpoint)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    unpublished = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    assert unpublished == len(derived)
    return derived, args


async def test_a_relay_killed_before_publishing_publishes_after_restart(
    settings, registry, producer, pool, schema, unique, consumer_for
):
    derived, args = await _crash_relay(registry, pool, schema, unique, "relay.before_publish")
    nothing = await read_topic(
        settings.kafka, registry.fact_topic("revenue.recorded"), 0, timeout_s=1
    )
    assert nothing == []

    assert stats(run_worker(*args))["published"] == len(derived)
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
    inbox = await _apply_all(consumer_for, pool, f"after-{unique}", len(derived))
    assert await effects(pool) == {envelope.event_id: 1 for envelope in derived}
    assert inbox.duplicate_count == 0


async def test_a_relay_killed_after_publishing_publishes_again_and_consumers_apply_once(
    settings, registry, producer, pool, schema, unique, consumer_for
):
    derived, args = await _crash_relay(registry, pool, schema, unique, "relay.after_publish")
    assert stats(run_worker(*args))["published"] == len(derived)

    # Every fact is now on the log twice, with the same event id.
    # (Each carries its own signature: a resend may sit in another signed batch.)
    copies = await read_topic(settings.kafka, registry.fact_topic("revenue.recorded"), 2)
    unsigned = [decode(copy.value) for copy in copies]
    for envelope in unsigned:
        envelope.ClearField("signature")
    assert len(copies) == 2 and unsigned[0] == unsigned[1]

    inbox = await _apply_all(consumer_for, pool, f"after-{unique}", 2 * len(derived))
    assert inbox.applied_count == len(derived)
    assert inbox.duplicate_count == len(derived)
    assert await effects(pool) == {envelope.event_id: 1 for envelope in derived}


async def test_the_outbox_refuses_a_different_fact_under_an_existing_event_id(pool, unique):
    original = example_envelopes(unique, without=("key.registered",))[0]
    await _fill_outbox(pool, [original])
    async with pool.acquire() as conn, conn.transaction():
        assert await write_outbox(conn, [original]) == 0  # the same fact again: no-op
    impostor = example_envelopes(unique, without=("key.registered",))[0]
    impostor.contribution_received.dataset_name = "something else"
    with pytest.raises(OutboxConflictError, match="already names a different"):
        async with pool.acquire() as conn, conn.transaction():
            await write_outbox(conn, [impostor])
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 1


async def test_the_inbox_dead_letters_a_different_fact_reusing_an_applied_event_id(
    registry, producer, pool, unique, consumer_for
):
    await pool.execute(EFFECTS_TABLE)
    original = example_envelopes(unique, without=("key.registered",))[0]
    impostor = example_envelopes(unique, without=("key.registered",))[0]
    impostor.contribution_received.dataset_name = "changed after the fact"
    await producer.publish(original)
    await producer.publish(impostor)
    inbox = Inbox(pool, f"reuse-{unique}", count_effect)
    consumer = consumer_for(f"reuse-{unique}", inbox)
    async with consumer:
        deadline = asyncio.get_running_loop().time() + 30
        while consumer.dead_letter_count == 0 and asyncio.get_running_loop().time() < deadline:
            await consumer.poll_once(timeout_ms=300)
    assert consumer.dead_letter_count == 1
    assert "already applied as a contribution.received fact with different content" in (
        consumer.last_dead_letter_reason
    )
    assert await effects(pool) == {original.event_id: 1}


async def test_a_handler_failure_rolls_back_the_inbox_record_so_the_fact_is_retried(
    registry, pool, unique
):
    await pool.execute(EFFECTS_TABLE)
    attempts = 0

    async def flaky(conn, delivery):
        nonlocal attempts
        attempts += 1
        await count_effect(conn, delivery)
        if attempts == 1:
            raise ConnectionError("database went away mid-transaction")
        return []

    inbox = Inbox(pool, f"flaky-{unique}", flaky)
    delivery = Delivery(example_envelopes(unique, without=("key.registered",))[0], "t", 0, 0)
    with pytest.raises(ConnectionError):
        await inbox.apply(delivery)
    assert await effects(pool) == {}  # rolled back together with the inbox row
    assert await inbox.apply(delivery) is True
    assert await inbox.apply(delivery) is False
    assert await effects(pool) == {delivery.envelope.event_id: 1}


async def test_migrations_apply_once_and_catch_an_edited_file(settings, schema, tmp_path):
    (tmp_path / "0001_widgets.sql").write_text("CREATE TABLE widgets (id int PRIMARY KEY);")
    conn = await connect(settings.database_url, schema, application_name="tests")
    try:
        applied = await migrate(conn, schema, load_migrations("widgets", tmp_path))
        assert applied == [f"{schema}: widgets/0001_widgets.sql"]
        assert await migrate(conn, schema, load_migrations("widgets", tmp_path)) == []
        (tmp_path / "0001_widgets.sql").write_text("CREATE TABLE widgets (id bigint);")
        with pytest.raises(MigrationError, match="was changed after it was applied"):
            await migrate(conn, schema, load_migrations("widgets", tmp_path))
        (tmp_path / "0001_widgets.sql").write_text("CREATE TABLE widgets (id int PRIMARY KEY);")
        (tmp_path / "0002_broken.sql").write_text("CREATE TABLE gadgets (id int); SELECT 1/0;")
        with pytest.raises(Exception, match="division by zero"):
            await migrate(conn, schema, load_migrations("widgets", tmp_path))
        # The failed migration left nothing behind: no table, no record.
        assert await conn.fetchval("SELECT to_regclass('gadgets')") is None
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM schema_migrations WHERE component = 'widgets'"
            )
            == 1
        )
    finally:
        await conn.close()
