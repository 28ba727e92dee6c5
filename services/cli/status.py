"""Reports as a contributor sees them: from the contribution.processed fact's summary."""

from __future__ import annotations

from collections import Counter

from services.preprocess.report import REASON_NAMES
from tt.facts.v1 import contribution_pb2


def report_from_fact(fact: contribution_pb2.ContributionProcessed) -> dict:
    """The report fields the fact carries (the full report, with examples and the quality
    histogram, is the JSON document the fact's `report` blob points to)."""
    return {
        "contribution_id": fact.contribution_id,
        "outcome": contribution_pb2.ProcessingOutcome.Name(fact.outcome)
        .removeprefix("PROCESSING_OUTCOME_")
        .lower(),
        "rejection_reason": fact.rejection_reason,
        "pipeline_version": fact.pipeline_version,
        "config_sha256": fact.config_sha256,
        "tokenizer": fact.tokenizer,
        "documents": {"in": fact.documents_in, "kept": fact.documents_kept},
        "tokens": {"raw": fact.tokens_raw, "accepted": fact.tokens_accepted},
        "removals": [
            {
                "reason": REASON_NAMES[r.reason],
                "detail": r.detail,
                "documents": r.documents,
                "tokens": r.tokens,
                "examples": [],
            }
            for r in fact.removals
        ],
        "redactions": {r.kind: r.count for r in fact.redactions},
        "languages": dict(Counter(dict(fact.language_documents)).most_common()),
        "quality_histogram": {"bin_width": 0.1, "counts": [0] * 10},
    }


def merge(reports: list[dict]) -> dict:
    """Several contributions' reports added up (for one contributor's overview)."""
    removals: dict[tuple[str, str], dict] = {}
    redactions: Counter = Counter()
    languages: Counter = Counter()
    merged = {"documents": {"in": 0, "kept": 0}, "tokens": {"raw": 0, "accepted": 0}}
    histogram = [0] * 10
    for report in reports:
        for section in ("documents", "tokens"):
            for key in merged[section]:
                merged[section][key] += report[section][key]
        for removal in report["removals"]:
            entry = removals.setdefault(
                (removal["reason"], removal["detail"]),
                {**removal, "documents": 0, "tokens": 0, "examples": []},
            )
            entry["documents"] += removal["documents"]
            entry["tokens"] += removal["tokens"]
            entry["examples"] = (entry["examples"] + removal.get("examples", []))[:2]
        redactions.update(report["redactions"])
        counts = report.get("quality_histogram", {}).get("counts", [])
        histogram = (
            [a + b for a, b in zip(histogram, counts, strict=False)] if counts else histogram
        )
        languages.update(report["languages"])
    first = reports[0] if reports else {}
    return {
        **merged,
        "pipeline_version": first.get("pipeline_version", ""),
        "config_sha256": first.get("config_sha256", ""),
        "tokenizer": first.get("tokenizer", ""),
        "removals": [removals[key] for key in sorted(removals)],
        "redactions": dict(sorted(redactions.items())),
        "languages": dict(languages.most_common()),
        "quality_histogram": {"bin_width": 0.1, "counts": histogram},
    }
