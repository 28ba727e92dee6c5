"""quality.py's signals computed from their definitions, directly and slowly: the patterns
and functions the module documents, with Python objects for every word. The unit tests
compare the native measures with this."""

from __future__ import annotations

import re
from collections import Counter

from services.preprocess import quality
from services.preprocess.boilerplate import boilerplate_fraction
from services.preprocess.quality import DIGIT, LETTER, PUNCT, SYMBOL, QualityConfig

_MASK = (1 << 64) - 1
_SPACELESS = re.compile(quality.SPACELESS_CLASS)


def words(text: str) -> tuple[list[str], int]:
    """The words of the lower-cased text ("_" read as a space) and how many are single
    spaceless-script characters."""
    found = quality.WORD.findall(text.lower().replace("_", " "))
    return found, sum(1 for w in found if len(w) == 1 and _SPACELESS.match(w))


def class_counts(text: str) -> list[int]:
    counts = [0] * 5
    for ch in quality.LAYOUT_RUN.sub("", text):
        counts[quality.char_class(ch)] += 1
    return counts


def duplicate_block_fraction(blocks: list[str], total_chars: int) -> float:
    if total_chars == 0:
        return 0.0
    counts = Counter(block.strip() for block in blocks)
    repeated = sum(
        len(b) * (k - 1) for b, k in counts.items() if k > 1 and len(b) >= quality.SHORT_LINE_CHARS
    )
    return min(1.0, repeated / total_chars)


def ngram_hashes(ids: list[int], n: int) -> list[int]:
    out = []
    for start in range(len(ids) - n + 1):
        h = quality.HASH_SEED
        for word_id in ids[start : start + n]:
            h = (h * quality.HASH_MULT + word_id) & _MASK
        out.append(h)
    return out


def ngram_signals(ids, lengths, total, top_ns, dup_ns) -> dict[str, float]:
    prefix = [0]
    for length in lengths:
        prefix.append(prefix[-1] + length)
    out = {}
    for n in top_ns:
        value = 0.0
        if total and len(ids) >= n:
            hashes = ngram_hashes(ids, n)
            counts = Counter(hashes)
            best = min(counts, key=lambda h: (-counts[h], h))  # most frequent, smallest hash
            if counts[best] > 1:
                start = hashes.index(best)
                value = min(1.0, (prefix[start + n] - prefix[start]) * counts[best] / total)
        out[f"top_ngram_fraction_{n}"] = value
    for n in dup_ns:
        value = 0.0
        if total and len(ids) >= n:
            hashes = ngram_hashes(ids, n)
            counts = Counter(hashes)
            covered = [False] * len(ids)
            for start, h in enumerate(hashes):
                if counts[h] > 1:
                    covered[start : start + n] = [True] * n
            kept = sum(length for length, c in zip(lengths, covered, strict=True) if c)
            value = min(1.0, kept / total)
        out[f"duplicate_ngram_fraction_{n}"] = value
    return out


def signals(text: str, config: QualityConfig = quality.DEFAULT_QUALITY) -> dict[str, float]:
    found, spaceless = words(text)
    n_words = len(found)
    lengths = [len(w) for w in found]
    total = sum(lengths)
    spaced = n_words - spaceless
    counts = class_counts(text)
    non_space = counts[LETTER] + counts[DIGIT] + counts[PUNCT] + counts[SYMBOL]
    vocabulary: dict[str, int] = {}
    ids = [vocabulary.setdefault(w, len(vocabulary)) for w in found]
    out = {
        "n_words": float(n_words),
        "mean_word_length": (total - spaceless) / spaced if spaced else 0.0,
        "spaceless_fraction": spaceless / n_words if n_words else 0.0,
        "alpha_ratio": counts[LETTER] / non_space if non_space else 0.0,
        "symbol_ratio": counts[SYMBOL] / non_space if non_space else 0.0,
        "digit_ratio": counts[DIGIT] / non_space if non_space else 0.0,
        "duplicate_line_fraction": duplicate_block_fraction(text.split("\n"), len(text)),
        "duplicate_paragraph_fraction": duplicate_block_fraction(text.split("\n\n"), len(text)),
        "placeholder_fraction": placeholder_fraction(text, n_words),
        "boilerplate_fraction": boilerplate_fraction(text, n_words),
    }
    out["keyword_stuffing"] = quality._keyword_stuffing(text, n_words)
    alpha = out["alpha_ratio"]
    letters = counts[LETTER]
    out["hex_letter_fraction"] = (
        sum(c in "abcdefABCDEF" for c in text) / letters if alpha < 0.5 and letters >= 20 else 0.0
    )
    out.update(
        ngram_signals(
            ids,
            lengths,
            total,
            sorted(config.max_top_ngram_fraction),
            sorted(config.max_duplicate_ngram_fraction),
        )
    )
    return out


def placeholder_fraction(text: str, n_words: int) -> float:
    """Runs of ASCII letters that are placeholder words (any case) / words; 0 for a text in
    which the stems ipsum, dolor, amet, tempor (lower, title or upper case) are fewer than
    1 per 100 words of its sample (quality._sample)."""
    stems = ("ipsum", "dolor", "amet", "tempor")
    hints = (*stems, *(s.title() for s in stems), *(s.upper() for s in stems))
    if not n_words or quality._hint_share(text, hints) < 0.01:
        return 0.0
    found = re.findall(r"[A-Za-z]+", text)
    return sum(word.lower() in quality.PLACEHOLDER_WORDS for word in found) / n_words
