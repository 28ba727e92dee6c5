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
* ``placeholder_fraction``: runs of ASCII letters that are words of placeholder Latin
  ("lorem ipsum dolor sit amet ...": ``PLACEHOLDER_WORDS``, any case) / ``n_words``; 0 for a
  text in which ipsum, dolor, amet and tempor (lower, title or upper case, counted as
  substrings) are fewer than 1 per 100 words of its sample (the whole text, or for a long one 700
  characters at its start, middle and end), as every placeholder passage has them (so a
  document costs a few substring counts over at most 2,100 characters).
  The list leaves out the short words real Latin is full of (et, in, est, ut ...) and
  keeps those typesetters' filler repeats, so a Latin maxim in a contract stays far below
  the limit.
* ``hex_letter_fraction``: letters that are hexadecimal digits (a-f, A-F) / all letters,
  for a document whose ``alpha_ratio`` is below 0.5 and that has at least 20 letters; else
  0. Hex dumps and digests are ~0.85-1.0; prose, code and tables of any language ~0.3-0.5.
* ``keyword_stuffing``: how far a document goes towards text written to repeat a product
  keyword for search engines: min(t / 0.04, c / 0.06, s / 0.4), where t is the share of
  words taken by the most frequent content word (3+ letters, not a function word or a
  commercial word), c the share of commercial words (buy, cheap, price, deal, shipping,
  ... ``COMMERCIAL_WORDS``) and s the share of sentences that contain that content word;
  0 for a document of fewer than 30 words or in which the most telling commercial words
  (cheap, buy, price, deal, in lower or title case) are fewer than 1 per 100 words of
  its sample (as for the placeholder gate). Spam built from
  templates scores ~1-3; technical, legal and every other clean genre stay under ~0.45.
* ``boilerplate_fraction``: the share of non-empty lines that are web page chrome (cookie
  banners, menus, share bars, newsletter prompts, copyright and legal-link lines), for a
  document of at most 300 words with fewer than 50 words outside such lines; else 0
  (services/preprocess/boilerplate.py).

Rules, checked in this fixed order; the first failure names the verdict's ``rule``:

1. ``min_words``
2. ``max_placeholder_fraction``
3. ``max_boilerplate_fraction``
4. ``max_keyword_stuffing``
5. ``min_mean_word_length``        (spaced scripts only)
6. ``max_mean_word_length``        (spaced scripts only)
7. ``max_symbol_ratio``
8. ``max_hex_letter_fraction``
9. ``min_alpha_ratio``
10. ``max_duplicate_line_fraction``
11. ``max_duplicate_paragraph_fraction``
12. ``max_top_ngram_fraction``       (N ascending; only with >= MIN_WORDS_FOR_NGRAM_RULES words)
13. ``max_duplicate_ngram_fraction`` (N ascending; likewise)

Performance: the counting (words, character classes, repeated blocks, n-gram statistics on
64-bit hashes of word ids; once no n-gram of a length repeats, longer ones are not hashed)
runs in native code (services/preprocess/textcore.py), one pass per measure without a
Python object per word. The definitions above are the patterns below; the unit tests
compare the native values with them applied directly.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass, fields

from services.preprocess.boilerplate import boilerplate_fraction
from services.preprocess.textcore import native, without_surrogates

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
    max_placeholder_fraction: float = 0.2
    max_boilerplate_fraction: float = 0.6
    max_hex_letter_fraction: float = 0.75
    max_keyword_stuffing: float = 0.7

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
    # real tables of dates, versions and names ~0.25-0.5; number tables without words ~0-0.1.
    # (Hex dumps, ~0.35, have their own rule, max_hex_letter_fraction.)
    min_alpha_ratio=0.2,
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
    # Placeholder text is nearly all filler words (the classic passage ~0.6 of its words,
    # generators that mix in English ~0.4); a Latin quotation in English prose, or a
    # page of real Latin, stays under ~0.05.
    max_placeholder_fraction=0.2,
    # A page that is chrome and little else: most of its lines are menus, banners and
    # footers (a real article with its chrome around it keeps 50+ words of its own).
    max_boilerplate_fraction=0.6,
    # Hex dumps and digests spell with a-f only (~0.85-1.0 of their letters); any language's
    # prose, code and tables ~0.3-0.5.
    max_hex_letter_fraction=0.75,
    # Every one of the three signs of keyword stuffing at 70% of what template spam shows.
    max_keyword_stuffing=0.7,
)

