"""Part 3 of the demo: the consumer publishes an agreement, a snapshot of the demo's
contributions, a deployment and a month's revenue through `1tt consumer ...`; the
ledger allocates the pool; each contributor sees its own share with `1tt allocations`.

Every id is derived from the content (or the consumer's own revenue id), so running the
demo again publishes nothing new: the client finds its facts already on the log."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from services.cli.demo_contributors import UploadTotals, principals, tt
from services.common.money import format_micros, format_minor

CONSUMER = "Acme AI (data consumer)"
SERVICE = "acme-chat"
SHARE_BPS = 1500
REVENUE_MINOR = 1_000_000  # 10,000.00 USD
CURRENCY = "USD"


OPERATOR = "Platform operations"


@dataclass
class ConsumerTotals:
    revenue_minor: int = 0
    pool_micros: int = 0
    allocated_micros: int = 0
    paid_minor: int = 0
    carried_micros: int = 0
    audit: str = "not run"
    ok: bool = True


def _run(*args: str, api_key: str | None = None, json_flag: bool = True) -> dict:
    result = tt(*args, *(["--json"] if json_flag else []), api_key=api_key)
    if result.returncode != 0:
        raise RuntimeError(f"1tt {' '.join(args)} failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def run(uploads: UploadTotals) -> ConsumerTotals:
    demo_dir = Path(os.environ.get("TT_RUN_DIR", ".run")) / "demo"
    # The consumer publishes with its own Kafka user and signing key (its credentials
    # folder), not an API key: the ledger trusts its facts because its key signed them.
    consumer = principals(demo_dir / "principals.json", [CONSUMER], role="consumer")[CONSUMER]
    credentials, key = consumer["credentials"], consumer["api_key"]
    totals = ConsumerTotals()
    period = datetime.now(UTC).strftime("%Y-%m")
    contribution_ids = sorted(cid for ids in uploads.contributions.values() for cid in ids)
    agreement = _run(
        "consumer",
        "agreement",
        "--service",
        SERVICE,
        "--share-bps",
        str(SHARE_BPS),
        "--from",
        "2026-01-01",
        "--currency",
        CURRENCY,
        "--min-payout-minor",
        "1000",
        "--credentials",
        credentials,
    )
    print(
        f"  1tt consumer agreement --service {SERVICE} --share-bps {SHARE_BPS} ... -> "
        f"agreement {agreement['agreement_id']} ({SHARE_BPS / 100:.0f}% of revenue to "
        "contributors)"
    )
    snapshot = _run(
        "consumer",
        "snapshot",
        "--name",
        "demo-training-set",
        *[arg for cid in contribution_ids for arg in ("--contribution", cid)],
        "--credentials",
        credentials,
    )
    members = snapshot["fact"]["members"]
    tokens = sum(int(m["tokens_accepted"]) for m in members)
    print(
        f"  1tt consumer snapshot --name demo-training-set --contribution ... -> snapshot "
        f"{snapshot['snapshot_id']}: {len(members)} contributions, {tokens:,} accepted "
        f"tokens, Merkle root {snapshot['fact']['merkle_root'][:16]}..."
    )
    deployment = _run(
        "consumer",
        "deploy",
        "--service",
        SERVICE,
        "--snapshot",
        snapshot["snapshot_id"],
        "--from",
        "2026-01-01",
        "--credentials",
        credentials,
    )
    print(
        f"  1tt consumer deploy --service {SERVICE} ... -> deployment {deployment['deployment_id']}"
    )
    external_id = f"ACME-INV-{period}"
    revenue = _run(
        "consumer",
        "revenue",
        "--service",
        SERVICE,
        "--period",
        period,
        "--amount-minor",
        str(REVENUE_MINOR),
        "--currency",
        CURRENCY,
        "--id",
        external_id,
        "--credentials",
        credentials,
    )
    totals.revenue_minor = REVENUE_MINOR
    print(
        f"  1tt consumer revenue --service {SERVICE} --period {period} --amount-minor "
        f"{REVENUE_MINOR} --currency {CURRENCY} --id {external_id} -> revenue "
        f"{revenue['revenue_id']}" + ("  (already recorded)" if revenue["replayed"] else "")
    )

    print("\n  Waiting for the ledger to allocate the pool ...")
    view = _wait_allocated(key, external_id, timeout_s=120)
    if view is None:
        print("  the revenue was not allocated in time (see .run/logs/ledger.log)")
        totals.ok = False
        return totals
    [event] = [r for r in view["revenue"] if r["kind"] == "recorded"]
    totals.pool_micros = event["pool_micros"]
    print(
        f"  {external_id}: {format_minor(event['amount_minor'], CURRENCY)} x "
        f"{SHARE_BPS} bps = pool {format_micros(event['pool_micros'], CURRENCY)}, split over "
        f"{event['contributions']} contributions by accepted tokens (largest remainder)"
    )
    for name, contributor_key in uploads.keys.items():
        own = _run("allocations", "--revenue-id", external_id, api_key=contributor_key)
        share = own["total_micros_by_currency"].get(CURRENCY, 0)
        totals.allocated_micros += share
        print(f"\n  {name}: 1tt allocations --revenue-id {external_id}")
        for a in own["allocations"]:
            print(
                f"    contribution {a['contribution_id']}  {a['weight']:>9,} of "
                f"{a['total_weight']:,} tokens -> {format_micros(a['allocated_micros'], CURRENCY)}"
            )
        print(f"    total {format_micros(share, CURRENCY)}")
    totals.ok = totals.allocated_micros == totals.pool_micros
    print(
        f"\n  the contributors' shares sum to {format_micros(totals.allocated_micros, CURRENCY)}"
        f" = the pool: {'yes' if totals.ok else 'NO'}"
    )
    if totals.ok:
        totals.ok = pay_out(uploads, totals, period)
    return totals


def pay_out(uploads: UploadTotals, totals: ConsumerTotals, period: str) -> bool:
    """The operator runs the month's payout; each contributor reads its statement."""
    demo_dir = Path(os.environ.get("TT_RUN_DIR", ".run")) / "demo"
    operator = principals(demo_dir / "principals.json", [OPERATOR], role="operator")[OPERATOR]
    print(f"\n== 4. The operator pays out {period}; each contributor reads its statement")
    # The payout service reads the allocations from the log; wait until it has them all.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pending = sum(
            section["allocated_micros"]
            for key in uploads.keys.values()
            for section in _run(
                "statement", "--period", period, "--format", "json", api_key=key, json_flag=False
            )["statements"]
        )
        if pending >= totals.allocated_micros:
            break
        time.sleep(0.5)
    run = _run("payout", "run", "--period", period, api_key=operator["api_key"])
    print(
        f"  1tt payout run --period {period}: {len(run['issued'])} payout(s) issued"
        + (f", {run['already_issued']} already issued earlier" if run["already_issued"] else "")
    )
    for name, key in uploads.keys.items():
        result = tt("statement", "--period", period, api_key=key)
        print(f"\n  {name}: 1tt statement --period {period}")
        print("\n".join(f"    {line}" for line in result.stdout.rstrip().splitlines()))
        body = _run(
            "statement", "--period", period, "--format", "json", api_key=key, json_flag=False
        )
        for section in body["statements"]:
            totals.paid_minor += section["amount_minor"]
            totals.carried_micros += section["closing_carried_micros"]
            if not section["balanced"] or section["status"] != "issued":
                return False
    print("\n== 5. An auditor replays the log and checks every allocation and payout")
    auditor = principals(demo_dir / "principals.json", ["Independent Auditor"], role="auditor")[
        "Independent Auditor"
    ]
    audit = tt("audit", api_key=auditor["api_key"])
    print("\n".join(f"  {line}" for line in audit.stdout.rstrip().splitlines()))
    if audit.returncode != 0:
        print(audit.stderr, file=sys.stderr)
    totals.audit = "match" if audit.returncode == 0 else "mismatch"
    url = os.environ.get("TT_PAYOUT_URL", "http://127.0.0.1:8000")
    print(
        f"\n  Dashboard: {url}/  (sign in with a contributor's key from {demo_dir}/principals.json)"
    )
    return totals.audit == "match"


def _wait_allocated(key: str, external_id: str, timeout_s: float) -> dict | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view = _run("allocations", "--revenue-id", external_id, api_key=key)
        statuses = {r["status"] for r in view["revenue"]}
        if statuses and statuses <= {"allocated", "unallocated", "rejected"}:
            return view
        time.sleep(0.5)
    return None
