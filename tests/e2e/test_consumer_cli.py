"""`1tt consumer ...`, `1tt allocations` and `1tt rebuild ledger` as a person runs them: a
real ingest (for the principals' keys), a real ledger process, and the `1tt` command as a
subprocess, all on a topic prefix and schemas of this module's own.

The tests run in file order over one shared setup: the first publishes the consumer's
facts and sees them allocated; the later ones resend, reject, adjust and rebuild."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from services.cli.admin import wait_group_stable
from services.common.config import Settings
from services.common.db import connect
from tests import ledger_facts as f
from tests.integration.conftest import publish_signed
from tests.integration.ingest_server import ROOT, start_ingest, stop_ingest

pytestmark = pytest.mark.integration

AMOUNT_MINOR = 1_000_000
SHARE_BPS = 1500
MICROS_PER_CENT = 10_000
POOL_MICROS = AMOUNT_MINOR * MICROS_PER_CENT * SHARE_BPS // 10_000
ADJUST_MINOR = -100_000
ADJUST_POOL_MICROS = ADJUST_MINOR * MICROS_PER_CENT * SHARE_BPS // 10_000
# Two contributions of each contributor, by accepted tokens.
ACCEPTED_TOKENS = [
    ("contributor_a", 1000),
    ("contributor_b", 2000),
    ("contributor_a", 3001),
    ("contributor_b", 777),
]
CONSUMER_EVENT_TYPES = [
    "agreement.published",
    "snapshot.created",
    "service.deployed",
    "revenue.recorded",
    "revenue.adjusted",
]
AGREEMENT = [
    "consumer", "agreement", "--service", "chat", "--share-bps", str(SHARE_BPS),
    "--from", "2026-01-01", "--currency", "USD", "--min-payout-minor", "1000", "--json",
]  # fmt: skip
REVENUE = [
    "consumer", "revenue", "--service", "chat", "--period", "2026-11",
    "--amount-minor", str(AMOUNT_MINOR), "--currency", "USD", "--id", "EXT-1", "--json",
]  # fmt: skip


# Stands for the ingest service's credentials folder, given to a consumer's verb.
NOT_A_CONSUMER = "not-a-consumer"


def replaced(args: list[str], option: str, value: str) -> list[str]:
    """`args` with `option`'s value replaced by `value`."""
    at = args.index(option) + 1
    return [*args[:at], value, *args[at + 1 :]]


@dataclass
class Platform:
    settings: Settings
    env: dict[str, str]
    keys: dict[str, str]
    principal_ids: dict[str, str]
    contributions: list  # the contribution.processed envelopes published
    ledger: subprocess.Popen
    ledger_log: Path
    # The consumer's verbs act with a credentials folder, not an API key: by key, the
    # folder `1tt consumer ...` is given (a consumer's, or one that is not a consumer's).
    credentials: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)  # what the first test published

    def ledger_tail(self) -> str:
        return self.ledger_log.read_text()[-2500:] if self.ledger_log.exists() else ""