# Words that sell. A document is keyword spam only if it is also full of one product word.
COMMERCIAL_WORDS = frozenset(
    """buy buying bought cheap cheapest best price prices pricing discount discounts
    discounted sale sales deal deals offer offers shop shopping store stores online order
    orders ordering free shipping delivery lowest save savings coupon coupons promo
    promotion guaranteed affordable outlet wholesale bargain bargains exclusive review
    reviews rated compare""".split()
)
_FUNCTION_WORDS = frozenset(
    """the and for with are was were been its this that these those from not but then than
    such which who what when where how all any each can may must will would should could
    does did has have had you your our they their there here into over about more most
    also only just get now today near""".split()
)
_WINDOW = 700  # characters of each window a gate samples (see _sample)
_STUFFING_HINTS = ("cheap", "buy", "price", "deal")
_STUFFING_HINTS = (*_STUFFING_HINTS, *(hint.title() for hint in _STUFFING_HINTS))
_LETTER_WORD = re.compile(r"[^\W\d_]+")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")

# Typesetters' placeholder Latin ("lorem ipsum" and its generators), without the short words
# that real Latin uses everywhere (et, in, est, non, ut, ad, ex, id, qui, sed ...).
PLACEHOLDER_WORDS = frozenset(
    """lorem ipsum dolor amet consectetur consectetuer adipiscing adipisicing elit eiusmod
    tempor incididunt labore dolore magna aliqua enim minim veniam nostrud exercitation
    ullamco laboris nisi aliquip commodo consequat duis aute irure reprehenderit voluptate
    velit esse cillum fugiat nulla pariatur excepteur occaecat cupidatat proident sunt
    culpa officia deserunt mollit anim laborum curabitur pretium tincidunt lacus gravida
    orci odio nullam varius turpis pharetra eros bibendum luctus felis sollicitudin mauris
    integer nibh euismod tellus risus vulputate vehicula donec lobortis etiam ullamcorper
    ligula congue sapien quam maecenas fermentum pellentesque malesuada aliquet eget neque
    aliquam faucibus vestibulum porttitor rhoncus dapibus sagittis viverra suspendisse
    ultrices posuere cubilia curae praesent semper mattis condimentum volutpat morbi
    tristique senectus netus fames egestas nunc accumsan blandit feugiat lectus lacinia
    placerat hendrerit scelerisque fringilla facilisis interdum imperdiet iaculis mollis
    nascetur ridiculus penatibus montes parturient natoque massa""".split()
)
# Stems found in almost every placeholder passage and in almost no other text: the
# placeholder count runs only on a document that contains one (a substring test, cheap).
_PLACEHOLDER_STEMS = ("ipsum", "dolor", "amet", "tempor")
_PLACEHOLDER_HINTS = (
    *_PLACEHOLDER_STEMS,
    *(stem.title() for stem in _PLACEHOLDER_STEMS),
    *(stem.upper() for stem in _PLACEHOLDER_STEMS),
)
_PLACEHOLDER_WORD = re.compile(r"[A-Za-z]+")


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


