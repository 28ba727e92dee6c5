"""The fault suite (issue 7): the whole platform under kills, restarts, duplicates and
reordering gives exactly the money of a run without faults.

For each seed, the same workload (tests/faults/workload.py: contributors, uploads,
agreements, snapshots, deployments, revenue, an adjustment, payout runs) runs twice on
the real stack, each time on a topic prefix and schemas of its own:

1. fault-free, in the natural order;
2. with faults, planned from the seed (`plan_faults`): every service killed with SIGKILL
   at random moments (some during a step, some at exact points through failpoints, an
   outbox relay between publishing and marking among them), the Kafka broker restarted,
   PostgreSQL restarted, facts of every kind published a second time, and revenue
   published before the deployment it names.

After the second run has recovered and settled: the audit matches (log, rules and both
projections agree), the allocations digest equals the fault-free run's, every
contributor's statements equal the fault-free run's (no allocation lost or doubled), and
each payout.issued on the log is one payout per (contributor, period, currency), however
many copies of it were published (no payout made twice).

Seeds: see conftest.py. Prints `fault suite: seed=S faults=N` per seed; the terminal
summary ends with `fault suite: seeds=K faults_injected=N`. The plan (which fault, at
which step, after what delay, which failpoint hit) is a function of the seed; the exact
instant a delayed kill lands is not, so a failure is reproduced by running its seed
again (TT_FAULT_SEEDS=S), which repeats the same plan.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.audit.audit import AuditReport, run_audit
from services.cli.provision import owner_signers
from services.common.config import Settings
from services.common.facts import BY_EVENT_TYPE, payload_of
from tests.faults.platform import (
    SERVICES,
    Platform,
    PlatformFailure,
    StackControl,
    read_dead_letters,
)
from tests.faults.workload import Step, Workload, WorkloadRun, build_workload
from tests.security.hostile import hostile_facts

pytestmark = [pytest.mark.integration, pytest.mark.faults]

# What a republished fact may be: every kind the workload produces.
DUPLICABLE = (
    "principal.registered",
    "contribution.received",
    "contribution.processed",
    "agreement.published",
    "snapshot.created",
    "service.deployed",
    "revenue.recorded",
    "revenue.adjusted",
    "allocation.made",
    "payout.issued",
)
# Failpoints by service (name, highest hit count to arm): each seed arms one or two.
FAILPOINTS = {
    "ingest": [("inbox.after_commit", 8), ("consumer.before_offset_commit", 5)],
    "preprocess": [("preprocess.after_publish", 4), ("preprocess.after_sequence_send", 4)],
    "ledger": [
        ("consumer.before_offset_commit", 8),
        ("inbox.after_commit", 10),
        ("relay.before_publish", 3),
    ],
    "payout": [
        ("inbox.after_commit", 10),
        ("consumer.before_offset_commit", 6),
        ("relay.before_publish", 2),
    ],
}
RELAY_CRASH = "relay.after_publish@1"


@dataclass(frozen=True)
class Fault:
    kind: str  # kill | kafka-restart | pg-restart | duplicates
    target: str  # a service, "kafka", "postgres" or "log"
    step: int  # injected while this step runs (len(steps): after the last one)
    delay_s: float = 0.0  # after the step began
    count: int = 0  # facts, for duplicates

    def __str__(self) -> str:
        what = f"{self.kind} {self.target}" + (f" x{self.count}" if self.count else "")
        return f"{what} at step {self.step} +{self.delay_s:.1f}s"


@dataclass
class FaultPlan:
    seed: int
    faults: list[Fault]
    # By service, in order: each (re)start arms the first one not yet hit.
    failpoints: dict[str, list[str]]

    def describe(self, steps: list[Step]) -> str:
        lines = [f"fault plan for seed {self.seed}:"]
        for fault in sorted(self.faults, key=lambda f: (f.step, f.delay_s)):
            name = steps[fault.step].name if fault.step < len(steps) else "after the last step"
            lines.append(f"  {fault} ({name})")
        for service, points in self.failpoints.items():
            lines.append(f"  failpoints {service}: {', '.join(points) or '-'}")
        return "\n".join(lines)


def plan_faults(seed: int, step_count: int) -> FaultPlan:
    """Which faults, where: a function of the seed and the number of steps only."""
    rng = random.Random(f"faults-{seed}")
    faults: list[Fault] = []
    for service in SERVICES:  # every service killed once or twice at a random moment
        for _ in range(rng.randint(1, 2)):
            faults.append(
                Fault(
                    "kill", service, rng.randint(1, step_count - 1), round(rng.uniform(0, 2.5), 1)
                )
            )
    kafka_step = rng.randint(2, step_count - 2)
    pg_step = rng.choice([s for s in range(2, step_count - 1) if abs(s - kafka_step) > 1])
    faults.append(Fault("kafka-restart", "kafka", kafka_step, round(rng.uniform(0, 1.5), 1)))
    faults.append(Fault("pg-restart", "postgres", pg_step, round(rng.uniform(0, 1.5), 1)))
    faults.append(
        Fault("duplicates", "log", rng.randint(step_count // 2, step_count - 1), 0.5,
              rng.randint(4, 10))
    )  # fmt: skip
    faults.append(Fault("duplicates", "log", step_count, 0.0, rng.randint(4, 10)))
    # Forged facts of every type (tests/security/hostile.py), while the workload runs.
    faults.append(Fault("hostile", "log", rng.randint(step_count // 2, step_count - 1), 0.3))
    failpoints: dict[str, list[str]] = {}
    for service, candidates in FAILPOINTS.items():
        chosen = rng.sample(candidates, rng.randint(1, 2 if service == "ledger" else 1))
        failpoints[service] = [f"{name}@{rng.randint(1, highest)}" for name, highest in chosen]
    failpoints[rng.choice(["ledger", "payout"])].insert(0, RELAY_CRASH)
    return FaultPlan(seed, faults, failpoints)


@dataclass
class Injected:
    """What actually happened to the platform, for the report."""

    kills: int = 0
    missed_kills: list[str] = field(default_factory=list)
    kafka_restarts: int = 0
    pg_restarts: int = 0
    duplicate_batches: int = 0
    duplicated_facts: int = 0
    hostile_facts: int = 0
    awkward_order: int = 0
    failpoints_fired: int = 0
    restart_seconds: list[float] = field(default_factory=list)
    hostile_values: set[bytes] = field(default_factory=set)

    @property
    def total(self) -> int:
        return (
            self.kills
            + self.failpoints_fired
            + self.kafka_restarts
            + self.pg_restarts
            + self.duplicate_batches
            + self.hostile_facts
            + self.awkward_order
        )

    def breakdown(self) -> str:
        return (
            f"kills={self.kills} failpoints={self.failpoints_fired} "
            f"kafka_restarts={self.kafka_restarts} pg_restarts={self.pg_restarts} "
            f"duplicate_batches={self.duplicate_batches} "
            f"duplicated_facts={self.duplicated_facts} hostile_facts={self.hostile_facts} "
            f"awkward_order={self.awkward_order}"
        )


class Injector:
    def __init__(
        self, platform: Platform, stack: StackControl, run: WorkloadRun, seed: int, injected
    ):
        self.platform = platform
        self.stack = stack
        self.run = run
        self.rng = random.Random(f"duplicates-{seed}")
        self.injected = injected

    async def inject(self, fault: Fault) -> None:
        await asyncio.sleep(fault.delay_s)
        if fault.kind == "kill":
            # A service that is restarting at that moment is killed once it is back.
            for _ in range(60):
                if await self.platform.kill(fault.target):
                    self.injected.kills += 1
                    return
                await asyncio.sleep(0.5)
            self.injected.missed_kills.append(str(fault))
        elif fault.kind == "kafka-restart":
            async with self.platform.outage():
                self.injected.restart_seconds.append(await self.stack.kafka_restart())
            self.injected.kafka_restarts += 1
        elif fault.kind == "pg-restart":
            async with self.platform.outage():
                self.injected.restart_seconds.append(await self.stack.pg_restart())
            self.injected.pg_restarts += 1
        elif fault.kind == "duplicates":
            await self.duplicate(fault.count)
        elif fault.kind == "hostile":
            await self.hostile()
        else:
            raise AssertionError(f"unknown fault {fault}")

    async def duplicate(self, count: int) -> None:
        """Publish `count` facts already on the log again, byte for byte the same record
        (signature included)."""
        records = await self.run.log_records(*DUPLICABLE)
        candidates = [r for event_type in DUPLICABLE for r in records[event_type]]
        chosen = self.rng.sample(candidates, min(count, len(candidates)))
        await self.run.publish_records(chosen)
        self.injected.duplicate_batches += 1
        self.injected.duplicated_facts += len(chosen)

    async def hostile(self) -> None:
        """Publish forged facts of every type the log holds so far, as an attacker who can
        write to every fact topic: none may be trusted, so the money must not change."""
        settings = self.platform.settings
        registry = settings.topic_registry()
        facts = await self.run.log_records(*BY_EVENT_TYPE)
        genuine = {t: records[0] for t, records in facts.items() if records}
        signers = await owner_signers(settings, registry, consumer_ids=["consumer"])
        stolen = {p: signers.parties[p] for p in SERVICES} | {
            "consumer": signers.consumers["consumer"]
        }
        attacker = self.run.workload.principals[self.run.workload.contributors[-1]].principal_id
        attacks = hostile_facts(genuine, registry, stolen, attacker)

        await self.run.retry(
            lambda: self.run.publish_raw([(a.topic, a.key, a.value) for a in attacks]),
            f"publishing {len(attacks)} forged facts",
        )
        self.injected.hostile_facts += len(attacks)
        self.injected.hostile_values |= {attack.value for attack in attacks}


@dataclass
class Outcome:
    label: str
    seconds: float
    statements: dict
    audit: AuditReport
    allocations: dict[str, object]  # allocation id -> payload
    allocation_copies: int
    payouts: dict[str, object]  # payout id -> payload
    payout_copies: int
    tokens: dict[int, int]
    parked_reason: str
    dead_letters: list[dict[str, str]]
    notes: list[str]
    exits: list[str]


async def run_workload(
    workload: Workload,
    base: Settings,
    run_dir: Path,
    label: str,
    stack: StackControl | None = None,
    plan: FaultPlan | None = None,
    injected: Injected | None = None,
) -> Outcome:
    """The workload on a platform of its own; with a plan, under its faults (counted in
    `injected` as they happen, so a failed run still reports them)."""
    started = time.monotonic()
    platform = Platform.create(base, run_dir, label)
    run = WorkloadRun(workload, platform, awkward=plan is not None)
    steps = run.steps()
    injector = None
    if plan is not None:
        assert stack is not None
        injector = Injector(platform, stack, run, workload.seed, injected or Injected())
        injector.injected.awkward_order = 1
        for service, points in plan.failpoints.items():
            platform.services[service].failpoints = list(points)
    succeeded, current = False, "start"
    try:
        await platform.start_all()
        for index, step in enumerate([*steps, Step("settle", run.settle)]):
            current = step.name
            faults = [f for f in plan.faults if f.step == index] if plan else []
            tasks = [asyncio.create_task(injector.inject(f)) for f in faults]
            try:
                await step.run()
            finally:
                for task in tasks:
                    await task
            platform.check()
        current = "collecting the outcome"
        if plan is not None:
            await run.settle()  # the last duplicates may have been published after it
        outcome = await collect(run, label, started)
        if injected is not None:
            injected.failpoints_fired = sum(len(s.fired) for s in platform.services.values())
        succeeded = True
        return outcome
    except PlatformFailure as error:
        raise PlatformFailure(f"{label} run, at {current!r}: {error}") from error
    except Exception as error:
        raise PlatformFailure(
            f"{label} run, at {current!r}: {error!r}\n{platform.describe()}"
        ) from error
    finally:
        if injected is not None:
            injected.failpoints_fired = sum(len(s.fired) for s in platform.services.values())
        await platform.stop_all()
        if succeeded or not os.environ.get("TT_FAULT_KEEP"):
            await platform.cleanup()


async def collect(run: WorkloadRun, label: str, started: float) -> Outcome:
    platform = run.platform
    statements = await run.statements()
    audit = await run.retry(
        lambda: run_audit(platform.settings, platform.ledger_schema, platform.payout_schema),
        "the audit",
    )
    facts = await run.log_facts("allocation.made", "payout.issued")
    allocations = _distinct(facts["allocation.made"], "allocation_id")
    payouts = _distinct(facts["payout.issued"], "payout_id")
    exits = [
        f"{e.service}: {e.cause} at {e.at:.0f}s"
        for service in platform.services.values()
        for e in service.exits
    ]
    return Outcome(
        label=label,
        seconds=time.monotonic() - started,
        statements=statements,
        audit=audit,
        allocations=allocations,
        allocation_copies=len(facts["allocation.made"]),
        payouts=payouts,
        payout_copies=len(facts["payout.issued"]),
        tokens=await run.accepted_tokens(),
        parked_reason=run.parked_reason,
        dead_letters=await run.retry(
            lambda: read_dead_letters(platform.settings), "the dead letters"
        ),
        notes=[*platform.startup_notes, *run.notes],
        exits=exits,
    )


def _distinct(envelopes, id_field: str) -> dict[str, object]:
    """Facts by id; every copy of a fact must be the same fact."""
    by_id: dict[str, object] = {}
    for envelope in envelopes:
        fact = payload_of(envelope)
        previous = by_id.setdefault(getattr(fact, id_field), fact)
        assert previous == fact, f"two different facts under {id_field} {getattr(fact, id_field)}"
    return by_id


def _money(outcome: Outcome) -> str:
    """Per currency: revenue, pool, allocated, paid (minor) and carried, from the audit."""
    return "; ".join(
        f"{currency} " + " ".join(f"{k}={v}" for k, v in sorted(totals.items()))
        for currency, totals in sorted(outcome.audit.totals.items())
    )


def _payout_keys(payouts: dict[str, object]) -> Counter:
    return Counter((p.contributor_id, p.period, p.currency) for p in payouts.values())


def _diff_statements(expected: dict, actual: dict) -> list[str]:
    lines = []
    for name in sorted(set(expected) | set(actual)):
        for period in sorted(set(expected.get(name, {})) | set(actual.get(name, {}))):
            want = expected.get(name, {}).get(period)
            got = actual.get(name, {}).get(period)
            if want != got:
                lines.append(
                    f"{name} {period}:\n  fault-free: {json.dumps(want, sort_keys=True)}\n"
                    f"  faulty:     {json.dumps(got, sort_keys=True)}"
                )
    return lines


async def test_faults_change_no_money(fault_seed: int, tmp_path: Path, fault_results: list):
    seed = fault_seed
    started = time.monotonic()
    base = Settings.from_env()
    stack = StackControl(base)
    stack.check()
    workload = build_workload(seed)
    faulty_steps = WorkloadRun(workload, platform=None, awkward=True).steps()  # names only
    plan = plan_faults(seed, len(faulty_steps))
    where = f"seed={seed} (run again with TT_FAULT_SEEDS={seed}); logs under {tmp_path}"
    print(f"\nfault suite: seed={seed} workload: {workload.describe()}")
    print(plan.describe(faulty_steps))
    injected = Injected()
    result = {"seed": seed, "faults": 0, "breakdown": "", "seconds": 0.0, "outcome": "FAILED"}
    fault_results.append(result)
    try:
        clean = await run_workload(workload, base, tmp_path / "fault-free", "clean")
        print(f"fault suite: seed={seed} fault-free run {clean.seconds:.0f}s: {_money(clean)}")
        for note in clean.notes:
            print(f"  note (fault-free run): {note}")
        # Without faults nothing may crash or be refused.
        assert not clean.exits, f"{where}: services exited in the fault-free run: {clean.exits}"
        assert not clean.dead_letters, f"{where}: dead letters without faults: {clean.dead_letters}"
        assert clean.audit.matched, f"{where}: fault-free audit: {clean.audit.mismatches}"
        faulty = await run_workload(
            workload, base, tmp_path / "faulty", "faulty", stack, plan, injected
        )
    finally:
        result.update(
            faults=injected.total,
            breakdown=injected.breakdown(),
            seconds=time.monotonic() - started,
        )
        print(f"fault suite: seed={seed} faults={injected.total}")
        print(f"  {injected.breakdown()}")
    print(f"  faulty run {faulty.seconds:.0f}s: {_money(faulty)}")
    print("  exits: " + "; ".join(faulty.exits))
    print(f"  revenue R3, published before its deployment, was parked: {faulty.parked_reason!r}")
    for note in faulty.notes:
        print(f"  note: {note}")
    for letter in faulty.dead_letters:
        print(f"  dead letter ({letter['consumer_group']}): {letter['reason'][:300]}")
    fired = [line for line in faulty.exits if "failpoint" in line]

    # The faults happened: every service was killed, the relay crash and both restarts.
    killed = {
        line.split(":")[0] for line in faulty.exits if "kill -9" in line or "failpoint" in line
    }
    assert killed == set(SERVICES), f"{where}: services never killed: {set(SERVICES) - killed}"
    assert any(RELAY_CRASH.split("@")[0] in line for line in fired), (
        f"{where}: the outbox relay crash never happened; exits: {faulty.exits}"
    )
    assert injected.kafka_restarts == 1 and injected.pg_restarts == 1, where

    # The forged facts were all refused: dead-lettered or (on topics only tools read)
    # untrusted by the audit; none counted.
    assert injected.hostile_facts > 0, f"{where}: no forged facts were published"
    refused_by_audit = faulty.audit.untrusted_records + faulty.audit.invalid_records
    assert refused_by_audit == injected.hostile_facts, (
        f"{where}: the audit refuses {refused_by_audit} records, "
        f"{injected.hostile_facts} were forged"
    )
    refused = {letter["value"] for letter in faulty.dead_letters}
    read_by_services = [v for v in injected.hostile_values if v in refused]
    assert read_by_services, f"{where}: no forged fact was dead-lettered"
    for letter in faulty.dead_letters:
        if letter["value"] in injected.hostile_values:
            assert "not trusted" in letter["reason"], letter["reason"]

    # The faulty run recovered to a matching audit.
    assert faulty.audit.matched, f"{where}: audit after faults: {faulty.audit.mismatches}"
    assert faulty.tokens == clean.tokens, (
        f"{where}: accepted tokens per upload differ: fault-free {clean.tokens}, "
        f"faulty {faulty.tokens}"
    )
    # No allocation lost or doubled: the same allocations, to the micro-unit.
    assert faulty.audit.digest == clean.audit.digest, (
        f"{where}: allocations digest {faulty.audit.digest} != fault-free {clean.audit.digest}"
    )
    assert set(faulty.allocations) == set(clean.allocations), where
    assert faulty.audit.totals == clean.audit.totals, (
        f"{where}: totals {faulty.audit.totals} != fault-free {clean.audit.totals}"
    )
    differences = _diff_statements(clean.statements, faulty.statements)
    assert not differences, f"{where}: statements differ:\n" + "\n".join(differences)
    # No payout made twice: one payout per contributor, period and currency on the log,
    # however many copies of its fact were published.
    keys = _payout_keys(faulty.payouts)
    assert all(n == 1 for n in keys.values()), f"{where}: payouts issued twice: {keys}"
    assert keys == _payout_keys(clean.payouts), where
    result["outcome"] = "ok"
    print(
        f"fault suite: seed={seed} ok: {len(faulty.allocations)} allocations "
        f"({faulty.allocation_copies} records), {len(faulty.payouts)} payouts "
        f"({faulty.payout_copies} records), digest {faulty.audit.digest[:16]}, "
        f"{result['seconds']:.0f}s"
    )
