"""`1tt estimate` as a contributor runs it: no platform, real files, a real subprocess."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

from services.preprocess.genres import clean_documents

ROOT = Path(__file__).resolve().parents[2]


def test_estimate_reports_what_the_platform_would_keep_and_writes_kept_and_removed(tmp_path):
    docs = [d for d in clean_documents()["technical"] if 300 < len(d.split()) < 1500][:3]
    letter = (
        "Dear Ms Example, thank you for the boxes of minutes from the harbour board. "
        "Please send the signed copy of the deposit agreement to jane.doe@example.com "
        "before Friday, so that the archive team can file it with the rest of the "
        "correspondence and open the reading room to researchers next month. The "
        "catalogue will list every folder by year and by committee."
    )
    lines = [
        {"id": "a", "text": docs[0]},
        {"id": "b", "text": docs[1]},
        {"id": "c", "text": docs[0]},
        {"id": "d", "text": letter},
    ]
    (tmp_path / "books.jsonl.gz").write_bytes(
        gzip.compress("".join(json.dumps(line) + "\n" for line in lines).encode())
    )
    (tmp_path / "notes.txt").write_text(docs[2])
    out = tmp_path / "out"

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli.main",
            "estimate",
            str(tmp_path),
            "--json",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["documents"] == {"in": 5, "kept": 4}
    assert [(r["reason"], r["detail"], r["documents"]) for r in report["removals"]] == [
        ("exact_duplicate", "within_upload", 1)
    ]
    assert report["redactions"] == {"email": 1}
    assert "not detected here" in report["note"]

    kept = [json.loads(line) for line in (out / "kept.jsonl").read_text().splitlines()]
    removed = [json.loads(line) for line in (out / "removed.jsonl").read_text().splitlines()]
    assert [k["id"] for k in kept] == ["a", "b", "d", "notes.txt:1"]
    assert removed == [{"id": "c", "reason": "exact_duplicate", "detail": "within_upload"}]
    assert "jane.doe@example.com" not in (out / "kept.jsonl").read_text()
    assert sum(k["tokens"] for k in kept) == report["tokens"]["accepted"]


def test_estimate_says_what_the_platform_would_refuse(tmp_path):
    (tmp_path / "broken.jsonl").write_text('{"text": "fine"}\n[1, 2]\n')
    result = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "estimate", str(tmp_path / "broken.jsonl")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "the platform would refuse this upload: line 2 is a JSON array" in result.stderr
