"""The per-document preprocessing pipeline, as pure functions.

    normalise -> (empty?) -> redact PII -> count tokens -> language -> quality
              -> fingerprint (exact hash, MinHash) for the platform-wide dedup

PII redaction and token counting run for every non-empty document, so that the report
can say how many tokens each removal cost; the order of the decisions is the issue's:
language, quality, then exact and near duplicates (decided across the platform by
services.preprocess.dedup, on fingerprints of the normalised, unredacted text).
`prepare_batch` is what a worker process runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

from services.preprocess.boilerplate import strip_chrome_edges
from services.preprocess.fingerprints import DedupConfig, Fingerprint, fingerprints
from services.preprocess.language import allowed, identify_batch
from services.preprocess.normalize import normalize
from services.preprocess.pii import redact
from services.preprocess.quality import DEFAULT_QUALITY, QualityConfig, assess
from services.preprocess.tokens import DEFAULT_TOKENIZER, count_tokens
from tt.facts.v1 import contribution_pb2

# 1.3: disguised letters folded, placeholder text removed; 1.2: index stores one signature
# per shard; 1.1: language, ZIP+4
PIPELINE_VERSION = "1.3.0"
EXCERPT_CHARS = 240

EMPTY = contribution_pb2.REMOVAL_REASON_EMPTY
LANGUAGE = contribution_pb2.REMOVAL_REASON_LANGUAGE
QUALITY = contribution_pb2.REMOVAL_REASON_QUALITY


@dataclass(frozen=True)
class PipelineConfig:
    quality: QualityConfig = DEFAULT_QUALITY
    dedup: DedupConfig = field(default_factory=DedupConfig)
    # ISO 639-1 codes to keep; None keeps every language (and "und" is always kept).
    language_allow: tuple[str, ...] | None = None
    language_min_confidence: float = 0.5
    tokenizer: str = DEFAULT_TOKENIZER

    def canonical_json(self) -> str:
        return json.dumps(
            {
                "pipeline_version": PIPELINE_VERSION,
                "quality": json.loads(self.quality.canonical_json()),
                "dedup": asdict(self.dedup),
                "language_allow": sorted(self.language_allow) if self.language_allow else None,
                "language_min_confidence": self.language_min_confidence,
                "tokenizer": self.tokenizer,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    def sha256(self) -> str:
        """The config hash every report and fact records."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


@dataclass(frozen=True)
class DocResult:
    index: int
    source_id: str | None
    tokens: int  # tokens of the redacted text
    language: str
    quality_score: float | None  # None for empty documents
    removal: tuple[int, str] | None  # (RemovalReason, detail) decided so far
    redactions: dict[str, int]
    fingerprint: Fingerprint | None  # set for documents still in the running
    text: str  # the redacted, normalised text
    excerpt: str  # the start of the contributor's own text, for examples


def prepare_document(
    index: int, text: str, source_id: str | None, config: PipelineConfig
) -> DocResult:
    """One document through the pure stages (see `prepare_batch`)."""
    return prepare_batch([(index, text, source_id)], config)[0]


# A batch ends at this many documents or characters, whichever comes first: memory in
# flight stays bounded when documents are large (a long text arrives in ~1 MiB parts).
BATCH_DOCUMENTS = 128
BATCH_CHARS = 8 << 20


def document_batches(
    records: Iterable[tuple[str, str | None]],
) -> Iterator[list[tuple[int, str, str | None]]]:
    """Number the (text, id) records in order and group them into batches."""
    batch: list[tuple[int, str, str | None]] = []
    chars = 0
    for index, (text, record_id) in enumerate(records):
        batch.append((index, text, record_id))
        chars += len(text)
        if len(batch) == BATCH_DOCUMENTS or chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def prepare_batch(
    batch: list[tuple[int, str, str | None]], config: PipelineConfig
) -> list[DocResult]:
    """Run the pure stages on a batch of (index, text, source id); a worker process runs
    this. Each stage runs over the whole batch before the next one starts, so its tables
    and models stay in the processor's caches, and stages with a batch form take the batch
    in one call. Quality and the shingles read words from the lower-cased text, which the
    native code computes (no Python string of it)."""
    # Normalised, without the web page chrome around the content (boilerplate.py).
    normalised = [strip_chrome_edges(normalize(text)) for _, text, _ in batch]
    live = [i for i, text in enumerate(normalised) if text]  # empty documents stop here
    texts = [normalised[i] for i in live]
    redactions = [redact(text) for text in texts]
    tokens = [count_tokens(r.text, config.tokenizer) for r in redactions]
    guesses = identify_batch(texts)
    verdicts = [assess(text, config.quality) for text in texts]
    allow = frozenset(config.language_allow) if config.language_allow else None
    removals: list[tuple[int, str] | None] = []
    for guess, verdict in zip(guesses, verdicts, strict=True):
        if not allowed(guess, allow, config.language_min_confidence):
            removals.append((LANGUAGE, guess.code))
        elif not verdict.kept:
            removals.append((QUALITY, verdict.rule or "quality"))
        else:
            removals.append(None)
    survivors = [k for k, removal in enumerate(removals) if removal is None]
    prints = dict(
        zip(
            survivors,
            fingerprints([texts[k] for k in survivors], config.dedup),
            strict=True,
        )
    )
    results = [
        DocResult(index, source_id, 0, "und", None, (EMPTY, ""), {}, None, "", "")
        for index, _, source_id in batch
    ]
    for k, i in enumerate(live):
        index, _, source_id = batch[i]
        redacted = redactions[k].text
        results[i] = DocResult(
            index=index,
            source_id=source_id,
            tokens=tokens[k],
            language=guesses[k].code,
            quality_score=verdicts[k].score,
            removal=removals[k],
            redactions=dict(redactions[k].counts),
            fingerprint=prints.get(k),
            text=redacted,
            excerpt=redacted[:EXCERPT_CHARS],
        )
    return results