# --- definitions ----------------------------------------------------------------------------
#
# The patterns below define words and character classes; the native code (services/
# preprocess/textcore.py) measures with a table of flags built from them, and the unit tests
# compare its results with these definitions applied directly (tests/unit/quality_reference.py).

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
SPACELESS_CLASS = f"[{_SPACELESS}]"
# Letters/digits plus combining marks (Devanagari vowel signs are marks, not \w). "_" is \w
# too, but words are read from text with "_" replaced by a space, so snake_case is two words.
_MARKS = "\u0300-\u036f\u0900-\u0dff\u1ab0-\u1aff\u1dc0-\u1dff"
WORD_CLASS = f"[\\w{_MARKS}]"
JOIN = "['\u2019\\-]"
# A word: a spaceless-script character alone, or word characters joined across single
# joiners ("don't", "well-known"), read from the lower-cased text with "_" as a space.
WORD = re.compile(
    f"{SPACELESS_CLASS}|(?!{SPACELESS_CLASS}){WORD_CLASS}+"
    f"(?:{JOIN}(?!{SPACELESS_CLASS}){WORD_CLASS}+)*"
)

# Three or more copies of the same non-word, non-space character in a row.
LAYOUT_RUN = re.compile(r"([^\w\s])\1{2,}")

IGNORED, LETTER, DIGIT, PUNCT, SYMBOL = range(5)
_ASCII_SYMBOL_PO = set("#%&*/@\\")
# Table borders and separators: layout in manuals ("| cell | cell |"), not noise.
_LAYOUT = set("|_")


def char_class(ch: str) -> int:
    """Class of one character for the ratio signals."""
    cat = unicodedata.category(ch)
    major = cat[0]
    if major in "LM":
        return LETTER
    if major == "N":
        return DIGIT
    if ch in _LAYOUT:
        return PUNCT
    if major == "S" or cat in ("Pc", "Co", "Cn", "Cs"):
        return SYMBOL
    if major == "P":
        return SYMBOL if ch in _ASCII_SYMBOL_PO else PUNCT
    return IGNORED  # separators, controls, format characters (bidi marks etc.)


# Multipliers of the n-gram hash: the hash of words w1..wn (by word id, ids numbered in order
# of first appearance) is ((SEED * M + id1) * M + id2) ... mod 2**64. It decides which of
# equally frequent n-grams is "the most frequent" (the smallest hash).
HASH_MULT = 0x9E3779B97F4A7C15
HASH_SEED = 0xC2B2AE3D27D4EB4F


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
    """Measure every signal of ``text`` (see the module docstring). The counting, and the
    lower-casing the words are read from (as ``str.lower()``), run in native code; lone
    surrogates (which no decoded upload holds) are measured as U+FFFD."""
    top_ns = sorted(config.max_top_ngram_fraction)
    dup_ns = sorted(config.max_duplicate_ngram_fraction)
    try:
        measures = native().quality_measures(text, top_ns, dup_ns, SHORT_LINE_CHARS)
    except UnicodeEncodeError:
        text = without_surrogates(text)
        measures = native().quality_measures(text, top_ns, dup_ns, SHORT_LINE_CHARS)
    n_words, total_word_chars, spaceless, counts, _, lines, paragraphs, top, dup = measures
    spaced = n_words - spaceless
    spaced_chars = total_word_chars - spaceless
    non_space = counts[LETTER] + counts[DIGIT] + counts[PUNCT] + counts[SYMBOL]
    signals: dict[str, float] = {
        "n_words": float(n_words),
        "mean_word_length": spaced_chars / spaced if spaced else 0.0,
        "spaceless_fraction": spaceless / n_words if n_words else 0.0,
        "alpha_ratio": counts[LETTER] / non_space if non_space else 0.0,
        "symbol_ratio": counts[SYMBOL] / non_space if non_space else 0.0,
        "digit_ratio": counts[DIGIT] / non_space if non_space else 0.0,
        "duplicate_line_fraction": lines,
        "duplicate_paragraph_fraction": paragraphs,
    }
    signals["placeholder_fraction"] = _placeholder_fraction(text, n_words)
    signals["boilerplate_fraction"] = boilerplate_fraction(text, n_words)
    signals["keyword_stuffing"] = _keyword_stuffing(text, n_words)
    signals["hex_letter_fraction"] = _hex_letter_fraction(
        text, counts[LETTER], signals["alpha_ratio"]
    )
    for n, value in zip(top_ns, top, strict=True):
        signals[f"top_ngram_fraction_{n}"] = value
    for n, value in zip(dup_ns, dup, strict=True):
        signals[f"duplicate_ngram_fraction_{n}"] = value
    return signals


