"""The native part of the pipeline (`native/textcore`, a Rust extension built by `make venv`)
and the table of character flags it reads.

The Rust code decides nothing about Unicode on its own: every property it needs of a
character (a word character for quality.py or for fingerprints.py, a spaceless script,
layout, whitespace, the class of the ratio signals) comes from this table, built once per
process from Python's own ``re`` and ``unicodedata``, so the native and the Python
definitions agree on every code point of the running Unicode version. The unit tests check
the table against the definitions and the native results against the Python reference.
"""

from __future__ import annotations

import functools
import re
import unicodedata

import numpy as np
import tt_textcore

__all__ = ["char_table", "code_points", "native", "pattern_mask", "without_surrogates"]

CODE_POINTS = 0x110000
QUALITY_WORD, SHINGLE_WORD, SPACELESS, LAYOUT, SPACE = 1, 2, 4, 8, 16
CLASS_SHIFT = 5

# The character classes of the ratio signals (quality.py's _char_class, by category).
IGNORED, LETTER, DIGIT, PUNCT, SYMBOL = range(5)


def _class_of_category(category: str) -> int:
    major = category[0]
    if major in "LM":
        return LETTER
    if major == "N":
        return DIGIT
    if major == "S" or category in ("Pc", "Co", "Cn", "Cs"):
        return SYMBOL
    if major == "P":
        return PUNCT
    return IGNORED


# quality.py's exceptions to the by-category rule: table borders are punctuation, and some
# ASCII punctuation marks are symbols.
_CLASS_OVERRIDES = {"|": PUNCT, "_": PUNCT, **dict.fromkeys("#%&*/@\\", SYMBOL)}


_SURROGATE = re.compile("[\ud800-\udfff]")


def without_surrogates(text: str) -> str:
    """``text`` with lone surrogates (which no decoded upload holds, and which the native
    code cannot take as UTF-8) replaced by U+FFFD, a character of the same classes."""
    return _SURROGATE.sub("\ufffd", text)


def code_points() -> str:
    """Every code point, in order (lone surrogates included): what the per-code-point
    tables are computed from."""
    return np.arange(CODE_POINTS, dtype="<u4").tobytes().decode("utf-32-le", "surrogatepass")


def pattern_mask(pattern: str, every: str) -> np.ndarray:
    """Per code point, whether ``pattern`` matches it (``every`` is `code_points()`)."""
    mask = np.zeros(CODE_POINTS, dtype=bool)
    mask[[m.start() for m in re.finditer(pattern, every)]] = True
    return mask


# Planes 4-13 hold no assigned character (category Cn); the unit tests compare the whole
# table with unicodedata, so a Unicode version that assigns one there fails them.
_UNASSIGNED_PLANES = range(0x40000, 0xE0000)


def _classes(every: str) -> np.ndarray:
    """The ratio-signal class of every code point, from its general category."""
    classes = np.full(CODE_POINTS, SYMBOL, dtype=np.uint8)  # Cn is a symbol
    for start, stop in ((0, _UNASSIGNED_PLANES.start), (_UNASSIGNED_PLANES.stop, CODE_POINTS)):
        # Each category is two ASCII letters: read them as one 16-bit code.
        codes = np.frombuffer(
            "".join(map(unicodedata.category, every[start:stop])).encode("ascii"), dtype="<u2"
        )
        lookup = np.zeros(0x10000, dtype=np.uint8)
        for code in np.unique(codes).tolist():
            lookup[code] = _class_of_category(code.to_bytes(2, "little").decode("ascii"))
        classes[start:stop] = lookup[codes]
    for ch, cls in _CLASS_OVERRIDES.items():
        classes[ord(ch)] = cls
    return classes


@functools.cache
def char_table(quality_word: str, spaceless: str) -> bytes:
    """The flags of every code point (see native/textcore/src/lib.rs). ``quality_word`` and
    ``spaceless`` are quality.py's character-class patterns. About 0.2 s, once per process."""
    every = code_points()
    word = pattern_mask(r"\w", every)
    space = pattern_mask(r"\s", every)  # str.isspace(), what str.strip() removes
    flags = np.zeros(CODE_POINTS, dtype=np.uint8)
    flags[pattern_mask(quality_word, every)] |= QUALITY_WORD
    flags[ord("_")] &= ~np.uint8(QUALITY_WORD)  # quality.py reads "_" as a space
    flags[word] |= SHINGLE_WORD
    flags[pattern_mask(spaceless, every)] |= SPACELESS
    flags[~(word | space)] |= LAYOUT  # [^\w\s]
    flags[space] |= SPACE
    flags |= _classes(every) << CLASS_SHIFT
    return flags.tobytes()


# In the lower-case table: the character needs Python's own str.lower() (its lower case is
# two characters, or depends on its neighbours).
NEEDS_PYTHON = 0xFFFFFFFF
_CAPITAL_SIGMA = 0x3A3  # lower-cases to a final or a medial sigma, by its neighbours
_DOTTED_CAPITAL_I = 0x130  # lower-cases to "i" and a combining dot above


@functools.cache
def lower_table() -> bytes:
    """Per code point, ``str.lower()`` of it as a little-endian u32, or NEEDS_PYTHON.

    Lower-casing the string of every code point at once gives each one's lower case in
    order, as only the capital sigma depends on its neighbours (CPython's final-sigma
    rule), and only U+0130 becomes two characters; a Unicode version that adds another
    such character stops here (and the unit tests compare every code point)."""
    every = code_points()
    low = every.lower()
    dotted = _DOTTED_CAPITAL_I
    if len(low) != CODE_POINTS + 1 or low[dotted : dotted + 2] != "i\u0307":
        raise RuntimeError("this Unicode version lower-cases a new character to several")
    low = low[: dotted + 1] + low[dotted + 2 :]
    table = np.frombuffer(low.encode("utf-32-le", "surrogatepass"), dtype="<u4").copy()
    table[[dotted, _CAPITAL_SIGMA]] = NEEDS_PYTHON
    return table.tobytes()


@functools.cache
def native():
    """The extension module, with this process's character and lower-case tables."""
    from services.preprocess import quality  # the patterns live with their definitions

    tt_textcore.set_char_table(char_table(quality.WORD_CLASS, quality.SPACELESS_CLASS))
    tt_textcore.set_lower_table(lower_table())
    return tt_textcore
