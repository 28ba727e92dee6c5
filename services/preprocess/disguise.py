"""Letters disguised as Latin ones are folded back (a step of normalisation).

A contributor paid by accepted tokens can copy another's English text and swap some
letters for look-alikes from other scripts: Cyrillic "а" for "a", Greek "Ο" for "O",
fullwidth "ｅ", mathematical "𝐞". A reader sees the same text; a tokenizer counts up to
several times the tokens, and duplicate detection sees other words. So, in a document
written in the Latin script, a word made only of Latin letters and such look-alikes is
rewritten with the Latin letters they imitate.

What counts as a look-alike: a letter outside the Latin script that Unicode's confusables
data (UTS #39, through the `confusable-homoglyphs` package) lists as confusable with one
Latin letter, and the compatibility forms of Latin letters (fullwidth, mathematical,
circled, ...) whose NFKC form is one ASCII letter.

What is never changed:
- a word with any letter that is not Latin and not a look-alike (Greek "λόγος", Russian
  "Москва" keep every letter: a real word of another script always has some);
- text in a document that is not written in the Latin script (fewer Latin letters and
  look-alikes than twice its other non-ASCII characters): Russian or Greek prose with a
  few look-alike-only words ("сор", "ТОР") is left as written;
- a word that is one small Greek letter other than omicron (a symbol: "the angle α");
- digits, punctuation, spacing.

Pure and idempotent: after folding, a word holds only Latin letters, which fold to
themselves.
"""

# ruff: noqa: RUF002, RUF003 (this module is about letters that look alike; it shows some)
from __future__ import annotations

import json
import re
import string
import unicodedata
from importlib import resources

__all__ = ["LOOKALIKES", "fold_disguised_letters"]

# Blocks of Latin compatibility forms: letterlike symbols, circled letters, fullwidth forms,
# mathematical alphanumerics, enclosed and squared letters.
_COMPATIBILITY_BLOCKS = (
    (0x2100, 0x214F),
    (0x2460, 0x24FF),
    (0xFF00, 0xFFEF),
    (0x1D400, 0x1D7FF),
    (0x1F100, 0x1F1FF),
)


def _lookalikes() -> dict[int, str]:
    """Code point -> the ASCII letter it imitates."""
    table: dict[int, str] = {}
    data = json.loads(
        resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text()
    )
    for char, homoglyphs in data.items():
        if len(char) != 1 or char.isascii() or not char.isalpha():
            continue
        if unicodedata.name(char, "").startswith("LATIN"):
            continue  # Latin letters with marks are letters of their own (é, ł)
        latin = {h["c"] for h in homoglyphs if len(h["c"]) == 1 and h["c"] in string.ascii_letters}
        if len(latin) > 1 and char.isupper() != char.islower():
            # Greek capital iota looks like both "I" and "l": the letter of the same case.
            latin = {c for c in latin if c.isupper() == char.isupper()}
        if latin == {"l"} and char.isupper():
            latin = {"I"}  # capital iota and its kin: UTS #39's prototype of I is "l"
        if len(latin) == 1:
            table[ord(char)] = latin.pop()
    for first, last in _COMPATIBILITY_BLOCKS:
        for code in range(first, last + 1):
            char = chr(code)
            folded = unicodedata.normalize("NFKC", char)
            if len(folded) == 1 and folded in string.ascii_letters:
                table[code] = folded
    return table


LOOKALIKES: dict[int, str] = _lookalikes()
# The look-alikes in the Basic Multilingual Plane, as one character class: re compiles it
# to a bitmap (a search costs ~10 ns a character). Those above it (mathematical letters)
# are looked for only in a text that has such characters at all (one range: fast).
_BMP_LOOKALIKE = re.compile(
    "[" + "".join(re.escape(chr(c)) for c in sorted(LOOKALIKES) if c <= 0xFFFF) + "]"
)
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
# No look-alike is in Windows-1252 (Latin-1 with curly quotes, dashes, the euro sign), so a
# text that encodes to it, as most Western text does, has none: the codec's C loop is the
# cheapest test there is (a regular expression over non-ASCII classes costs ~10x more).
_NO_LOOKALIKE_CODEC = "cp1252"
_ASCII_LETTERS = str.maketrans("", "", string.ascii_letters)


def _lookalike_positions(text: str) -> list[int]:
    positions = [m.start() for m in _BMP_LOOKALIKE.finditer(text)]
    if _ASTRAL.search(text) is not None:
        positions += [i for i, c in enumerate(text) if c > "\uffff" and ord(c) in LOOKALIKES]
        positions.sort()
    return positions


def _latin_document(text: str, lookalikes: int) -> bool:
    """Whether Latin letters (and look-alikes) outnumber twice the other non-ASCII
    characters."""
    latin = len(text) - len(text.translate(_ASCII_LETTERS))
    other = len(text) - len(text.encode("ascii", "ignore")) - lookalikes
    return latin + lookalikes >= 2 * other


def _symbol_letter(char: str) -> bool:
    """A small Greek letter that a reader tells from a Latin one (plain or mathematical):
    writers use them alone as symbols (α, ν, ρ). A capital alpha or a small omicron looks
    exactly like "A" or "o"; nobody writes one for a symbol."""
    code = ord(char)
    greek = 0x370 <= code <= 0x3FF or 0x1F00 <= code <= 0x1FFF or 0x1D6A8 <= code <= 0x1D7CB
    return greek and char.islower() and unicodedata.name(char, "").find("OMICRON") < 0


def _latin_or_lookalike(char: str) -> bool:
    return char in string.ascii_letters or ord(char) in LOOKALIKES


def fold_disguised_letters(text: str) -> str:
    """`text` with every look-alike letter in a Latin-script word of a Latin-script
    document replaced by the Latin letter it imitates (see the module docstring). Only the
    words around look-alikes are looked at: a document without any costs one search."""
    if text.isascii():
        return text
    try:
        text.encode(_NO_LOOKALIKE_CODEC)
        return text
    except UnicodeEncodeError:
        pass
    positions = _lookalike_positions(text)
    if not positions or not _latin_document(text, len(positions)):
        return text
    out: list[str] = []
    done = 0
    for position in positions:
        if position < done:
            continue  # inside a word already handled
        start = position
        while start > 0 and _latin_or_lookalike(text[start - 1]):
            start -= 1
        end = position + 1
        while end < len(text) and _latin_or_lookalike(text[end]):
            end += 1
        word = text[start:end]
        # A run that touches a letter of another script is part of a real word of it; a
        # lone small Greek letter is a symbol ("the angle α"), not a disguise.
        touches = (start > 0 and text[start - 1].isalpha()) or (
            end < len(text) and text[end].isalpha()
        )
        if not touches and not (len(word) == 1 and _symbol_letter(word)):
            out.append(text[done:start])
            out.append(word.translate(LOOKALIKES))
            done = end
    if not out:
        return text
    out.append(text[done:])
    return "".join(out)