def _sample(text: str) -> str:
    """The text, or for a long one three windows of it (start, middle, end): where the
    gates of the rules below count their hints, at a cost that does not grow with length."""
    if len(text) <= 3 * _WINDOW:
        return text
    middle = (len(text) - _WINDOW) // 2
    return text[:_WINDOW] + text[middle : middle + _WINDOW] + text[-_WINDOW:]


def _hint_share(text: str, hints: tuple[str, ...]) -> float:
    """Occurrences of `hints` per word, in the sample of `text`."""
    sample = _sample(text)
    words = sample.count(" ") + sample.count("\n") + 1
    return sum(sample.count(hint) for hint in hints) / words


def _keyword_stuffing(text: str, n_words: int) -> float:
    if n_words < 30 or _hint_share(text, _STUFFING_HINTS) < 0.01:
        return 0.0
    words = [word.lower() for word in _LETTER_WORD.findall(text)]
    if not words:
        return 0.0
    commercial = sum(word in COMMERCIAL_WORDS for word in words) / len(words)
    content: dict[str, int] = {}
    for word in words:
        if len(word) >= 3 and word not in _FUNCTION_WORDS and word not in COMMERCIAL_WORDS:
            content[word] = content.get(word, 0) + 1
    if not content:
        return 0.0
    keyword, count = min(content.items(), key=lambda item: (-item[1], item[0]))
    sentences = [s for s in _SENTENCE_BREAK.split(text.lower()) if s.strip()]
    covered = sum(keyword in sentence for sentence in sentences) / len(sentences)
    return min(count / len(words) / 0.04, commercial / 0.06, covered / 0.4)


def _hex_letter_fraction(text: str, letters: int, alpha_ratio: float) -> float:
    if alpha_ratio >= 0.5 or letters < 20:
        return 0.0
    return sum(text.count(c) for c in "abcdefABCDEF") / letters


def _placeholder_fraction(text: str, n_words: int) -> float:
    if not n_words or _hint_share(text, _PLACEHOLDER_HINTS) < 0.01:
        return 0.0
    count = sum(1 for word in _PLACEHOLDER_WORD.findall(text) if word.lower() in PLACEHOLDER_WORDS)
    return count / n_words


def _checks(s: dict[str, float], config: QualityConfig) -> list[tuple[str, float, float, bool]]:
    """(rule, value, threshold, is_upper_bound) for every applicable rule, in the fixed order."""
    checks: list[tuple[str, float, float, bool]] = [
        ("min_words", s["n_words"], float(config.min_words), False),
        (
            "max_placeholder_fraction",
            s["placeholder_fraction"],
            config.max_placeholder_fraction,
            True,
        ),
        (
            "max_boilerplate_fraction",
            s["boilerplate_fraction"],
            config.max_boilerplate_fraction,
            True,
        ),
        ("max_keyword_stuffing", s["keyword_stuffing"], config.max_keyword_stuffing, True),
    ]
    if s["n_words"] and s["spaceless_fraction"] < 0.5:
        checks.append(
            ("min_mean_word_length", s["mean_word_length"], config.min_mean_word_length, False)
        )
        checks.append(
            ("max_mean_word_length", s["mean_word_length"], config.max_mean_word_length, True)
        )
    checks.append(("max_symbol_ratio", s["symbol_ratio"], config.max_symbol_ratio, True))
    checks.append(
        (
            "max_hex_letter_fraction",
            s["hex_letter_fraction"],
            config.max_hex_letter_fraction,
            True,
        )
    )
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
