"""`make bench`: the ledger's figures.

1. core: split one revenue event's pool over N contributions (default 1,000,000;
   TT_BENCH_LEDGER_CONTRIBUTIONS), in a fresh process so its peak RSS is its own.
   Goal: under 2 s and 1 GB.
2. release: the same through PostgreSQL for M contributions (default 100,000;
   TT_BENCH_LEDGER_DB_CONTRIBUTIONS): allocations, journal lines and allocation.made
   outbox rows written in one transaction. The snapshot and processed rows are loaded
   with COPY first (setup, not measured).
3. end to end: a real ledger process consuming F contribution.processed facts from Kafka
   (default 20,000; TT_BENCH_LEDGER_FACTS) through its inbox into PostgreSQL: sustained
   facts per second from its first applied fact to its last.

Each prints a JSON line; the bench uses its own topic prefix and schemas.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import multiprocessing
import os
import random
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

from services.cli.provision import owner_signers, prepare, remove
from services.common.bus import FactProducer
from services.common.config import Settings
from services.common.db import connect
from services.common.facts import decode
from services.common.migrations import load_migrations, migrate
from services.common.signing import Keyring, Signer
from services.ledger import projection
from services.rules.allocation import Claim, pool_micros, split
from tests import ledger_facts as f
from tests.integration.ingest_server import ROOT


def _core(count: int, queue) -> None:
    rng = random.Random(11)
    claims = [
        Claim(str(uuid.UUID(int=rng.getrandbits(128))), f"p{i % 50_000}", rng.randint(1, 10**7))
        for i in range(count)
    ]
    claims.sort()
    pool = pool_micros(123_456_789_00, "USD", 1500)
    started = time.perf_counter()
    parts = split(pool, claims)
    elapsed = time.perf_counter() - started
    assert sum(part.micros for part in parts) == pool
    queue.put((elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def bench_core(count: int) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_core, args=(count, queue))
    process.start()
    elapsed, rss_mb = queue.get()
    process.join()
    return {
        "bench": "ledger_core",
        "contributions": count,
        "allocate_s": round(elapsed, 3),
        "peak_rss_mb": round(rss_mb, 1),
        "goal": "allocate_s < 2 and peak_rss_mb < 1024",
    }


async def bench_release(settings: Settings, count: int) -> dict:
    schema = f"bench_ledger_{uuid.uuid4().hex[:8]}"
    conn = await connect(settings.database_url, "public", application_name="bench")
    try:
        await migrate(conn, schema, load_migrations("ledger", projection.SQL_DIR))
        await conn.execute(f"SET search_path = {schema}")
        rng = random.Random(5)
        ids = sorted(str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(count))
        rows = [
            (f"pe-{cid}", cid, f"p{i % 50_000}", rng.randint(1, 10**6)) for i, cid in enumerate(ids)
        ]
        await conn.copy_records_to_table(
            "processed",
            records=rows,
            columns=["event_id", "contribution_id", "contributor_id", "tokens_accepted"],
        )
        await conn.execute(
            "INSERT INTO snapshots VALUES ('s', 'c', 's', 2, NULL, $1, $2, 'e', 'x')",
            "0" * 64,
            count,
        )
        await conn.copy_records_to_table(
            "snapshot_members",
            records=[
                ("s", cid, contributor, tokens, event) for event, cid, contributor, tokens in rows
            ],
        )
        projector = projection.Projector()
        async with conn.transaction():
            for envelope in (
                f.agreement("a", "c", "chat", 1500),
                f.deployment("d", "c", "chat", ["s"]),
                f.revenue("c", "EXT-1", "chat", "2026-11", 123_456_789_00, "a", ["d"]),
            ):
                await projector(conn, envelope)
        started = time.perf_counter()
        await projection.release(conn, await projection.parked_revenue(conn))
        elapsed = time.perf_counter() - started
        allocated = await conn.fetchval("SELECT count(*) FROM allocations")
        assert allocated == count, allocated
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
    return {
        "bench": "ledger_release",
        "contributions": count,
        "release_s": round(elapsed, 2),
        "allocations_per_s": round(count / elapsed),
    }


async def bench_end_to_end(settings: Settings, count: int, verify: bool = True) -> dict:
    """The ledger service consuming `count` contribution.processed facts through Kafka
    into PostgreSQL. `verify=False` runs it with signature verification switched off (a
    measurement baseline only, see `_ledger_without_verification`)."""
    unique = uuid.uuid4().hex[:8]
    prefix = f"bench-{unique}."
    schema = f"bench_ledger_{unique}"
    registry = dataclasses.replace(settings, topic_prefix=prefix).topic_registry()
    await prepare(settings, registry, every_consumer=False)
    signers = await owner_signers(settings, registry)
    # Each fact signed alone, as preprocess publishes one per contribution: the ledger
    # verifies one Ed25519 signature per fact (the worst case; batches share one).
    async with FactProducer(settings.kafka, registry, client_id="bench", signer=signers) as out:
        pending = [
            await out.send(f.processed(f"c{i}-{unique}", f"p{i % 100}", 1000 + i))
            for i in range(count)
        ]
        await asyncio.gather(*pending)
    env = {
        **os.environ,
        **settings.party_env("ledger"),
        "TT_TOPIC_PREFIX": prefix,
        "TT_LEDGER_SCHEMA": schema,
        "TT_METRICS_ADDRESS": "off",
        "TT_DATABASE_URL": settings.database_url,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        *(("services.ledger.main",) if verify else ("tests.bench.ledger_bench", UNVERIFIED)),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        conn = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                conn = conn or await connect(settings.database_url, schema, application_name="b")
                applied = await conn.fetchval("SELECT count(*) FROM inbox")
            except Exception:  # the schema appears when the service has migrated it
                applied = 0
                await asyncio.sleep(0.5)
                continue
            if applied >= count:
                break
            await asyncio.sleep(0.5)
        first, last = await conn.fetchrow("SELECT min(processed_at), max(processed_at) FROM inbox")
        await conn.close()
    finally:
        process.terminate()
        await process.wait()
        admin = await connect(settings.database_url, "public", application_name="bench")
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()
        await remove(settings, registry)
    seconds = (last - first).total_seconds()
    return {
        "bench": "ledger_end_to_end" if verify else "ledger_end_to_end_unverified_baseline",
        "facts": count,
        "seconds": round(seconds, 2),
        "facts_per_s": round(count / seconds) if seconds else None,
        "ms_per_fact": round(seconds * 1000 / count, 3) if count else None,
    }


def bench_signatures(count: int = 5000) -> dict:
    """What signing costs per fact: sealing and verifying one fact alone (what the ledger
    does for each contribution.processed) and in a batch of 200 (the outbox relay's
    allocation.made), on the same machine, in process time."""
    signer = Signer.generate()
    keyring = Keyring([])
    keyring._keys[signer.key_id] = signer.entry("preprocess", datetime(2026, 1, 1, tzinfo=UTC))
    facts = [f.processed(f"c{i}", f"p{i % 100}", 1000 + i) for i in range(count)]
    started = time.process_time()
    alone = [signer.seal(fact) for fact in facts]
    seal_alone = time.process_time() - started
    started = time.process_time()
    batched = [v for i in range(0, count, 200) for v in signer.seal_batch(facts[i : i + 200])]
    seal_batched = time.process_time() - started
    results = {}
    for name, values in (("alone", alone), ("batch_200", batched)):
        started = time.process_time()
        for value in values:
            keyring.verify(value, decode(value), 10**13)
        results[name] = (time.process_time() - started) / count * 1e6
    return {
        "bench": "fact_signatures",
        "facts": count,
        "seal_us_alone": round(seal_alone / count * 1e6, 1),
        "seal_us_batch_200": round(seal_batched / count * 1e6, 1),
        "verify_us_alone": round(results["alone"], 1),
        "verify_us_batch_200": round(results["batch_200"], 1),
    }


UNVERIFIED = "--ledger-without-verification"


def _ledger_without_verification() -> int:
    """The ledger service with every signature accepted unchecked: for the bench's
    baseline only (what signing costs is the difference), never run otherwise."""
    from services.common import keys
    from services.common.signing import KeyEntry
    from services.ledger import main as ledger

    unchecked = KeyEntry("unchecked", "preprocess", None, 0)

    async def accept(self, record, envelope):
        return unchecked

    keys.KeyFeed.verify_record = accept
    return ledger.main()


def main() -> int:
    # The bench makes schemas of its own, which only the tests' role may (tests/conftest.py);
    # on Kafka it acts as the operator, who prepares its topic prefix.
    os.environ["TT_DATABASE_URL"] = Settings.from_env(party="tests").database_url
    settings = Settings.from_env()
    core = bench_core(int(os.environ.get("TT_BENCH_LEDGER_CONTRIBUTIONS", "1000000")))
    print(json.dumps(core))
    release = asyncio.run(
        bench_release(settings, int(os.environ.get("TT_BENCH_LEDGER_DB_CONTRIBUTIONS", "100000")))
    )
    print(json.dumps(release))
    facts = int(os.environ.get("TT_BENCH_LEDGER_FACTS", "20000"))
    # Twice each, alternating, so that a change in the machine's load hits both alike.
    runs = {True: [], False: []}
    for verify in (False, True, False, True):
        result = asyncio.run(bench_end_to_end(settings, facts, verify))
        print(json.dumps(result))
        runs[verify].append(result["facts_per_s"])
    end_to_end = {
        "facts_per_s": max(runs[True]),
        "ms_per_fact": round(1000 / max(runs[True]), 3),
    }
    baseline = max(runs[False])
    signatures = bench_signatures()
    print(json.dumps(signatures))
    share = signatures["verify_us_alone"] / (end_to_end["ms_per_fact"] * 1000)
    print(
        f"signatures: the ledger verifies a fact in {signatures['verify_us_alone']} us alone, "
        f"{signatures['verify_us_batch_200']} us in a batch of 200 ({share:.1%} of its "
        f"{end_to_end['ms_per_fact']} ms per fact); end to end {end_to_end['facts_per_s']} "
        f"facts/s verified vs {baseline} unverified: "
        f"{1 - end_to_end['facts_per_s'] / baseline:+.1%} lost (goal: at most 10%)"
    )
    print(
        f"ledger bench: split over {core['contributions']:,} contributions "
        f"{core['allocate_s']} s, peak RSS {core['peak_rss_mb']} MB (goal < 2 s, < 1 GB); "
        f"release through PostgreSQL of {release['contributions']:,} allocations "
        f"{release['release_s']} s; {end_to_end['facts_per_s']} facts/s end to end"
    )
    return 0


if __name__ == "__main__":
    sys.exit(_ledger_without_verification() if UNVERIFIED in sys.argv else main())
