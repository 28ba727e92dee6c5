"""Document quality rules: which contributed documents are kept (and so paid for).

These rules are deliberately *not* the web-crawl heuristics (C4, Gopher) as published: those
remove short lines, lines without terminal punctuation, code, repetition of terms and the like,
which would remove poetry, dialogue, transcripts, manuals and contracts. What is left are rules
that target text nobody would pay for: spam built from repeated phrases, random character
garbage, encoded binary (base64/hex), tables of numbers with no prose, documents that are
mostly copies of the same line or paragraph, and near-empty documents.

Signals (all computed for every document, so a report can show them):

* ``n_words``: word tokens. A word is a run of letters/digits, joined across ``'``, U+2019 and
  ``-`` (``don't``, ``well-known``). In scripts written without spaces (Han, kana, Thai, Lao,
  Khmer, Myanmar, Tibetan) every character is a word, so those texts are not "one long word".
* ``mean_word_length``: mean length of words in spaced scripts.
* ``spaceless_fraction``: share of words that are single characters of a spaceless script.
  When they are the majority the word-length rules do not apply (they would be meaningless).
* ``alpha_ratio``, ``symbol_ratio``, ``digit_ratio``: letters (incl. combining marks) /
  symbols / digits among non-space characters. "Symbols" are categories S* (``$+<=>^`|~``,
  currency, maths, emoji), connector punctuation (``_``), the ASCII marks ``#%&*/@\\``, and
  private-use/unassigned code points. Brackets, dashes, quotes and sentence punctuation of every
  script are *not* symbols: prose and code both use them. Neither are ``|`` and ``_`` (table
  borders, snake_case) nor runs of 3+ identical marks (``-----``, ``=====``, ``+----+``):
  manuals draw tables and rules with them, so they are left out of these ratios altogether.
* ``duplicate_line_fraction``: characters in repeated copies of a line (every occurrence after
  the first) / all characters. Lines shorter than ``SHORT_LINE_CHARS`` are ignored as copies
  ("}", "Yes.", "A: Okay.", a refrain word): repeating them is normal in code and dialogue.
* ``duplicate_paragraph_fraction``: the same for paragraphs (blocks separated by a blank line).
* ``top_ngram_fraction_N`` (N = 1, 2, 3, 4): characters covered by the most frequent word N-gram
  (count x its length) / characters of all words; 0 if no N-gram occurs twice.
* ``duplicate_ngram_fraction_N`` (N = 5, 7, 10): characters of words that lie inside an N-gram
  occurring more than once (all occurrences) / characters of all words.

Rules, checked in this fixed order; the first failure names the verdict's ``rule``:

1. ``min_words``
2. ``min_mean_word_length``        (spaced scripts only)
3. ``max_mean_word_length``        (spaced scripts only)
4. ``max_symbol_ratio``
5. ``min_alpha_ratio``
6. ``max_duplicate_line_fraction``
7. ``max_duplicate_paragraph_fraction``
8. ``max_top_ngram_fraction``       (N ascending; only with >= MIN_WORDS_FOR_NGRAM_RULES words)
9. ``max_duplicate_ngram_fraction`` (N ascending; likewise)

Performance: one tokenisation (for text that is Latin-1 apart from typographic quotes and
dashes, a bytes.translate and split instead of the regex), one vectorised character
classification (numpy over the code points), and n-gram statistics on 64-bit rolling hashes
of word ids (sorted with numpy; once no n-gram of a length repeats, longer ones are not
hashed at all), so a 1 MB document costs tens of milliseconds, not seconds. The fast paths
give the same words and values as the definitions above; the unit tests compare them.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, fields

import numpy as np

__all__ = ["DEFAULT_QUALITY", "QualityConfig", "QualityVerdict", "assess"]

# Lines/paragraphs shorter than this (after stripping) never count as duplicates.
SHORT_LINE_CHARS = 20
# The n-gram rules apply only to documents with at least this many words: on a handful of
# words one repeated word ("Yes, yes, I'll be there.") is a large share and means nothing.
MIN_WORDS_FOR_NGRAM_RULES = 50


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds of the quality rules. See the module docstring for each signal's definition.

    The dict fields are copied at construction; treat them as read-only.
    """

    min_words: int
    min_mean_word_length: float
    max_mean_word_length: float
    max_symbol_ratio: float
    min_alpha_ratio: float
    max_duplicate_line_fraction: float
    max_duplicate_paragraph_fraction: float
    max_top_ngram_fraction: dict[int, float]
    max_duplicate_ngram_fraction: dict[int, float]

    def __post_init__(self) -> None:
        for name in ("max_top_ngram_fraction", "max_duplicate_ngram_fraction"):
            table = getattr(self, name)
            if not table or any(not isinstance(n, int) or n < 1 for n in table):
                raise ValueError(f"{name} needs positive integer n-gram sizes, got {table!r}")
            # Copy so that the caller's dict cannot change a config after it was hashed.
            object.__setattr__(self, name, {int(n): float(v) for n, v in sorted(table.items())})
        if self.min_mean_word_length > self.max_mean_word_length:
            raise ValueError("min_mean_word_length exceeds max_mean_word_length")

    def canonical_json(self) -> str:
        """Serialise the config as compact JSON with sorted keys (stable input for a hash)."""
        data: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict):
                value = {str(n): float(v) for n, v in value.items()}
            elif isinstance(value, float):
                value = float(value)
            data[f.name] = value
        return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)

    def __hash__(self) -> int:
        """Hash of the canonical JSON (the generated hash would fail on the dict fields)."""
        return hash(self.canonical_json())


