"""Tests of services.preprocess.normalize."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.preprocess import genres
from services.preprocess.normalize import _normalize_in_python, normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a\r\nb\rc\n", "a\nb\nc"),  # CRLF and CR become LF
        ("e\u0301te\u0301", "été"),  # NFC composes
        ("a\x00b\x07c\x7fd\x9fe", "abcde"),  # Cc removed
        ("keep\ttab\nand\nnewline", "keep tab\nand\nnewline"),
        ("page\x0cbreak", "page\nbreak"),  # line-breaking controls become newlines
        ("line\u2028sep", "line\nsep"),
        ("zero\u200bwidth\u200c\u200d\u2060\ufeffX", "zerowidthX"),
        ("soft\u00adhyphen", "softhyphen"),
        ("no\u00a0break\u2009thin\u3000ideo", "no break thin ideo"),  # Zs become spaces
        ("many     spaces  here", "many spaces here"),
        ("trailing   \nspaces \t", "trailing\nspaces"),
        ("a\n\n\n\n\nb", "a\n\nb"),
        ("a\n \n \n \nb", "a\n\nb"),  # whitespace-only lines count as blank
        ("\n\n  \n  hello world  \n\n", "  hello world"),
        ("", ""),
        (" \t\r\n ", ""),
    ],
)
def test_transformations(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_code_indentation_is_kept_internal_runs_collapse() -> None:
    code = "def f(x):\n    if x:\n        return x  # note\n\treturn 0\n"
    assert normalize(code) == "def f(x):\n    if x:\n        return x # note\n return 0"


def test_first_line_indentation_is_kept() -> None:
    assert normalize("\n\n    indented first line\n    second") == (
        "    indented first line\n    second"
    )


def test_combining_mark_after_removed_zero_width_composes_in_one_pass() -> None:
    once = normalize("e\u200b\u0301")
    assert once == "é"
    assert normalize(once) == once


def test_every_space_separator_is_in_the_bmp() -> None:
    # normalize builds its table from the BMP only; this guards that assumption.
    astral_zs = [
        cp for cp in range(0x10000, sys.maxunicode + 1) if unicodedata.category(chr(cp)) == "Zs"
    ]
    assert astral_zs == []


_ALPHABET = st.sampled_from(
    list("ab é\u0301\t\n\r\x00\x0c\x85\u00a0\u2000\u200b\u00ad\ufeff\u2028 xy\u3000#{}")
)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=60) | st.text(max_size=60))
def test_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_output_invariants(text: str) -> None:
    out = normalize(text)
    assert "\r" not in out and "\t" not in out and "\n\n\n" not in out
    assert not out.endswith((" ", "\n")) and not out.startswith("\n")
    assert all(unicodedata.category(c) != "Cc" or c == "\n" for c in out)
    assert unicodedata.is_normalized("NFC", out)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab \n", max_size=40))
def test_internal_run_pattern_is_the_lookbehind_definition(text: str) -> None:
    import re

    from services.preprocess.normalize import _INTERNAL_RUN

    assert _INTERNAL_RUN.sub(" ", text) == re.sub(r"(?<=[^ \n]) {2,}", " ", text)


# --- the native steps against the definition ------------------------------------------------

_SPACING = st.sampled_from(list("ab \n\r\t\u00a0\u2000\u200b\u0301e\u2028\x0b\x1f"))


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=_SPACING, max_size=40) | st.text(alphabet=_ALPHABET, max_size=60))
def test_native_steps_equal_the_definition(text: str) -> None:
    assert normalize(text) == _normalize_in_python(text)


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=80))
def test_native_steps_equal_the_definition_on_any_text(text: str) -> None:
    # Lone surrogates included: those take the definition's own path.
    assert normalize(text) == _normalize_in_python(text)


def test_native_steps_equal_the_definition_on_every_character_and_every_genre() -> None:
    every = "".join(chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF)
    for start in range(0, len(every), 4096):  # in pieces: NFC reorders marks across a piece
        piece = every[start : start + 4096]
        assert normalize(piece) == _normalize_in_python(piece), hex(start)
        spaced = " ".join(piece) + "  \n\n\n  x "
        assert normalize(spaced) == _normalize_in_python(spaced), hex(start)
    documents = [text for texts in genres.clean_documents().values() for text in texts]
    documents += [text for _, text in genres.low_quality_documents()]
    for text in documents:
        for variant in (text, text.replace("\n", "\r\n"), text.replace(" ", "  \t")):
            assert normalize(variant) == _normalize_in_python(variant)


def test_unchanged_text_is_returned_as_is() -> None:
    text = "Already normal.\n\n  Indented line."
    assert normalize(text) is text
