"""Text normalisation applied to every contributed document before any filter or token count.

The goal is to remove invisible differences (line-ending style, control bytes, exotic spaces,
zero-width marks, composed vs decomposed accents) without touching anything a reader would see
as content. In particular leading indentation is *kept*: technical manuals contain code where
indentation is meaning (Python), and poetry uses indentation as layout. Only runs of spaces
*inside* a line are collapsed, and trailing spaces are removed.

Everything here is pure and idempotent: ``normalize(normalize(x)) == normalize(x)``.

Performance: steps 1-2 and 4-6 run in native code (``tt_textcore.normalize_characters``
and ``normalize_spaces``, native/textcore/src/normalize.rs: one pass each, and no new
string when nothing changes); NFC stays with Python's ``unicodedata``. ``_normalize_in_python``
is the same function written with ``str.translate`` and the regular expressions below: the
definition the unit tests compare the native steps with, and the path for text with lone
surrogates (which no decoded upload holds, and which the native code cannot read).
"""

from __future__ import annotations

import re
import unicodedata

import tt_textcore

from services.preprocess.disguise import fold_disguised_letters

__all__ = ["normalize"]

# Zero-width characters and the soft hyphen are invisible; they only split words for a
# tokenizer (and for duplicate detection), so they are deleted.
_INVISIBLE = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad")

# Control characters that are line breaks in their own right (str.splitlines treats them so).
# Deleting them would glue the words on both sides together ("end\x0cStart"), so they become
# "\n" instead. U+2028/U+2029 (categories Zl/Zp) are the Unicode line/paragraph separators.
_LINE_BREAKS = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


def _build_table() -> dict[int, str | None]:
    """Build the single str.translate table (built once at import; it is never mutated)."""
    table: dict[int, str | None] = {}
    # Category Cc is exactly U+0000..U+001F and U+007F..U+009F (fixed by the Unicode standard).
    for cp in [*range(0x00, 0x20), *range(0x7F, 0xA0)]:
        table[cp] = None
    for ch in _LINE_BREAKS:
        table[ord(ch)] = "\n"
    table[ord("\n")] = "\n"
    table[ord("\t")] = " "  # a tab is one space; indentation made of tabs stays indentation
    for ch in _INVISIBLE:
        table[ord(ch)] = None
    # Every space separator (Zs) lives in the BMP (checked by a unit test over all code points),
    # so scanning 0..0xFFFF is complete and costs a few milliseconds once.
    for cp in range(0x10000):
        if unicodedata.category(chr(cp)) == "Zs" and cp != 0x20:
            table[cp] = " "
    # "\n" -> "\n" and " " mappings are identities; drop them to keep translate cheap.
    return {k: v for k, v in table.items() if not (v is not None and v == chr(k))}


_TABLE = _build_table()
# The same table for the native step: per BMP code point 0 keep, 1 delete, 2 "\n", 3 " ".
_NATIVE_TABLE = bytes(
    0 if cp not in _TABLE else {None: 1, "\n": 2, " ": 3}[_TABLE[cp]] for cp in range(0x10000)
)
# Characters that the table changes; used to skip translate() entirely for clean text.
_NEEDS_TRANSLATE = re.compile("[" + "".join(re.escape(chr(cp)) for cp in sorted(_TABLE)) + "]")

_TRAILING_SPACES = re.compile(r" +(?=\n|\Z)")
# A run of 2+ spaces preceded by a visible character on the same line: internal spacing.
# Runs at the start of a line (indentation) have no such predecessor and are left alone.
# (Written to open with the two spaces, so the regex engine skips ahead to them.)
_INTERNAL_RUN = re.compile(r"  (?<=[^ \n]  ) *")
_MANY_NEWLINES = re.compile(r"\n{3,}")


def normalize(text: str) -> str:
    """Return the canonical form of ``text`` used for filtering and token counting.

    Steps, in order (the order matters for idempotence):

    1. ``\\r\\n`` and lone ``\\r`` become ``\\n``.
    2. One ``str.translate`` pass: control characters (Cc) other than ``\\n``/``\\t`` are
       removed, except line-breaking controls (VT, FF, NEL, FS/GS/RS) and U+2028/U+2029, which
       become ``\\n``; zero-width characters (U+200B..U+200D, U+2060, U+FEFF) and the soft
       hyphen are removed; tabs and every other space separator (Zs, e.g. NBSP) become a space.
    3. Unicode NFC. It runs after the deletions so that a combining mark that followed a
       deleted zero-width character composes with its base now, not on a second call.
    4. Spaces at line ends are removed; runs of spaces inside a line become one space; leading
       indentation is kept as is (code and verse depend on it).
    5. Three or more consecutive newlines become two (one blank line at most).
    6. Leading blank lines and trailing whitespace of the whole text are removed. Spaces that
       indent the first line are kept, for the same reason as in step 4.
    7. Letters disguised as Latin ones (Cyrillic "\u0430", fullwidth "\uff45", ...) in Latin-script
       words of a Latin-script document become the Latin letters they imitate
       (services/preprocess/disguise.py): a copy in disguise reads, counts and
       fingerprints as the text it copies.
    """
    try:
        text = tt_textcore.normalize_characters(text, _NATIVE_TABLE)
        if not text.isascii() and not unicodedata.is_normalized("NFC", text):
            # NFC can, in principle, map a character onto one the table handles (e.g. U+2000
            # EN QUAD decomposes to U+2002 EN SPACE); a second pass keeps it idempotent.
            text = tt_textcore.normalize_characters(
                unicodedata.normalize("NFC", text), _NATIVE_TABLE
            )
        return fold_disguised_letters(tt_textcore.normalize_spaces(text))
    except UnicodeEncodeError:  # a lone surrogate
        return _normalize_in_python(text)


def _normalize_in_python(text: str) -> str:
    """`normalize` written with ``str.translate`` and regular expressions (the definition)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _NEEDS_TRANSLATE.search(text) is not None:
        text = text.translate(_TABLE)
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
        # NFC can, in principle, map a character onto one the table handles (e.g. U+2000 EN
        # QUAD decomposes to U+2002 EN SPACE); a second pass keeps the function idempotent.
        if _NEEDS_TRANSLATE.search(text) is not None:
            text = text.translate(_TABLE)
    # Each substitution runs only if its pattern can match (a substring test is far cheaper
    # than a regex pass, and most documents need none of them).
    if " \n" in text or text.endswith(" "):
        text = _TRAILING_SPACES.sub("", text)
    if "  " in text:
        text = _INTERNAL_RUN.sub(" ", text)
    if "\n\n\n" in text:
        text = _MANY_NEWLINES.sub("\n\n", text)
    return fold_disguised_letters(text.lstrip("\n").rstrip(" \n"))