DEFAULT_QUALITY = QualityConfig(
    # Five words is one short sentence ("Meeting moved to Tuesday afternoon."): a note that
    # short is still a document, while "", "Untitled", "Page 1 of 3" are not.
    min_words=5,
    # English prose averages ~4.5 letters per word, fast casual speech in transcripts ~3.3
    # ("I", "uh", "so", "A:"). Only streams of single characters fall below 2.
    min_mean_word_length=2.0,
    # German/Finnish prose and identifier-heavy manuals stay below ~8; base64 and hex dumps,
    # digests and concatenated garbage are 20+ characters per "word".
    max_mean_word_length=15.0,
    # Prose has ~0-1 % symbols; code-heavy manual pages and whole Python/C source files stay
    # under ~8 % once table borders are discounted; random printable ASCII and binary read as
    # Latin-1 are ~15-17 %, symbol soup ~100 %.
    max_symbol_ratio=0.12,
    # Prose is ~0.9-0.97 letters; manuals with code and numbered legal clauses ~0.7-0.9;
    # hex dumps (~0.35) and number tables (~0.1-0.3) are far below.
    min_alpha_ratio=0.5,
    # "Mostly repeated": more than half of the text is copies of lines seen before. Refrains,
    # repeated legal headings, "A: Yes." turns and code braces stay well below.
    max_duplicate_line_fraction=0.5,
    max_duplicate_paragraph_fraction=0.5,
    # Gopher uses 0.20/0.18/0.16 (n=2,3,4) for the web. Reference lists with parallel items
    # ("a string containing all ASCII ...") reach ~0.4 at n=4 and defined terms in contracts
    # ~0.06, so the limits mean "one phrase is a third to a half of the text". n=1 is added:
    # keyword spam repeats its one keyword (0.40-0.52 of the characters), while the most
    # frequent word of real text ("the", "self", a speaker label) stays below ~0.25.
    max_top_ngram_fraction={1: 0.35, 2: 0.35, 3: 0.45, 4: 0.5},
    # Gopher uses 0.15..0.10 for the web, which a villanelle (~0.4 at n=5), a licence with its
    # recurring formulas (~0.3) or a short reference page written in parallel sentences (~0.7)
    # would fail. Copy-pasted blocks, spam and scraped site chrome are ~0.9-1.0.
    max_duplicate_ngram_fraction={5: 0.85, 7: 0.8, 10: 0.75},
)


@dataclass(frozen=True)
class QualityVerdict:
    """The outcome of :func:`assess`.

    ``rule`` is the first failed rule's config field name (None if kept); ``score`` is in 0..1,
    higher is better, above 0.5 exactly when every rule passes with a margin; ``signals`` holds
    every measured value.
    """

    kept: bool
    rule: str | None
    score: float
    signals: dict[str, float]


# --- tokenisation -------------------------------------------------------------------------

