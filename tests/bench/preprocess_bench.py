"""`make bench` (preprocess part): throughput per stage and for the whole pipeline, against
tokenizer-only throughput as the limit; dedup precision and recall; PII recall by kind;
false removal of clean documents by genre and removal of planted low-quality documents.
Prints a table and JSON lines. TT_BENCH_DOCS sets the corpus size (default 3000).

The corpus: documents made of sentences drawn from the text on this machine (Python's
reference and module docs, licence texts, and the genre generators), so no two are alike
by accident; then planted exact copies, near copies with a known true 5-gram Jaccard
similarity, PII samples, and low-quality documents.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from services.preprocess import pii_samples
from services.preprocess.dedup import DocRef, index_all
from services.preprocess.fingerprints import fingerprint, shingles
from services.preprocess.genres import (
    bad_removal_rate,
    clean_documents,
    false_removal_rates,
    low_quality_documents,
)
from services.preprocess.language import identify
from services.preprocess.normalize import normalize
from services.preprocess.pii import redact
from services.preprocess.pipeline import PipelineConfig, prepare_batch
from services.preprocess.quality import DEFAULT_QUALITY, assess
from services.preprocess.tokens import count_tokens
from tests.support import gaming, more_genres

SENTENCE = re.compile(r"(?<=[.!?])\s+")


def jaccard(a: str, b: str) -> float:
    left, right = set(shingles(a, 5)), set(shingles(b, 5))
    return len(left & right) / len(left | right)


def edit_words(text: str, changes: int, rng: random.Random) -> str:
    words = text.split(" ")
    for position in rng.sample(range(len(words)), min(changes, len(words))):
        words[position] = rng.choice(("revised", "amended", "updated", "changed", "altered"))
    return " ".join(words)


def build_corpus(size: int, seed: int = 7):
    """(documents, truth): truth[i] = ("exact"|"near", original index, jaccard) for planted
    copies, ("similar", original, jaccard) for deliberately dissimilar edits, or None."""
    rng = random.Random(seed)
    sentences = [
        s.strip()
        for genre in clean_documents().values()
        for doc in genre
        for s in SENTENCE.split(doc)
        if 6 <= len(s.split()) <= 60
    ]
    documents: list[str] = []
    truth: list[tuple | None] = []
    bad = [text for _, text in low_quality_documents()]
    pii = [sample.text for sample in pii_samples.generate(seed=1, per_kind=20)]
    while len(documents) < size:
        roll = rng.random()
        originals = [
            i for i, t in enumerate(truth) if t is None and len(documents[i].split()) > 150
        ]
        if roll < 0.05 and originals:
            source = rng.choice(originals)
            documents.append(documents[source])
            truth.append(("exact", source, 1.0))
        elif roll < 0.12 and originals:
            source = rng.choice(originals)
            original = documents[source]
            words = len(original.split())
            # Few changes: a near copy; many: a similar but different document.
            changes = rng.choice(
                [max(1, words // 100), max(2, words // 40), words // 6, words // 3]
            )
            copy = edit_words(original, changes, rng)
            similarity = jaccard(original, copy)
            documents.append(copy)
            truth.append(("near" if similarity >= 0.7 else "similar", source, similarity))
        elif roll < 0.16:
            documents.append(rng.choice(bad))
            truth.append(("bad", None, 0.0))
        else:
            count = rng.randint(15, 120)
            text = " ".join(rng.choice(sentences) for _ in range(count))
            if rng.random() < 0.1:
                text += " " + rng.choice(pii)
            documents.append(text)
            truth.append(None)
    return documents, truth


def _warm_worker(config: PipelineConfig) -> None:
    prepare_batch([(0, "A warm-up document, with enough words to pass every stage.", None)], config)


def timed(label: str, documents: list[str], function) -> dict:
    started = time.perf_counter()
    for text in documents:
        function(text)
    seconds = time.perf_counter() - started
    megabytes = sum(len(t.encode()) for t in documents) / 1e6
    return {
        "stage": label,
        "seconds": round(seconds, 3),
        "docs_per_s": round(len(documents) / seconds),
        "mb_per_s": round(megabytes / seconds, 2),
    }


def main() -> int:
    size = int(os.environ.get("TT_BENCH_DOCS", "3000"))
    documents, truth = build_corpus(size)
    normalised = [normalize(t) for t in documents]
    tokens = sum(count_tokens(t) for t in normalised)
    megabytes = sum(len(t.encode()) for t in documents) / 1e6
    config = PipelineConfig()
    # Load the models and tables once (a worker does this at start), outside the timings.
    prepare_batch([(0, documents[0], None)], config)

    stages = [
        timed("normalize", documents, normalize),
        timed("language", normalised, identify),
        timed("quality", normalised, lambda t: assess(t, DEFAULT_QUALITY)),
        timed("minhash", normalised, lambda t: fingerprint(t, config.dedup)),
        timed("pii", normalised, redact),
        timed("tokenizer", normalised, count_tokens),
    ]
    for stage in stages:
        stage["tokens_per_s"] = round(tokens / stage["seconds"])

    # The whole pipeline against tokenizer-only, interleaved in chunks of documents: on a
    # shared machine the load changes within seconds, and so hits both alike. The pipeline
    # runs as a worker does, a batch at a time (the MinHash takes a batch at once).
    results = []
    pipeline_s = tokenizer_s = 0.0
    for start in range(0, len(documents), 50):
        started = time.perf_counter()
        for text in normalised[start : start + 50]:
            count_tokens(text)
        tokenizer_s += time.perf_counter() - started
        chunk = [
            (index, text, None) for index, text in enumerate(documents[start : start + 50], start)
        ]
        started = time.perf_counter()
        results.extend(prepare_batch(chunk, config))
        pipeline_s += time.perf_counter() - started

    workers = os.cpu_count() or 2
    batches = [
        [(i, t, None) for i, t in enumerate(documents)][k : k + 128]
        for k in range(0, len(documents), 128)
    ]
    with ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=_warm_worker,  # models and tables load at a worker's start, untimed
        initargs=(config,),
    ) as pool:
        # Start every worker (the pool starts them on demand) before the clock does.
        list(pool.map(time.sleep, [0.5] * workers))
        started = time.perf_counter()
        list(pool.map(prepare_batch, batches, [config] * len(batches)))
        parallel_s = time.perf_counter() - started

    # Dedup, in corpus order, against the ground truth.
    fingerprints = {r.index: r.fingerprint for r in results if r.fingerprint is not None}
    stores: list[dict] = [{} for _ in range(4)]
    verdicts = index_all(DocRef(1, "bench", 0), fingerprints, stores, config.dedup)
    # The index as the Faust table stores it: JSON keys and values (RocksDB adds its own
    # overhead and compression on top).
    index_bytes = sum(
        len(json.dumps(k)) + len(json.dumps(v, default=list))
        for store in stores
        for k, v in store.items()
    )
    index_mb_per_million = index_bytes / len(fingerprints) * 1e6 / 1e6
    flagged = set(verdicts)
    candidates = {i for i in fingerprints}
    positives = {
        i
        for i, t in enumerate(truth)
        if t and t[0] in ("exact", "near") and i in candidates and t[1] in candidates
    }
    near_positives = {i for i in positives if truth[i][0] == "near"}
    true_flags = flagged & positives
    precision = len(true_flags) / len(flagged) if flagged else 1.0
    recall = len(true_flags) / len(positives) if positives else 1.0
    near_recall = len(flagged & near_positives) / len(near_positives) if near_positives else 1.0

    pii_recall = pii_samples.recall_by_kind(pii_samples.generate(seed=2, per_kind=200))
    pii_false_positives = pii_samples.false_positive_rate(pii_samples.clean_hard_negatives())
    false_removal = {
        **false_removal_rates(DEFAULT_QUALITY),
        **more_genres.false_removal_rates(DEFAULT_QUALITY),
    }
    bad_removed = bad_removal_rate(DEFAULT_QUALITY)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"preprocess bench: {len(documents)} documents, {megabytes:.1f} MB, {tokens:,} tokens")
    print(f"  {'stage':<11}{'docs/s':>10}{'MB/s':>9}{'tokens/s':>12}   (one core)")
    for s in stages:
        print(f"  {s['stage']:<11}{s['docs_per_s']:>10,}{s['mb_per_s']:>9}{s['tokens_per_s']:>12,}")
    per_core = tokens / pipeline_s
    print(
        f"  whole pipeline, one core: {per_core:,.0f} tokens/s = "
        f"{per_core / (tokens / tokenizer_s):.2f} x tokenizer-only (goal >= 0.5)"
    )
    print(
        f"  whole pipeline, {workers} worker processes: {tokens / parallel_s:,.0f} tokens/s, "
        f"{len(documents) / parallel_s:,.0f} docs/s, {megabytes / parallel_s:.2f} MB/s"
    )
    print(
        f"  dedup: precision {precision:.3f}, recall {recall:.3f}, near-duplicate recall "
        f"(J >= 0.7) {near_recall:.3f} over {len(positives)} planted copies"
    )
    print(
        "  PII recall: "
        + ", ".join(f"{k} {v:.2f}" for k, v in pii_recall.items())
        + f"; false positives on hard negatives {pii_false_positives:.3f}"
    )
    print(
        "  clean documents removed: "
        + ", ".join(f"{g} {r:.3f}" for g, r in false_removal.items())
        + f"; planted low-quality removed {bad_removed:.3f}"
    )
    print(
        f"  dedup index: {index_bytes / len(fingerprints):,.0f} bytes per document = "
        f"{index_mb_per_million:,.0f} MB per million documents (JSON as stored, before RocksDB)"
    )
    print(f"  peak RSS (this process) {peak_rss_mb:.0f} MB")
    gaming_outcomes = gaming.run(config)
    print("  " + gaming.report(gaming_outcomes).replace("\n", "\n  "))
    junk = gaming.junk_removal()
    print(
        "  junk removed per class (goal >= 0.95 each): "
        + ", ".join(f"{name} {rate:.3f}" for name, rate in junk.items())
    )
    print(
        json.dumps(
            {
                "bench": "preprocess",
                "documents": len(documents),
                "megabytes": round(megabytes, 2),
                "tokens": tokens,
                "stages": stages,
                "pipeline_tokens_per_s": round(per_core),
                "tokenizer_tokens_per_s": round(tokens / tokenizer_s),
                "pipeline_to_tokenizer_ratio": round(per_core / (tokens / tokenizer_s), 3),
                "parallel_tokens_per_s": round(tokens / parallel_s),
                "workers": workers,
                "dedup_precision": round(precision, 4),
                "dedup_recall": round(recall, 4),
                "near_dup_recall": round(near_recall, 4),
                "planted_copies": len(positives),
                "pii_recall": pii_recall,
                "pii_false_positive_rate": pii_false_positives,
                "clean_false_removal": false_removal,
                "bad_removal_rate": bad_removed,
                "gaming": {o.attack: round(o.fraction, 4) for o in gaming_outcomes},
                "junk_removal": junk,
                "peak_rss_mb": round(peak_rss_mb),
                "dedup_index_mb_per_million_docs": round(index_mb_per_million),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
