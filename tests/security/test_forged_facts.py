"""Forged facts against the real platform: the four services on a prefix of their own run
the fault suite's workload (uploads through gRPC, the consumer's facts, revenue, payout
runs); then an attacker who can write to every fact topic (the broker's ACLs are tested
in test_kafka_access.py; here the attacker has gone past them, as with a stolen
credential) publishes forged facts of every type, in every form tests/security/hostile.py
makes. Every one is dead-lettered by every service that reads its topic, with the reason;
the audit trusts none of them; money, principals and reports are unchanged; every service
is still running; the rogue operator key opens nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from services.audit.audit import run_audit
from services.cli.provision import owner_signers
from services.common.config import Settings
from services.common.examples import example_envelopes
from services.common.facts import BY_EVENT_TYPE, decode
from services.common.keys import KeyFeed
from services.common.logreader import read_log
from services.common.topics import SERVICES
from tests.faults.platform import Platform, read_dead_letters
from tests.faults.workload import PERIODS, WorkloadRun, build_workload
from tests.security.hostile import ATTACKER_API_KEY, hostile_facts, rogue_key, subscriptions

pytestmark = pytest.mark.integration
SEED = 14_014


async def genuine_records(run: WorkloadRun, signers) -> dict:
    """A genuine fact of every type with its record value: from the log where the workload
    made one, else an example signed by its owner (never published)."""
    settings = run.settings
    registry = settings.topic_registry()
    found: dict = {}
    async with KeyFeed.for_settings(settings, registry) as keys:
        async for record in read_log(settings.kafka, registry, BY_EVENT_TYPE, keys):
            found.setdefault(record.envelope.event_type, (record.envelope, record.value))
    for envelope in example_envelopes("forged", without=tuple(found)):
        value = signers.signer_for(envelope).seal(envelope)
        found[envelope.event_type] = (decode(value), value)
    return found


async def money_and_identities(run: WorkloadRun) -> dict:
    platform = run.platform
    audit = await run_audit(platform.settings, platform.ledger_schema, platform.payout_schema)
    assert audit.matched, audit.mismatches
    return {
        "refused": audit.untrusted_records + audit.invalid_records,
        "statements": await run.statements(),
        "digest": audit.digest,
        "totals": audit.totals,
        "principals": sorted(p["principal_id"] for p in audit.principals),
        "payouts": audit.payouts,
        "allocations": audit.allocations,
    }


async def test_forged_facts_of_every_type_change_nothing_and_stop_nothing(tmp_path: Path):
    base = Settings.from_env()
    workload = build_workload(SEED)
    platform = Platform.create(base, tmp_path, "forged")
    run = WorkloadRun(workload, platform, awkward=False)
    try:
        await platform.start_all()
        for step in run.steps():
            await step.run()
        await run.settle()
        before = await money_and_identities(run)
        assert before.pop("refused") == 0

        settings, registry = run.settings, run.settings.topic_registry()
        signers = await owner_signers(settings, registry, consumer_ids=["consumer"])
        stolen = {p: signers.parties[p] for p in SERVICES}
        stolen["consumer"] = signers.consumers["consumer"]
        genuine = await genuine_records(run, signers)
        assert set(genuine) == set(BY_EVENT_TYPE)
        attacker = workload.principals[workload.contributors[-1]].principal_id
        attacks = hostile_facts(genuine, registry, stolen, attacker)
        attacks += rogue_key(registry, stolen["ingest"], genuine["allocation.made"][0], attacker)
        async with AIOKafkaProducer(**settings.kafka.client_options()) as producer:
            for attack in attacks:
                await producer.send_and_wait(attack.topic, attack.value, key=attack.key)
        print(f"\n{len(attacks)} forged facts published: " + ", ".join(map(str, attacks)))

        # Every service that reads a forged fact's topic dead-letters it, with the reason.
        # (key.registered is read by every service's KeyFeed, outside any group: a forged
        # registration is refused, logged and counted, and the audit lists it.)
        subscribed = subscriptions()
        readers = {
            attack.value: [
                registry.consumer_group(s) for s in SERVICES if attack.event_type in subscribed[s]
            ]
            for attack in attacks
        }

        missing: list[str] = []

        async def all_dead_lettered():
            letters = await read_dead_letters(settings)
            seen = {(letter["value"], letter["consumer_group"]) for letter in letters}
            missing[:] = [
                f"{attack} by {group}"
                for attack in attacks
                for group in readers[attack.value]
                if (attack.value, group) not in seen
            ]
            return letters if not missing else None

        try:
            letters = await platform.wait_for(all_dead_lettered, "every forged fact dead-lettered")
        except Exception:
            print("not dead-lettered:", missing)
            raise
        ours = [letter for letter in letters if letter["value"] in readers]
        assert all("not trusted" in letter["reason"] for letter in ours), [
            letter["reason"] for letter in ours if "not trusted" not in letter["reason"]
        ]
        for fragment in (
            "carries no signature",
            "unknown key",
            "may be published only by",
            "does not verify",
            "a consumer speaks only for itself",
        ):
            assert any(fragment in letter["reason"] for letter in ours), fragment

        # Nothing stopped: every service is up, and still does its work.
        platform.check()
        await asyncio.gather(*(platform.wait_ready(name, 60) for name in SERVICES))
        # The latest period's run again (runs go forward in time): nothing new to pay.
        await run.payout_run(PERIODS[-1])
        await run.settle()
        after = await money_and_identities(run)
        assert after.pop("refused") == len(attacks)
        assert after == before

        # The audit trusts none of them (a forged key id fails validation even before its
        # signature is looked at: those count as invalid).
        audit = await run_audit(platform.settings, platform.ledger_schema, platform.payout_schema)
        assert audit.untrusted_records + audit.invalid_records == len(attacks)
        assert any("signed by" in line or "anchor" in line for line in audit.refused_keys), (
            audit.refused_keys
        )

        # The forged operator principal opens nothing.
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.get(
                f"{platform.payout_url}/v1/payouts",
                headers={"Authorization": f"Bearer {ATTACKER_API_KEY}"},
            )
        assert response.status_code == 401, response.text
        assert not [e for s in platform.services.values() for e in s.exits]
    finally:
        await platform.stop_all()
        await platform.cleanup()