# Scripts written without spaces between words: each character is one word.
_SPACELESS = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u0f00-\u0fff"  # Tibetan
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf"  # CJK Extension A
    "\u4e00-\u9fff"  # CJK Unified Ideographs
    "\uf900-\ufaff"  # CJK Compatibility Ideographs
    "\U00020000-\U0003134f"  # CJK Extensions B..G
)
_HAS_SPACELESS = re.compile(f"[{_SPACELESS}]")
# Letters/digits plus combining marks (Devanagari vowel signs are marks, not \w). "_" is \w
# too; the tokeniser is fed text with "_" replaced by a space, so snake_case is two words.
_MARKS = "\u0300-\u036f\u0900-\u0dff\u1ab0-\u1aff\u1dc0-\u1dff"
_WORD_CLASS = f"[\\w{_MARKS}]"
_JOIN = "['\u2019\\-]"
_WORD = re.compile(f"{_WORD_CLASS}+(?:{_JOIN}{_WORD_CLASS}+)*")
_NOT_SPACELESS = f"(?![{_SPACELESS}]){_WORD_CLASS}"
_WORD_OR_SPACELESS = re.compile(f"[{_SPACELESS}]|{_NOT_SPACELESS}+(?:{_JOIN}{_NOT_SPACELESS}+)*")

# The fast path of the same tokenisation, for text whose characters are all Latin-1 once the
# common typographic marks are set aside (most contributed text in Latin scripts): one
# bytes.translate turns every character that is neither a word character nor a joiner into a
# space, a regex turns the joiners without a word character on both sides into spaces, and
# bytes.split() yields exactly the words _WORD finds. U+2019 (a joiner) becomes the byte
# _APOSTROPHE, so that "don't" and "don\u2019t" stay different words of the same length.
_APOSTROPHE = "\x00"
# Typographic marks outside Latin-1 that are never part of a word: quotes, dashes, ellipsis,
# bullets, primes (checked against _WORD_CLASS at import).
_MARKS_TO_SPACE = (
    "\u2010\u2011\u2012\u2013\u2014\u2015"  # hyphens and dashes
    "\u2018\u201a\u201c\u201d\u201e\u2039\u203a"  # quotation marks
    "\u2022\u2026\u2032\u2033"  # bullet, ellipsis, primes
)
if any(re.match(_WORD_CLASS, ch) or re.match(_JOIN, ch) for ch in _MARKS_TO_SPACE):
    raise AssertionError("_MARKS_TO_SPACE holds a word character or a joiner")
_LATIN1_WORD_TABLE = bytes(
    c if (re.match(_WORD_CLASS, chr(c)) and chr(c) != "_") or chr(c) in "'-" + _APOSTROPHE else 32
    for c in range(256)
)
_JOINER_BYTES = b"'-" + _APOSTROPHE.encode()
# A joiner that lacks a word byte on either side (after the translate, a byte that is
# neither a space nor a joiner is a word byte).
_LONE_JOINER = re.compile(rb"['\-\x00](?:(?<![^ '\-\x00]['\-\x00])|(?![^ '\-\x00]))")


def _latin1_words(folded: str) -> list[bytes] | None:
    """The words of lower-cased text as Latin-1 bytes, or None when the fast path cannot
    tell (characters beyond Latin-1 other than _MARKS_TO_SPACE, or a NUL in the text)."""
    if not folded.isascii():
        if _APOSTROPHE in folded:
            return None
        for mark in _MARKS_TO_SPACE:
            if mark in folded:
                folded = folded.replace(mark, " ")
        if "\u2019" in folded:
            folded = folded.replace("\u2019", _APOSTROPHE)
        try:
            encoded = folded.encode("latin-1")
        except UnicodeEncodeError:
            return None
    elif _APOSTROPHE in folded:
        return None
    else:
        encoded = folded.encode("ascii")
    encoded = encoded.translate(_LATIN1_WORD_TABLE)
    if b"'" in encoded or b"-" in encoded or b"\x00" in encoded:
        encoded = _LONE_JOINER.sub(b" ", encoded)
    return encoded.split()


def _words(text: str) -> tuple[list[str] | list[bytes], int]:
    """The words of ``text`` (case-folded) and how many of them are spaceless-script
    characters. Words come as str, or as Latin-1 bytes from the fast path; only their
    equality and lengths are used."""
    folded = text.lower()
    fast = _latin1_words(folded)
    if fast is not None:
        return fast, 0  # Latin-1 holds no spaceless script
    folded = folded.replace("_", " ")
    if _HAS_SPACELESS.search(folded):
        words = _WORD_OR_SPACELESS.findall(folded)
        return words, sum(1 for w in words if len(w) == 1 and _HAS_SPACELESS.match(w))
    return _WORD.findall(folded), 0


# --- character classes ----------------------------------------------------------------------

# Three or more copies of the same non-word, non-space character in a row.
_LAYOUT_RUN = re.compile(r"([^\w\s])\1{2,}")