def _stop_ledger(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _publish(settings: Settings, envelopes) -> None:
    await publish_signed(settings, settings.topic_registry(), *envelopes)


async def _drop_schema(settings: Settings, schema: str) -> None:
    conn = await connect(settings.database_url, "public", application_name="tests")
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    base = Settings.from_env()
    run_dir = tmp_path_factory.mktemp("consumer-cli")
    server = start_ingest(base, run_dir)
    settings = server.settings
    unique = uuid.uuid4().hex[:10]
    ledger_schema = f"ledger_e2e_{unique}"
    env = {k: v for k, v in os.environ.items() if k not in ("TT_API_KEY", "TT_PARTY")}
    env.update(
        TT_TOPIC_PREFIX=settings.topic_prefix,
        TT_INGEST_SCHEMA=server.schema,
        TT_LEDGER_SCHEMA=ledger_schema,
        **settings.party_env("admin"),
        TT_DATABASE_URL=settings.database_url,
        TT_TOPIC_PARTITIONS=str(settings.topic_partitions),
        TT_LEDGER_SESSION_TIMEOUT_MS="6000",
        TT_METRICS_ADDRESS="off",
        TT_RUN_DIR=str(run_dir),
    )
    ledger_log = run_dir / "ledger.log"
    ledger = subprocess.Popen(
        [sys.executable, "-m", "services.ledger.main"],
        cwd=ROOT,
        env={**env, **settings.party_env("ledger"), "TT_LOG_LEVEL": "INFO"},
        stdout=ledger_log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        ready, detail = asyncio.run(
            wait_group_stable(settings.kafka, f"{settings.topic_prefix}ledger", 90)
        )
        assert ready, f"the ledger did not join its group: {detail}\n{ledger_log.read_text()}"
        records = {
            who: server.principal(who.removesuffix("_a").removesuffix("_b"), f"{who} {unique}")
            for who in ("consumer", "contributor_a", "contributor_b", "operator", "auditor")
        }
        principal_ids = {who: r["principal_id"] for who, r in records.items()}
        # As preprocessing would have reported them.
        contributions = [
            f.processed(f"c{i}-{unique}", principal_ids[who], tokens)
            for i, (who, tokens) in enumerate(ACCEPTED_TOKENS)
        ]
        asyncio.run(_publish(settings, contributions))
        yield Platform(
            settings,
            env,
            {who: r["api_key"] for who, r in records.items()},
            principal_ids,
            contributions,
            ledger,
            ledger_log,
            credentials={
                records["consumer"]["api_key"]: records["consumer"]["credentials"],
                NOT_A_CONSUMER: str(settings.party_credentials("ingest")),
            },
        )
    finally:
        _stop_ledger(ledger)
        asyncio.run(_drop_schema(settings, ledger_schema))
        stop_ingest(server)


def tt(platform: Platform, *args: str, key: str | None = None) -> subprocess.CompletedProcess:
    """`1tt ARGS` as a person runs it, with `key` as $TT_API_KEY (none if None); for the
    consumer's verbs, with the credentials folder that goes with `key` instead."""
    env = dict(platform.env)
    if args and args[0] == "consumer":
        if key is not None:
            args = (*args, "--credentials", platform.credentials.get(key, key))
    elif key is not None:
        env["TT_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def tt_json(platform: Platform, *args: str, key: str) -> dict:
    result = tt(platform, *args, key=key)
    assert result.returncode == 0, (
        f"1tt {' '.join(args)}: exit {result.returncode}\nstderr: {result.stderr}\n"
        f"stdout: {result.stdout}\nledger log:\n{platform.ledger_tail()}"
    )
    return json.loads(result.stdout)


def view(platform: Platform, who: str, revenue: str | None = "EXT-1") -> dict:
    args = ["allocations", *(["--revenue-id", revenue] if revenue else []), "--json"]
    return tt_json(platform, *args, key=platform.keys[who])


def wait_allocated(platform: Platform, kind: str, timeout_s: float = 60.0) -> dict:
    """The operator's view of EXT-1 once its `kind` revenue row is allocated."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = view(platform, "operator")
        rows = [r for r in seen["revenue"] if r["kind"] == kind]
        if rows and all(r["status"] == "allocated" for r in rows):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{kind} revenue not allocated in {timeout_s:.0f} s: {seen['revenue']}\n"
                f"ledger log:\n{platform.ledger_tail()}"
            )
        time.sleep(0.5)


async def _log_end_offsets(settings: Settings) -> dict:
    """The end offset of every partition of the consumer's fact topics."""
    registry = settings.topic_registry()
    consumer = AIOKafkaConsumer(**settings.kafka.client_options(), group_id=None)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # as services.common.logreader does
        partitions = [
            TopicPartition(topic, partition)
            for topic in map(registry.fact_topic, CONSUMER_EVENT_TYPES)
            for partition in consumer.partitions_for_topic(topic) or ()
        ]
        assert partitions, "the prefix's topics are missing"
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


def log_ends(platform: Platform) -> dict:
    return asyncio.run(_log_end_offsets(platform.settings))


def test_the_consumer_publishes_and_each_role_sees_its_view_of_the_allocation(platform):
    consumer = platform.keys["consumer"]
    agreement = tt_json(platform, *AGREEMENT, key=consumer)
    assert agreement["agreement_id"] and agreement["replayed"] is False
    snapshot = tt_json(
        platform, "consumer", "snapshot", "--name", "s1", "--all-processed", "--json", key=consumer
    )
    members = {
        (m["contribution_id"], m["contributor_id"], int(m["tokens_accepted"]))
        for m in snapshot["fact"]["members"]
    }
    assert members == {
        (e.contribution_processed.contribution_id, e.contribution_processed.contributor_id,
         e.contribution_processed.tokens_accepted)
        for e in platform.contributions
    }  # fmt: skip
    deployment = tt_json(
        platform, "consumer", "deploy", "--service", "chat", "--snapshot",
        snapshot["snapshot_id"], "--from", "2026-01-01", "--json", key=consumer,
    )  # fmt: skip
    assert deployment["fact"]["snapshot_ids"] == [snapshot["snapshot_id"]]
    revenue = tt_json(platform, *REVENUE, key=consumer)
    assert revenue["revenue_id"] and revenue["replayed"] is False
    assert revenue["fact"]["agreement_id"] == agreement["agreement_id"]
    assert revenue["fact"]["deployment_ids"] == [deployment["deployment_id"]]
    assert any(agreement["agreement_id"] in note for note in revenue["notes"]), revenue
    platform.ids.update(
        agreement_id=agreement["agreement_id"],
        snapshot_id=snapshot["snapshot_id"],
        deployment_id=deployment["deployment_id"],
        revenue_id=revenue["revenue_id"],
    )

    operator = wait_allocated(platform, "recorded")
    [row] = operator["revenue"]
    assert (row["revenue_id"], row["pool_micros"]) == (revenue["revenue_id"], POOL_MICROS)
    parts = {a["contribution_id"]: a for a in operator["allocations"]}
    assert len(parts) == len(platform.contributions) == 4
    assert sum(a["allocated_micros"] for a in parts.values()) == POOL_MICROS
    total_tokens = sum(e.contribution_processed.tokens_accepted for e in platform.contributions)
    for e in platform.contributions:  # by accepted tokens, to within one micro
        share = parts[e.contribution_processed.contribution_id]["allocated_micros"] * total_tokens
        assert abs(share - POOL_MICROS * e.contribution_processed.tokens_accepted) < total_tokens
    assert operator["total_micros_by_currency"] == {"USD": POOL_MICROS}
    auditor = view(platform, "auditor")
    assert auditor["allocations"] == operator["allocations"]
    assert auditor["revenue"] == operator["revenue"]

    for who in ("contributor_a", "contributor_b"):
        own = platform.principal_ids[who]
        expected = sorted(
            (a["contribution_id"], a["allocated_micros"])
            for a in parts.values()
            if a["contributor_id"] == own
        )
        for seen in (view(platform, who), view(platform, who, revenue=None)):
            assert seen["role"] == "contributor" and "revenue" not in seen
            assert {a["contributor_id"] for a in seen["allocations"]} == {own}
            got = sorted((a["contribution_id"], a["allocated_micros"]) for a in seen["allocations"])
            assert got == expected and len(got) == 2
            assert seen["total_micros_by_currency"] == {"USD": sum(m for _, m in expected)}

    seen = view(platform, "consumer")
    assert "allocations" not in seen and "total_micros_by_currency" not in seen
    [aggregate] = seen["revenue"]
    assert aggregate["pool_micros"] == aggregate["allocated_micros"] == POOL_MICROS
    assert aggregate["contributions"] == 4 and aggregate["status"] == "allocated"
    assert "allocations" not in view(platform, "consumer", revenue=None)


def test_resending_publishes_nothing_and_a_changed_amount_is_refused(platform):
    assert platform.ids, "needs the facts the first test published"
    consumer = platform.keys["consumer"]
    before = log_ends(platform)
    again = tt_json(platform, *REVENUE, key=consumer)
    assert again["replayed"] is True and again["revenue_id"] == platform.ids["revenue_id"]
    for args, id_name in [
        (AGREEMENT, "agreement_id"),
        (["consumer", "snapshot", "--name", "s1", "--all-processed", "--json"], "snapshot_id"),
        (
            ["consumer", "deploy", "--service", "chat", "--snapshot", platform.ids["snapshot_id"],
             "--from", "2026-01-01", "--json"],
            "deployment_id",
        ),
    ]:  # fmt: skip
        resent = tt_json(platform, *args, key=consumer)
        assert resent["replayed"] is True, resent
        assert resent[id_name] == platform.ids[id_name]

    result = tt(platform, *replaced(REVENUE, "--amount-minor", "2000000"), key=consumer)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "already recorded" in result.stderr and "not paid twice" in result.stderr
    assert "1tt consumer adjust --revenue EXT-1" in result.stderr
    assert log_ends(platform) == before
    time.sleep(1.0)  # anything the ledger might wrongly do would show by now
    seen = view(platform, "operator")
    assert len(seen["revenue"]) == 1 and len(seen["allocations"]) == 4


REJECTIONS = {
    "not-a-consumers-folder": (
        NOT_A_CONSUMER, AGREEMENT, ["no consumer credentials", "--credentials FOLDER"]
    ),
    "no-credentials": (None, AGREEMENT, ["no consumer credentials", "TT_PARTY=consumer-"]),
    "unknown-currency": (
        "consumer",
        replaced(AGREEMENT, "--currency", "XYZ"),
        ["'XYZ' is not one the platform settles in", "USD"],
    ),
    "share-over-100%": (
        "consumer",
        replaced(AGREEMENT, "--share-bps", "12000"),
        ["--share-bps must be 0..10000", "12000"],
    ),
    "period-not-begun": (
        "consumer",
        ["consumer", "revenue", "--service", "chat", "--period", "2099-01",
         "--amount-minor", "5000", "--currency", "USD", "--id", "EXT-FUTURE", "--json"],
        ["period 2099-01 has not begun"],
    ),
    "service-without-agreement": (
        "consumer",
        ["consumer", "revenue", "--service", "search", "--period", "2026-11",
         "--amount-minor", "5000", "--currency", "USD", "--id", "EXT-SEARCH", "--json"],
        ["no agreement of yours covers service 'search'", "1tt consumer agreement"],
    ),
    "an-agreement-of-its-choosing": (
        "consumer",
        ["consumer", "revenue", "--service", "chat", "--period", "2026-11",
         "--amount-minor", "5000", "--currency", "USD", "--id", "EXT-CHOSEN",
         "--agreement", "an-agreement-of-my-choosing", "--json"],
        ["agreement an-agreement-of-my-choosing is not the one in force for 'chat' in "
         "2026-11: the rules select", "the ledger would reject any other"],
    ),
    "a-deployment-of-its-choosing": (
        "consumer",
        ["consumer", "revenue", "--service", "chat", "--period", "2026-11",
         "--amount-minor", "5000", "--currency", "USD", "--id", "EXT-CHOSEN",
         "--deployment", "a-deployment-of-my-choosing", "--json"],
        ["the deployments named (a-deployment-of-my-choosing) are not the ones live for "
         "'chat' in 2026-11", "leave --deployment out"],
    ),
    "snapshot-without-selection": (
        "consumer",
        ["consumer", "snapshot", "--name", "s2", "--json"],
        ["--all-processed", "--contribution ID"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_a_request_that_cannot_stand_is_refused_in_words_and_publishes_nothing(platform, case):
    who, args, fragments = REJECTIONS[case]
    before = log_ends(platform)
    key = platform.keys.get(who, who) if who else None
    result = tt(platform, *args, key=key)
    assert result.returncode != 0, f"{case}: accepted\n{result.stdout}"
    assert result.stdout == "", result.stdout
    for fragment in fragments:
        assert fragment in result.stderr, f"{case}: {fragment!r} not in {result.stderr!r}"
    assert "Traceback" not in result.stderr
    assert log_ends(platform) == before, f"{case}: something was published"


def test_an_adjustment_allocates_a_negative_pool_over_the_same_contributions(platform):
    assert platform.ids, "needs the facts the first test published"
    adjusted = tt_json(
        platform, "consumer", "adjust", "--revenue", "EXT-1", "--delta-minor",
        str(ADJUST_MINOR), "--reason", "refund", "--id", "ADJ-1", "--json",
        key=platform.keys["consumer"],
    )  # fmt: skip
    adjustment_id = adjusted["adjustment_id"]
    assert adjusted["fact"]["revenue_id"] == platform.ids["revenue_id"]
    operator = wait_allocated(platform, "adjusted")
    [row] = [r for r in operator["revenue"] if r["kind"] == "adjusted"]
    assert row["revenue_id"] == adjustment_id
    assert row["corrects"] == platform.ids["revenue_id"]
    assert row["pool_micros"] == ADJUST_POOL_MICROS == -150_000_000
    parts = [a for a in operator["allocations"] if a["revenue_id"] == adjustment_id]
    assert len(parts) == 4 and all(a["allocated_micros"] < 0 for a in parts)
    assert sum(a["allocated_micros"] for a in parts) == ADJUST_POOL_MICROS
    assert {a["contribution_id"] for a in parts} == {
        e.contribution_processed.contribution_id for e in platform.contributions
    }
    assert operator["total_micros_by_currency"] == {"USD": POOL_MICROS + ADJUST_POOL_MICROS}

    # The same adjustment again is a replay; the same id with other content, or an
    # adjustment that would take the revenue below zero, is refused in words.
    again = tt_json(
        platform, "consumer", "adjust", "--revenue", "EXT-1", "--delta-minor",
        str(ADJUST_MINOR), "--reason", "refund", "--id", "ADJ-1", "--json",
        key=platform.keys["consumer"],
    )  # fmt: skip
    assert again["replayed"] is True and again["adjustment_id"] == adjustment_id
    changed = tt(
        platform, "consumer", "adjust", "--revenue", "EXT-1", "--delta-minor", "-50000",
        "--reason", "refund", "--id", "ADJ-1", key=platform.keys["consumer"],
    )  # fmt: skip
    assert changed.returncode == 1 and "different content" in changed.stderr, changed.stderr
    too_much = tt(
        platform, "consumer", "adjust", "--revenue", "EXT-1", "--delta-minor", "-5000000",
        "--reason", "refund", "--id", "ADJ-2", key=platform.keys["consumer"],
    )  # fmt: skip
    assert too_much.returncode == 1 and "below zero" in too_much.stderr, too_much.stderr


def test_rebuild_refuses_while_the_ledger_runs_and_is_identical_once_it_stopped(platform):
    assert platform.ids, "needs the facts the first test published"
    refused = tt(platform, "rebuild", "ledger", "--json")
    assert refused.returncode != 0, refused.stdout
    assert "the ledger service is running" in refused.stderr and "stop it" in refused.stderr
    _stop_ledger(platform.ledger)
    assert platform.ledger.returncode == 0, platform.ledger_tail()
    # The stopped consumer left its group; give the broker a moment if it has not said so.
    deadline = time.monotonic() + 20
    while True:
        result = tt(platform, "rebuild", "ledger", "--json")
        if result.returncode == 0 or "is running" not in result.stderr:
            break
        assert time.monotonic() < deadline, f"group never emptied: {result.stderr}"
        time.sleep(1.0)
    assert result.returncode == 0, f"{result.stderr}\n{result.stdout}"
    rebuilt = json.loads(result.stdout)
    assert rebuilt["identical"] is True and rebuilt["digest_before"], rebuilt
    assert rebuilt["counts_after"]["allocations"] == 8, rebuilt
    assert rebuilt["facts_rejected"] == 0 and rebuilt["invalid_records"] == 0, rebuilt
    seen = view(platform, "auditor")
    assert sum(a["allocated_micros"] for a in seen["allocations"]) == (
        POOL_MICROS + ADJUST_POOL_MICROS
    )
