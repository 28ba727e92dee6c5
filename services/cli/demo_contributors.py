"""Part 2 of the demo: contributors upload through the `1tt` command, as a person would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.cli import demo_data
from services.cli.report_view import render
from services.cli.status import merge


@dataclass
class UploadTotals:
    contributors: int = 0
    uploads: int = 0
    documents: int = 0
    bytes: int = 0
    verified: int = 0
    tokens_accepted: int = 0
    ok: bool = True
    # contributor name -> its contribution ids, for the consumer's snapshot
    contributions: dict[str, list[str]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)


def tt(
    *args: str, api_key: str | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if api_key:
        env["TT_API_KEY"] = api_key
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=600,
    )


def principals(path: Path, names: list[str], role: str = "contributor") -> dict[str, dict]:
    """The demo's principals, registered once and remembered in .run/demo."""
    known = json.loads(path.read_text()) if path.exists() else {}
    for name in names:
        if name not in known:
            result = tt("admin", "add-principal", "--role", role, "--name", name, "--json")
            if result.returncode != 0:
                raise RuntimeError(f"could not register {name}: {result.stderr}")
            known[name] = json.loads(result.stdout)
            print(
                f"  registered {name} ({known[name]['principal_id']}), API key "
                f"{known[name]['api_key_prefix']}_..."
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(known, indent=2))
    path.chmod(0o600)
    return known


def run() -> UploadTotals:
    demo_dir = Path(os.environ.get("TT_RUN_DIR", ".run")) / "demo"
    datasets = demo_data.build(demo_dir / "data")
    keys = principals(demo_dir / "principals.json", [c.name for c in datasets])
    totals = UploadTotals(contributors=len(datasets))
    all_receipts = []
    for contributor in datasets:
        key = keys[contributor.name]["api_key"]
        paths = [str(p) for p in contributor.paths]
        print(
            f"\n  {contributor.name}: 1tt contribute {' '.join(Path(p).name for p in paths)} "
            f"--dataset {contributor.dataset}"
        )
        result = tt(
            "contribute",
            *paths,
            "--dataset",
            contributor.dataset,
            "--json",
            "--progress",
            "never",
            api_key=key,
        )
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr)
            totals.ok = False
        for line in result.stdout.splitlines():
            receipt = json.loads(line)
            all_receipts.append(line)
            totals.uploads += 1
            totals.documents += receipt["document_count"]
            totals.bytes += receipt["byte_size"]
            again = "  (already contributed: original receipt)" if receipt["replayed"] else ""
            print(
                f"    {receipt['contribution_id']}  {receipt['document_count']:>4} docs "
                f"{receipt['byte_size']:>8} bytes  sha256 {receipt['sha256'][:16]}...{again}"
            )
    verified = tt("verify-receipt", "-", stdin="\n".join(all_receipts))
    totals.verified = verified.stdout.count("VALID   ")
    totals.ok = totals.ok and verified.returncode == 0 and totals.verified == totals.uploads
    print(
        f"\n  1tt verify-receipt: {totals.verified} of {totals.uploads} receipts carry a valid "
        "platform signature"
    )
    print("\n  Waiting for preprocessing (quality, platform-wide dedup, PII, tokens) ...")
    for contributor in datasets:
        key = keys[contributor.name]["api_key"]
        reports = wait_for_reports(key, timeout_s=300)
        if reports is None:
            print(f"  {contributor.name}: not all contributions were processed in time")
            totals.ok = False
            continue
        totals.contributions[contributor.name] = [r["contribution_id"] for r in reports]
        totals.keys[contributor.name] = key
        merged = merge(reports)
        totals.tokens_accepted += merged["tokens"]["accepted"]
        print(f"\n  {contributor.name}: {len(reports)} contribution(s), as `1tt status` shows them")
        print("\n".join(f"    {line}" for line in render(merged).splitlines()))
    return totals


def wait_for_reports(api_key: str, timeout_s: float) -> list[dict] | None:
    """Each contribution's report once all of the contributor's are processed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listing = tt("contributions", "--json", api_key=api_key)
        states = [json.loads(line) for line in listing.stdout.splitlines()]
        if states and all(s["state"] in ("processed", "rejected") for s in states):
            reports = []
            for state in states:
                status = tt("status", state["contribution_id"], "--json", api_key=api_key)
                reports.append(json.loads(status.stdout))
            return reports
        time.sleep(1)
    return None