_IGNORED, _LETTER, _DIGIT, _PUNCT, _SYMBOL = range(5)
_ASCII_SYMBOL_PO = set("#%&*/@\\")
# Table borders and separators: layout in manuals ("| cell | cell |"), not noise.
_LAYOUT = set("|_")


def _char_class(ch: str) -> int:
    """Class of one character for the ratio signals (used to build the lookup table)."""
    cat = unicodedata.category(ch)
    major = cat[0]
    if major in "LM":
        return _LETTER
    if major == "N":
        return _DIGIT
    if ch in _LAYOUT:
        return _PUNCT
    if major == "S" or cat in ("Pc", "Co", "Cn", "Cs"):
        return _SYMBOL
    if major == "P":
        return _SYMBOL if ch in _ASCII_SYMBOL_PO else _PUNCT
    return _IGNORED  # separators, controls, format characters (bidi marks etc.)


# Lookup table for the BMP, built once at import (~65k category look-ups, a few ms).
_BMP_CLASS = np.array([_char_class(chr(cp)) for cp in range(0x10000)], dtype=np.uint8)


# Characters that _LAYOUT_RUN can repeat ([^\w\s]), as a BMP lookup table built by the
# regex itself (one pass over every BMP character), so both always agree.
_LAYOUT_CHAR = re.compile(r"[^\w\s]")
_BMP_LAYOUT = np.zeros(0x10000, dtype=bool)
_BMP_LAYOUT[[m.start() for m in _LAYOUT_CHAR.finditer("".join(map(chr, range(0x10000))))]] = True


def _code_points(text: str) -> np.ndarray:
    """The code points of ``text`` as an array (one byte each for ASCII)."""
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _is_layout(cps: np.ndarray) -> np.ndarray:
    """Per code point: could it form a _LAYOUT_RUN?"""
    if cps.dtype == np.uint8 or not (cps > 0xFFFF).any():
        return _BMP_LAYOUT[cps]
    astral = cps > 0xFFFF
    out = np.zeros(len(cps), dtype=bool)
    out[~astral] = _BMP_LAYOUT[cps[~astral]]
    out[astral] = [_LAYOUT_CHAR.match(chr(cp)) is not None for cp in cps[astral].tolist()]
    return out


def _layout_run_positions(cps: np.ndarray) -> np.ndarray:
    """Positions of the characters _LAYOUT_RUN removes: maximal runs of 3+ copies of one
    character that is neither a word character nor a space ("-----", "=====", "..."). A
    run is the union of the windows of three equal characters that start in it."""
    if len(cps) < 3:
        return np.zeros(0, dtype=np.int64)
    same = cps[1:] == cps[:-1]
    triples = np.flatnonzero(same[:-1] & same[1:])
    if len(triples):
        triples = triples[_is_layout(cps[triples])]
    if not len(triples):
        return triples
    return np.unique(np.concatenate((triples, triples + 1, triples + 2)))


def _class_counts(text: str) -> np.ndarray:
    """Count characters per class, vectorised over code points, leaving out layout runs."""
    cps = _code_points(text)
    dropped = _layout_run_positions(cps)
    if len(dropped):
        cps = np.delete(cps, dropped)
    if cps.dtype == np.uint8:
        return np.bincount(_BMP_CLASS[cps], minlength=5)
    astral = cps > 0xFFFF
    counts = np.bincount(_BMP_CLASS[cps[~astral]], minlength=5)
    if astral.any():  # emoji, CJK extensions: rare, classify the distinct ones directly
        values, freq = np.unique(cps[astral], return_counts=True)
        for cp, k in zip(values.tolist(), freq.tolist(), strict=True):
            counts[_char_class(chr(cp))] += k
    return counts


# --- repetition -----------------------------------------------------------------------------


def _duplicate_block_fraction(blocks: list[str], total_chars: int) -> float:
    """Characters in second and later copies of blocks of >= SHORT_LINE_CHARS chars / total."""
    if total_chars == 0:
        return 0.0
    counts = Counter(map(str.strip, blocks))
    if len(counts) == len(blocks):  # no block occurs twice
        return 0.0
    repeated = sum(
        len(b) * (k - 1) for b, k in counts.items() if k > 1 and len(b) >= SHORT_LINE_CHARS
    )
    return min(1.0, repeated / total_chars)


# Multipliers of the rolling n-gram hash (odd 64-bit constants; arithmetic wraps mod 2**64).
_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)
_HASH_SEED = np.uint64(0xC2B2AE3D27D4EB4F)


