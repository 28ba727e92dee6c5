"""Language identification of contributed documents (py3langid, model shipped in the wheel).

The decision this module supports is "is this document in a language the buyer asked for?".
A wrong "no" removes a contributor's money, so uncertainty always resolves to "allowed":
short texts and low-confidence guesses are reported as ``"und"`` (undetermined) or are let
through by :func:`allowed`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

__all__ = ["LanguageGuess", "allowed", "identify"]

# Only the head of a document is classified: about a hundred words identify a language as well
# as a whole book does, and the cost of the model is linear in the input length (it was a
# quarter of the pipeline's time at 2000 characters; `make bench` measures it).
SAMPLE_CHARS = 600
# Below this many letters the classifier is close to guessing (a name, a number, a title).
MIN_LETTERS = 20

UNDETERMINED = "und"

# py3langid labels that are not ISO 639-1 codes but belong to a macrolanguage that has one.
# Anything else without a two-letter code (e.g. "zxx" = no linguistic content, "grc" = Ancient
# Greek) is reported as "und": the contract of LanguageGuess.code is ISO 639-1 or "und".
_TO_ISO639_1 = {
    "arz": "ar",  # Egyptian Arabic
    "ary": "ar",  # Moroccan Arabic
    "uzs": "uz",  # Southern Uzbek
    "gug": "gn",  # Paraguayan Guarani
    "fuv": "ff",  # Nigerian Fulfulde
    "sdh": "ku",  # Southern Kurdish
    "yue": "zh",  # Cantonese
    "wuu": "zh",  # Wu Chinese
}

# Letters in any script: word characters that are neither digits nor underscore.
_LETTER = re.compile(r"[^\W\d_]")


@dataclass(frozen=True)
class LanguageGuess:
    """The language of a document: ISO 639-1 ``code`` (or ``"und"``) and ``confidence`` 0..1."""

    code: str
    confidence: float


@functools.cache
def _identifier():  # -> py3langid.langid.LanguageIdentifier
    """Load the py3langid model once per process (about 0.5 s), on first use.

    ``functools.cache`` is the lazy module-level cache: importing this module stays cheap, and
    every later call reuses the same read-only model. ``norm_probs=True`` makes the scores
    probabilities, so the confidence can be compared with a threshold.
    """
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify(text: str) -> LanguageGuess:
    """Guess the language of ``text`` from its first ~600 characters.

    Texts with fewer than 20 letters in that sample are ``LanguageGuess("und", 0.0)``. Model
    labels without an ISO 639-1 code are mapped to their macrolanguage where one exists, else to
    ``"und"`` with the model's confidence.
    """
    sample = text[:SAMPLE_CHARS]
    if len(_LETTER.findall(sample)) < MIN_LETTERS:
        return LanguageGuess(UNDETERMINED, 0.0)
    label, score = _identifier().classify(sample)
    confidence = min(1.0, max(0.0, float(score)))
    code = _TO_ISO639_1.get(label, label)
    if len(code) != 2:
        code = UNDETERMINED
    return LanguageGuess(code, confidence)


def allowed(guess: LanguageGuess, allow_list: frozenset[str] | None, min_confidence: float) -> bool:
    """Whether a document with this language guess may be kept.

    ``allow_list=None`` allows every language. A guess below ``min_confidence`` counts as
    ``"und"``, and ``"und"`` is always allowed: not knowing the language is no evidence that it
    is the wrong one, and removing a document on a guess takes money from its contributor.
    """
    if allow_list is None:
        return True
    if guess.code == UNDETERMINED or guess.confidence < min_confidence:
        return True
    return guess.code in allow_list
