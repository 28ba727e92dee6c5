"""Letters disguised as Latin ones are folded back in normalisation
(services/preprocess/disguise.py), and nothing else is."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.preprocess.disguise import LOOKALIKES, fold_disguised_letters
from services.preprocess.genres import clean_documents
from services.preprocess.normalize import normalize
from services.preprocess.tokens import count_tokens
from tests.support.attacks import disguise_characters

ORIGINALS = [d for d in clean_documents()["legal"] if len(d.split()) > 100][:8]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), which=st.integers(0, len(ORIGINALS) - 1))
def test_a_copy_in_disguise_normalises_to_the_original(seed, which):
    original = normalize(ORIGINALS[which])
    kinds = ("confusables", "zero_width")
    disguised = disguise_characters(original, random.Random(seed), kinds)
    assert normalize(disguised) == original
    assert count_tokens(normalize(disguised)) == count_tokens(original)


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Th\u0435 qu\u0456ck br\u043ewn f\u043e\u0445", "The quick brown fox"),
        ("\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45 and \U0001d41e\U0001d431", "example and ex"),
        ("\u0391\u0392\u0395 test", "ABE test"),  # Greek capitals that look Latin
        ("\u0399t is \u0399", "It is I"),  # capital iota reads as I, not as l
        ("an \u0430pple, \u0430 pear", "an apple, a pear"),  # a lone Cyrillic a too
    ],
)
def test_look_alikes_in_latin_words_are_folded(text, folded):
    assert fold_disguised_letters(text) == folded


@pytest.mark.parametrize(
    "text",
    [
        "Let the angle \u03b1 be small and \u03bd the frequency.",  # Greek letters as symbols
        "From \u041c\u043e\u0441\u043a\u0432\u0430 to \u03bb\u03cc\u03b3\u03bf\u03c2 and back.",
        (
            "\u042d\u0442\u043e \u0441\u043e\u0440 \u0438 \u0422\u041e\u0420 "
            "\u0432 \u0442\u0435\u043a\u0441\u0442\u0435."
        ),
        "caf\u00e9, na\u00efve, \u0142\u00f3d\u017a, stra\u00dfe",  # Latin letters of their own
        "10 \u03bcm and 5 \u00b5s",  # the micro sign and mu are units
        "plain ASCII text",
    ],
)
def test_real_words_of_other_scripts_and_symbols_are_kept(text):
    assert fold_disguised_letters(text) == text


def test_a_document_in_another_script_keeps_its_look_alike_only_words():
    # "In the text the words sor (litter) and reka (river) near the house.": two words made
    # only of letters that look Latin, in a document written in Cyrillic.
    russian = (
        "\u0412 \u0442\u0435\u043a\u0441\u0442\u0435 \u0441\u043b\u043e\u0432\u043e "
        "\u0441\u043e\u0440 \u0438 \u0440\u0435\u043a\u0430 "
        "\u0432\u043e\u0437\u043b\u0435 \u0434\u043e\u043c\u0430. "
    ) * 5
    assert fold_disguised_letters(russian) == russian


def test_the_table_comes_from_unicode_data_and_maps_to_ascii_letters():
    assert len(LOOKALIKES) > 1000
    assert all(len(v) == 1 and v.isascii() and v.isalpha() for v in LOOKALIKES.values())
    assert LOOKALIKES[0x0430] == "a" and LOOKALIKES[0x03BF] == "o" and LOOKALIKES[0xFF45] == "e"


@settings(max_examples=200, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(
            "ab cAB.\u0430\u0435\u043e\u03b1\u03bf\u0391\uff45\u041c\u03bb\u00e9"
        ),
        max_size=60,
    )
)
def test_folding_is_idempotent(text):
    once = fold_disguised_letters(text)
    assert fold_disguised_letters(once) == once


def test_no_look_alike_is_in_windows_1252_so_the_fast_path_is_sound():
    """fold_disguised_letters returns a text that encodes to cp1252 as it is."""
    for code in LOOKALIKES:
        with pytest.raises(UnicodeEncodeError):
            chr(code).encode("cp1252")
