"""Tests of services.preprocess.language."""

from __future__ import annotations

import random

import pytest

from services.preprocess.language import LanguageGuess, allowed, identify

PARAGRAPHS = {
    "en": "The committee met on Tuesday to review the budget for next year. Most members "
    "agreed that the library needs a new roof before winter, but nobody knew where the "
    "money would come from.",
    "de": "Der Ausschuss traf sich am Dienstag, um den Haushalt für das nächste Jahr zu "
    "prüfen. Die meisten Mitglieder waren sich einig, dass die Bibliothek vor dem Winter "
    "ein neues Dach braucht, aber niemand wusste, woher das Geld kommen sollte.",
    "fr": "Le comité s'est réuni mardi pour examiner le budget de l'année prochaine. La "
    "plupart des membres ont convenu que la bibliothèque avait besoin d'un nouveau toit "
    "avant l'hiver, mais personne ne savait d'où viendrait l'argent.",
    "es": "El comité se reunió el martes para revisar el presupuesto del próximo año. La "
    "mayoría de los miembros estuvo de acuerdo en que la biblioteca necesita un techo nuevo "
    "antes del invierno, pero nadie sabía de dónde saldría el dinero.",
}


@pytest.mark.parametrize(("code", "text"), sorted(PARAGRAPHS.items()))
def test_identifies_short_paragraphs(code: str, text: str) -> None:
    guess = identify(text)
    assert guess.code == code
    assert 0.5 < guess.confidence <= 1.0


@pytest.mark.parametrize("text", ["", "Hello", "OK, thanks!", "12345 678 90 -- ## !!", "a b c"])
def test_tiny_text_is_undetermined(text: str) -> None:
    assert identify(text) == LanguageGuess("und", 0.0)


def test_only_the_head_is_read() -> None:
    # A German head decides, whatever follows after the sample window.
    text = PARAGRAPHS["de"] * 10 + PARAGRAPHS["en"] * 50
    assert identify(text).code == "de"


def test_codes_are_iso639_1_or_und() -> None:
    for text in [*PARAGRAPHS.values(), "x = 1; y = 2; z = x + y; print(z) # " * 5]:
        code = identify(text).code
        assert code == "und" or len(code) == 2


def test_allowed_semantics() -> None:
    de = LanguageGuess("de", 0.9)
    en_only = frozenset({"en"})
    assert allowed(de, None, 0.5)  # no allow-list: everything is allowed
    assert not allowed(de, en_only, 0.5)
    assert allowed(de, frozenset({"en", "de"}), 0.5)
    assert allowed(LanguageGuess("de", 0.3), en_only, 0.5)  # low confidence counts as und
    assert allowed(LanguageGuess("und", 0.0), en_only, 0.5)  # unknown is always allowed
    assert allowed(LanguageGuess("und", 0.99), en_only, 0.5)
    assert not allowed(LanguageGuess("de", 0.5), en_only, 0.5)  # at the threshold: trusted


def test_the_vectorised_walk_finds_what_py3langid_finds() -> None:
    # The numpy walk of the byte automaton must give py3langid's feature counts, in the
    # same (first appearance) order, for any bytes: the scores' rounding depends on it.
    from py3langid.langid import visit_counts

    from services.preprocess.language import _identifier

    model = _identifier()
    rng = random.Random(5)
    samples = [text.encode() for text in PARAGRAPHS.values()] + [b"", b"a", b"\xff" * 9]
    samples += [bytes(rng.randrange(256) for _ in range(rng.randrange(700))) for _ in range(200)]
    samples += [
        bytes(rng.choice(b"etaoin shrdlu\xc3\xa9\xe2\x80\x9c") for _ in range(rng.randrange(700)))
        for _ in range(200)
    ]
    for sample in samples:
        expected = visit_counts(model.tk_nextmove, model._rowbase, model.tk_output, sample)
        found = model.features(sample)
        if expected is None:
            assert found is None
            continue
        index, counts = found
        assert index.tolist() == list(expected)
        assert counts.tolist() == [float(c) for c in expected.values()]
