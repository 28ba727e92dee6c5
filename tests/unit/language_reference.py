"""Previous implementation kept as differential-test oracle.

A verbatim copy of ``services.preprocess.language``'s one-document ``identify`` path (the numpy
byte-automaton walk over one sample, py3langid's ``classify`` for the scoring) as it was before
the batch API. ``tests/unit/test_language_batch.py`` checks that ``identify_batch`` and
``identify`` give the same codes and confidences as this on many texts. It loads its own copy
of the model; from the module it checks it takes only what the batch API left unchanged (the
sample size, the letter rule, the label map, the automaton's depth, the result type).
"""

from __future__ import annotations

import functools

import numpy as np

# Unchanged by the batch API, so shared: the sample size, the letter rule, the label map and
# the automaton's depth (test_language_batch.py checks the walks against py3langid's own).
from services.preprocess.language import (
    _ENOUGH_LETTERS,
    _TO_ISO639_1,
    SAMPLE_CHARS,
    UNDETERMINED,
    LanguageGuess,
    _dfa_depth,
)

__all__ = ["identify"]


@functools.cache
def _identifier():  # -> _VectorIdentifier (a py3langid LanguageIdentifier)
    """The model with the previous implementation's walk (see language._identifier)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    class _VectorIdentifier(LanguageIdentifier):
        """py3langid with its byte-automaton walk done in numpy instead of a Python loop.

        The automaton's state after byte i depends only on the last ``depth`` bytes (its
        states stand for n-grams of at most ``depth`` bytes), so every position's state is
        ``depth`` vectorised steps from the start state over its own window. The features
        are then counted in order of first appearance, as py3langid's ``Counter`` does, so
        the scores (a float32 dot product, whose rounding depends on the order) are the
        same bits. ``tests/unit/test_language.py`` compares the two walks.

        The feature weights are widened from float16 to float32 once (28 MB more per
        process): numpy casts the gathered rows to float32 before the product anyway, and
        that cast was most of the scoring time.
        """

        __slots__ = ("_depth", "_nextmove_np", "_output_np", "_rowbase_np")

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.nb_ptc = np.ascontiguousarray(self.nb_ptc, dtype=np.float32)
            self._full_model = (self.nb_ptc, self.nb_pc, self.nb_classes)
            self._nextmove_np = np.frombuffer(self.tk_nextmove, dtype=np.uint32)
            self._rowbase_np = np.asarray(self._rowbase, dtype=np.int64)
            self._output_np = np.asarray(self.tk_output, dtype=np.int64)
            self._depth = _dfa_depth(self._nextmove_np, self._rowbase_np)

        def _raw_score(self, text: bytes):
            features = self.features(text)
            if features is None:
                return super()._raw_score(b"")  # py3langid's value for featureless text
            index, counts = features
            return np.log1p(counts) @ self.nb_ptc[index] + self.nb_pc

        def features(self, text: bytes) -> tuple[np.ndarray, np.ndarray] | None:
            """(feature index, count as float32) in order of first appearance, or None."""
            data = np.frombuffer(text, dtype=np.uint8).astype(np.int64)
            n = len(data)
            states = np.zeros(n, dtype=np.int64)
            for back in range(min(self._depth, n) - 1, -1, -1):
                # Positions i >= back read byte i - back; earlier ones have not started yet.
                current = states[back:]
                states[back:] = self._nextmove_np[self._rowbase_np[current] + data[: n - back]]
            found = self._output_np[states]
            found = found[found >= 0]
            if not len(found):
                return None
            values, first, counts = np.unique(found, return_index=True, return_counts=True)
            order = np.argsort(first, kind="stable")
            return values[order].astype(np.intp), counts[order].astype(np.float32)

    return _VectorIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify(text: str) -> LanguageGuess:
    """Guess the language of ``text`` from its first ~600 characters.

    Texts with fewer than 20 letters in that sample are ``LanguageGuess("und", 0.0)``. Model
    labels without an ISO 639-1 code are mapped to their macrolanguage where one exists, else to
    ``"und"`` with the model's confidence.
    """
    sample = text[:SAMPLE_CHARS]
    if _ENOUGH_LETTERS.match(sample) is None:
        return LanguageGuess(UNDETERMINED, 0.0)
    label, score = _identifier().classify(sample)
    confidence = min(1.0, max(0.0, float(score)))
    code = _TO_ISO639_1.get(label, label)
    if len(code) != 2:
        code = UNDETERMINED
    return LanguageGuess(code, confidence)
