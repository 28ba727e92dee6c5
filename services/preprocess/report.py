"""The contribution report: what was kept, what was removed and why, built one document
at a time (memory does not grow with the contribution), and the contribution.processed
fact that summarises it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from services.preprocess.dedup import REFERENCE_CORPUS, Verdict
from services.preprocess.pipeline import PIPELINE_VERSION, DocResult, PipelineConfig
from services.preprocess.tokens import tokenizer_label
from tt.facts.v1 import common_pb2, contribution_pb2

EXAMPLES_PER_REASON = 3
HISTOGRAM_BINS = 10
REASON_NAMES = {
    value.number: value.name.removeprefix("REMOVAL_REASON_").lower()
    for value in contribution_pb2.RemovalReason.DESCRIPTOR.values
}


def dedup_removal(verdict: Verdict) -> tuple[int, str]:
    """(RemovalReason, detail) of a duplicate: where the earlier copy is, never whose."""
    if verdict.scope == REFERENCE_CORPUS:
        return contribution_pb2.REMOVAL_REASON_REFERENCE_DUPLICATE, verdict.kind
    if verdict.kind == "exact":
        return contribution_pb2.REMOVAL_REASON_EXACT_DUPLICATE, verdict.scope
    return contribution_pb2.REMOVAL_REASON_NEAR_DUPLICATE, verdict.scope


@dataclass
class _Removal:
    documents: int = 0
    tokens: int = 0
    examples: list[dict] = field(default_factory=list)


@dataclass
class ReportBuilder:
    config: PipelineConfig
    documents_in: int = 0
    documents_kept: int = 0
    tokens_raw: int = 0
    tokens_accepted: int = 0
    removals: dict[tuple[int, str], _Removal] = field(default_factory=dict)
    redactions: Counter = field(default_factory=Counter)
    languages: Counter = field(default_factory=Counter)
    histogram: list[int] = field(default_factory=lambda: [0] * HISTOGRAM_BINS)

    def add(self, result: DocResult, verdict: Verdict | None) -> tuple[int, str] | None:
        """Count one document's final outcome; returns its removal, None if kept."""
        self.documents_in += 1
        self.tokens_raw += result.tokens
        if result.quality_score is not None:
            score = min(max(result.quality_score, 0.0), 1.0)
            self.histogram[min(int(score * HISTOGRAM_BINS), HISTOGRAM_BINS - 1)] += 1
        removal = result.removal or (dedup_removal(verdict) if verdict else None)
        if removal is None:
            self.documents_kept += 1
            self.tokens_accepted += result.tokens
            self.redactions.update(result.redactions)
            self.languages[result.language] += 1
            return None
        entry = self.removals.setdefault(removal, _Removal())
        entry.documents += 1
        entry.tokens += result.tokens
        if len(entry.examples) < EXAMPLES_PER_REASON and result.excerpt:
            entry.examples.append({"document": _doc_label(result), "excerpt": result.excerpt})
        return removal

    def to_dict(self, **context: object) -> dict:
        """The report as JSON: what `1tt status` and `1tt estimate` show."""
        return {
            **context,
            "pipeline_version": PIPELINE_VERSION,
            "config_sha256": self.config.sha256(),
            "tokenizer": tokenizer_label(self.config.tokenizer),
            "documents": {"in": self.documents_in, "kept": self.documents_kept},
            "tokens": {"raw": self.tokens_raw, "accepted": self.tokens_accepted},
            "removals": [
                {
                    "reason": REASON_NAMES[reason],
                    "detail": detail,
                    "documents": r.documents,
                    "tokens": r.tokens,
                    "examples": r.examples,
                }
                for (reason, detail), r in sorted(self.removals.items())
            ],
            "redactions": dict(sorted(self.redactions.items())),
            "languages": dict(self.languages.most_common()),
            "quality_histogram": {
                "bin_width": 1 / HISTOGRAM_BINS,
                "counts": list(self.histogram),
            },
        }

    def to_fact(
        self,
        contribution_id: str,
        contributor_id: str,
        shards: list[common_pb2.BlobRef],
        report: common_pb2.BlobRef | None,
    ) -> contribution_pb2.ContributionProcessed:
        fact = contribution_pb2.ContributionProcessed(
            contribution_id=contribution_id,
            contributor_id=contributor_id,
            outcome=contribution_pb2.PROCESSING_OUTCOME_PROCESSED,
            pipeline_version=PIPELINE_VERSION,
            config_sha256=self.config.sha256(),
            tokenizer=tokenizer_label(self.config.tokenizer),
            documents_in=self.documents_in,
            documents_kept=self.documents_kept,
            tokens_raw=self.tokens_raw,
            tokens_accepted=self.tokens_accepted,
            removals=[
                contribution_pb2.RemovalCount(
                    reason=reason, detail=detail, documents=r.documents, tokens=r.tokens
                )
                for (reason, detail), r in sorted(self.removals.items())
            ],
            redactions=[
                contribution_pb2.RedactionCount(kind=kind, count=count)
                for kind, count in sorted(self.redactions.items())
            ],
            processed_shards=shards,
        )
        if report is not None:
            fact.report.CopyFrom(report)
        for language, count in self.languages.items():
            fact.language_documents[language] = count
        return fact


def _doc_label(result: DocResult) -> str:
    return result.source_id if result.source_id is not None else f"#{result.index}"
