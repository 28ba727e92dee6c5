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
_ANY_LOOKALIKE = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(LOOKALIKES)) + "]")
_LATIN_OR_LOOKALIKE = re.compile("(?:[A-Za-z]|" + _ANY_LOOKALIKE.pattern + ")+")
_ASCII_LETTERS = str.maketrans("", "", string.ascii_letters)


def _latin_document(text: str) -> bool:
    """Whether Latin letters (and look-alikes) outnumber twice the other non-ASCII
    characters."""
    latin = len(text) - len(text.translate(_ASCII_LETTERS))
    lookalikes = len(_ANY_LOOKALIKE.findall(text))
    other = len(text) - len(text.encode("ascii", "ignore")) - lookalikes
    return latin + lookalikes >= 2 * other


def _symbol_letter(char: str) -> bool:
    """A small Greek letter that a reader tells from a Latin one (plain or mathematical):
    writers use them alone as symbols (α, ν, ρ). A capital alpha or a small omicron looks
    exactly like "A" or "o"; nobody writes one for a symbol."""
    code = ord(char)
    greek = 0x370 <= code <= 0x3FF or 0x1F00 <= code <= 0x1FFF or 0x1D6A8 <= code <= 0x1D7CB
    return greek and char.islower() and unicodedata.name(char, "").find("OMICRON") < 0


def fold_disguised_letters(text: str) -> str:
    """`text` with every look-alike letter in a Latin-script word of a Latin-script
    document replaced by the Latin letter it imitates (see the module docstring)."""
    if text.isascii() or _ANY_LOOKALIKE.search(text) is None or not _latin_document(text):
        return text

    def fold(match: re.Match) -> str:
        word = match.group()
        end = match.end()
        # A run that continues with a letter of another script is part of a real word.
        if end < len(text) and text[end].isalpha():
            return word
        start = match.start()
        if start > 0 and text[start - 1].isalpha():
            return word
        if len(word) == 1 and _symbol_letter(word):
            return word  # a lone Greek letter is a symbol ("the angle α"), not a disguise
        return word.translate(LOOKALIKES)

    return _LATIN_OR_LOOKALIKE.sub(fold, text)
