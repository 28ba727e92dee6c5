"""The conformance kit (docs/conformance.md): the committed files are what the builder
makes, and `1tt audit` reads the log to exactly the expected results. (The ledger replaying
the same log: tests/integration/test_conformance_ledger.py.)"""

from __future__ import annotations

import json
import subprocess
import sys

from services.audit.audit import audit_log_file
from services.common.signing import load_anchors
from tests.conformance.build_kit import KIT, write_kit
from tests.integration.ingest_server import ROOT

EXPECTED = json.loads((KIT / "expected.json").read_text())


def test_the_committed_kit_is_what_the_builder_makes(tmp_path):
    write_kit(tmp_path)
    for name in ("log.jsonl", "anchors.json", "expected.json"):
        assert (tmp_path / name).read_bytes() == (KIT / name).read_bytes(), (
            f"tests/conformance/kit/{name} differs from what build_kit makes: a rule or a "
            "format changed. If on purpose, run `python -m tests.conformance.build_kit`, "
            "review the diff of expected.json and say why in the commit"
        )


def test_the_audit_of_the_kit_gives_the_expected_results():
    report, expected = audit_log_file(KIT / "log.jsonl", load_anchors(KIT / "anchors.json"))
    assert report.mismatches == []
    outcomes = {}
    for revenue_id, outcome in expected.outcomes.items():
        status, _, reason = outcome.partition(": ")
        outcomes[revenue_id] = (status, reason)
    assert outcomes == {i: (o["status"], o["reason"]) for i, o in EXPECTED["outcomes"].items()}
    allocations = {
        a.allocation_id: {name: getattr(a, name) for name in EXPECTED["allocations"][0]}
        for a in expected.allocations.values()
    }
    assert allocations == {a["allocation_id"]: a for a in EXPECTED["allocations"]}
    assert report.digest == EXPECTED["allocations_digest"]
    assert report.totals == EXPECTED["totals"]
    assert report.payouts == len(EXPECTED["payouts"])
    skipped = EXPECTED["skipped"]
    assert (report.duplicate_records, report.misplaced, report.untrusted, expected.refused) == (
        skipped["resent_records"],
        skipped["misplaced"],
        skipped["untrusted"],
        skipped["refused"],
    )


def test_the_kit_covers_every_outcome_and_currency():
    statuses = {o["status"] for o in EXPECTED["outcomes"].values()}
    assert statuses == {"allocated", "unallocated", "rejected", "parked"}
    assert set(EXPECTED["totals"]) == {"USD", "EUR", "JPY", "BHD"}
    parts = [a["allocated_micros"] for a in EXPECTED["allocations"]]
    assert min(parts) < 0 and 0 in parts  # a clawback, and parts of a pool of 0
    payouts = EXPECTED["payouts"]
    assert any(p["amount_minor"] == 0 and p["carried_forward_micros"] > 0 for p in payouts)
    assert all(o["scenario"] for o in EXPECTED["outcomes"].values())


def test_1tt_audit_reads_a_log_file_offline():
    done = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "audit", "--log",
         str(KIT / "log.jsonl"), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "TT_RUN_DIR": "/nonexistent"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["result"] == "match"
    assert report["allocations_digest"] == EXPECTED["allocations_digest"]
    assert report["totals"] == EXPECTED["totals"]


def test_a_malformed_log_file_is_refused_in_words(tmp_path):
    bad = tmp_path / "log.jsonl"
    bad.write_text('{"topic": "revenue.recorded.v1", "partition": 0}\n')
    (tmp_path / "anchors.json").write_text((KIT / "anchors.json").read_text())
    done = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "audit", "--log", str(bad)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "line 1: not a log record" in done.stderr, done.stderr