def _ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """64-bit hash of every word n-gram (collisions are negligible at document sizes)."""
    m = len(ids) - n + 1
    h = np.full(m, _HASH_SEED, dtype=np.uint64)
    for k in range(n):
        h = h * _HASH_MULT + ids[k : k + m]
    return h


def _top_ngram_fraction(
    hashes: np.ndarray, n: int, prefix: np.ndarray, total: int
) -> tuple[float, bool]:
    """(top n-gram fraction, whether any n-gram occurs twice) from the n-grams' hashes.

    The most frequent n-gram is, among those with the highest count, the one with the
    smallest hash (a fixed, if arbitrary, tie-break), measured at its first occurrence.
    """
    ordered = np.sort(hashes)
    run_starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    counts = np.diff(np.append(run_starts, len(ordered)))
    best = int(np.argmax(counts))  # the first, so the smallest hash, among the highest
    count = int(counts[best])
    if count < 2:
        return 0.0, False
    start = int(np.argmax(hashes == ordered[run_starts[best]]))
    chars = int(prefix[start + n] - prefix[start])
    return min(1.0, chars * count / total), True


def _duplicated_starts(hashes: np.ndarray) -> np.ndarray:
    """Mask of the n-grams whose hash occurs more than once."""
    order = np.argsort(hashes)
    ordered = hashes[order]
    equal = ordered[1:] == ordered[:-1]
    duplicated = np.zeros(len(hashes), dtype=bool)
    duplicated[1:] |= equal
    duplicated[:-1] |= equal
    starts = np.empty(len(hashes), dtype=bool)
    starts[order] = duplicated
    return starts


def _ngram_signals(
    ids: np.ndarray, lengths: np.ndarray, total: int, top_ns: list[int], dup_ns: list[int]
) -> dict[str, float]:
    """Gopher-style top n-gram and duplicated n-gram character fractions.

    An n-gram that occurs twice contains shorter n-grams that occur twice; so once no
    n-gram of some length repeats, no longer one does, and its fractions are 0 without
    hashing. The hashes of length n are those of length n - 1 extended by one word.
    """
    out: dict[str, float] = {}
    prefix = np.concatenate(([0], np.cumsum(lengths)))
    n_ids = len(ids)
    # Shortest n-gram length known to have no repeat (none known yet).
    no_repeat_from = n_ids + 1 if total else 0
    hashes = np.full(n_ids, _HASH_SEED, dtype=np.uint64)
    hashed = 0  # `hashes` holds the hashes of the `hashed`-grams

    def hashes_of(n: int) -> np.ndarray:
        nonlocal hashes, hashed
        if n < hashed:  # sizes out of order (a custom config): start again
            hashes, hashed = np.full(n_ids, _HASH_SEED, dtype=np.uint64), 0
        while hashed < n:
            m = n_ids - hashed
            hashes = hashes[:m] * _HASH_MULT + ids[hashed : hashed + m]
            hashed += 1
        return hashes

    for n in top_ns:
        value = 0.0
        if n < no_repeat_from:
            value, repeats = _top_ngram_fraction(hashes_of(n), n, prefix, total)
            if not repeats:
                no_repeat_from = n
        out[f"top_ngram_fraction_{n}"] = value
    for n in dup_ns:
        value = 0.0
        if n < no_repeat_from:
            starts = _duplicated_starts(hashes_of(n))
            if starts.any():
                # Word j is covered if some duplicated n-gram starts in [j-n+1, j].
                edges = np.zeros(n_ids + 1, dtype=np.int64)
                where = np.flatnonzero(starts)
                edges[where] += 1
                edges[where + n] -= 1
                covered = np.cumsum(edges[:n_ids]) > 0
                value = min(1.0, float(lengths[covered].sum()) / total)
            else:
                no_repeat_from = n
        out[f"duplicate_ngram_fraction_{n}"] = value
    return out


# --- verdict --------------------------------------------------------------------------------


def _margin(value: float, threshold: float, upper: bool) -> float:
    """Map a signal to 0..1: 1 = ideal, 0.5 = exactly at the threshold, -> 0 far past it."""
    if upper:  # the signal must stay <= threshold
        r = value / threshold if threshold > 0 else (math.inf if value > 0 else 0.0)
    else:  # the signal must stay >= threshold
        r = threshold / value if value > 0 else (math.inf if threshold > 0 else 0.0)
    if r <= 1.0:
        return 1.0 - r / 2.0
    return 0.0 if math.isinf(r) else 1.0 / (2.0 * r)


def _signals(text: str, config: QualityConfig) -> dict[str, float]:
    """Measure every signal of ``text`` (see the module docstring)."""
    # The one tokenisation: case-folded so that "The"/"the" are the same word in n-grams.
    words, spaceless = _words(text)
    n_words = len(words)
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=n_words)
    total_word_chars = int(lengths.sum())

    spaced = n_words - spaceless
    spaced_chars = total_word_chars - spaceless
    mean_len = spaced_chars / spaced if spaced else 0.0

    # Rules and borders ("-----", "=====", "+----+", "*****") are layout, like whitespace.
    counts = _class_counts(text)
    non_space = int(counts[1:].sum())

    lines = text.split("\n")
    paragraphs = text.split("\n\n")
    n_chars = len(text)

    signals: dict[str, float] = {
        "n_words": float(n_words),
        "mean_word_length": mean_len,
        "spaceless_fraction": spaceless / n_words if n_words else 0.0,
        "alpha_ratio": counts[_LETTER] / non_space if non_space else 0.0,
        "symbol_ratio": counts[_SYMBOL] / non_space if non_space else 0.0,
        "digit_ratio": counts[_DIGIT] / non_space if non_space else 0.0,
        "duplicate_line_fraction": _duplicate_block_fraction(lines, n_chars),
        "duplicate_paragraph_fraction": _duplicate_block_fraction(paragraphs, n_chars),
    }
    # Word ids (dense integers) for the n-gram hashes.
    distinct = dict.fromkeys(words)
    vocab = dict(zip(distinct, range(len(distinct)), strict=True))
    ids = np.fromiter(map(vocab.__getitem__, words), dtype=np.uint64, count=n_words)
    signals.update(
        _ngram_signals(
            ids,
            lengths,
            total_word_chars,
            sorted(config.max_top_ngram_fraction),
            sorted(config.max_duplicate_ngram_fraction),
        )
    )
    return {k: float(v) for k, v in signals.items()}


def _checks(s: dict[str, float], config: QualityConfig) -> list[tuple[str, float, float, bool]]:
    """(rule, value, threshold, is_upper_bound) for every applicable rule, in the fixed order."""
    checks: list[tuple[str, float, float, bool]] = [
        ("min_words", s["n_words"], float(config.min_words), False)
    ]
    if s["n_words"] and s["spaceless_fraction"] < 0.5:
        checks.append(
            ("min_mean_word_length", s["mean_word_length"], config.min_mean_word_length, False)
        )
        checks.append(
            ("max_mean_word_length", s["mean_word_length"], config.max_mean_word_length, True)
        )
    checks.append(("max_symbol_ratio", s["symbol_ratio"], config.max_symbol_ratio, True))
    checks.append(("min_alpha_ratio", s["alpha_ratio"], config.min_alpha_ratio, False))
    checks.append(
        (
            "max_duplicate_line_fraction",
            s["duplicate_line_fraction"],
            config.max_duplicate_line_fraction,
            True,
        )
    )
    checks.append(
        (
            "max_duplicate_paragraph_fraction",
            s["duplicate_paragraph_fraction"],
            config.max_duplicate_paragraph_fraction,
            True,
        )
    )
    if s["n_words"] < MIN_WORDS_FOR_NGRAM_RULES:
        return checks
    for n, limit in sorted(config.max_top_ngram_fraction.items()):
        checks.append(("max_top_ngram_fraction", s[f"top_ngram_fraction_{n}"], limit, True))
    for n, limit in sorted(config.max_duplicate_ngram_fraction.items()):
        checks.append(
            ("max_duplicate_ngram_fraction", s[f"duplicate_ngram_fraction_{n}"], limit, True)
        )
    return checks


def assess(text: str, config: QualityConfig = DEFAULT_QUALITY) -> QualityVerdict:
    """Decide whether an already normalised document is kept, and why not if it is removed.

    The score is the smallest per-rule margin (see ``_margin``): it is continuous, 1 for an
    ideal document, above 0.5 when every rule passes, and below 0.5 once any rule fails.
    """
    signals = _signals(text, config)
    rule: str | None = None
    score = 1.0
    for name, value, threshold, upper in _checks(signals, config):
        failed = value > threshold if upper else value < threshold
        if failed and rule is None:
            rule = name
        score = min(score, _margin(value, threshold, upper))
    return QualityVerdict(kept=rule is None, rule=rule, score=score, signals=signals)
