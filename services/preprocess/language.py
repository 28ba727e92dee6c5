"""Language identification of contributed documents (py3langid, model shipped in the wheel).

The decision this module supports is "is this document in a language the buyer asked for?".
A wrong "no" removes a contributor's money, so uncertainty always resolves to "allowed":
short texts and low-confidence guesses are reported as ``"und"`` (undetermined) or are let
through by :func:`allowed`.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from dataclasses import dataclass

import numpy as np

__all__ = ["LanguageGuess", "allowed", "identify", "identify_batch"]

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

# Letters in any script: word characters that are neither digits nor underscore. The pattern
# matches (at the start of a sample) exactly when the sample has at least MIN_LETTERS letters,
# and stops reading at the last one it needs.
_ENOUGH_LETTERS = re.compile(rf"[\W\d_]*(?:[^\W\d_][\W\d_]*){{{MIN_LETTERS}}}")


@dataclass(frozen=True)
class LanguageGuess:
    """The language of a document: ISO 639-1 ``code`` (or ``"und"``) and ``confidence`` 0..1."""

    code: str
    confidence: float


def _dfa_depth(nextmove: np.ndarray, rowbase: np.ndarray) -> int:
    """The depth of py3langid's byte automaton: the longest n-gram it tracks.

    A breadth-first walk from the start state; the level at which no new state appears is
    the length of the longest byte string a state stands for (6 for the shipped model).
    States share rows of the transition table, so each level reads each row once.
    """
    table = nextmove.reshape(-1, 256)
    row_of_state = rowbase >> 8
    seen = np.zeros(len(rowbase), dtype=bool)
    seen[0] = True
    frontier = np.zeros(1, dtype=np.int64)
    depth = 0
    while True:
        rows = np.zeros(len(table), dtype=bool)
        rows[row_of_state[frontier]] = True
        reached = np.zeros(len(rowbase), dtype=bool)
        reached[table[rows].ravel()] = True
        new = np.flatnonzero(reached & ~seen)
        if not len(new):
            return depth
        seen[new] = True
        frontier = new
        depth += 1


@functools.cache
def _identifier():  # -> _VectorIdentifier (a py3langid LanguageIdentifier)
    """Load the py3langid model once per process (about 0.5 s), on first use.

    ``functools.cache`` is the lazy module-level cache: importing this module stays cheap, and
    every later call reuses the same read-only model. ``norm_probs=True`` makes the scores
    probabilities, so the confidence can be compared with a threshold.
    """
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    class _VectorIdentifier(LanguageIdentifier):
        """py3langid scoring many samples at once, with the same float32 results as ``classify``.

        **The walk.** py3langid walks its byte automaton from the start state over a sample and
        counts the feature (n-gram) each reached state outputs. A state stands for at most
        ``depth`` bytes, so the state after byte i is also the state reached from the start
        state over the window of bytes ``i - depth + 1 .. i`` (or from the sample's first byte,
        if that is later). So every position is computed at once, in ``depth`` vectorised
        steps, each reading the byte ``back`` places before the position. The samples of a
        batch are concatenated; a position whose window would begin in the previous sample is
        set back to the start state right after the step that read that sample's last byte,
        so no state crosses a sample boundary (:meth:`_feature_runs`).

        **The counts.** One sort of ``(sample, feature, position)`` keys groups each sample's
        occurrences of a feature, giving its count and first position; read in position order
        these are each sample's features in order of first appearance, which is the order of
        py3langid's ``Counter``. The scores are a float32 dot product whose rounding depends on
        that order, so keeping it keeps the bits.

        **The scores.** Per sample, exactly py3langid's operations on exactly its operands: the
        same float32 ``log1p`` of the counts times the same rows of ``nb_ptc`` in the same order
        (one ``gemv`` per sample, as in ``np.log1p(counts) @ nb_ptc[index]``), then ``+ nb_pc``.
        The rest of ``_decide`` (temperature, softmax, alias folding) is element-wise or per
        row, so it runs on the stacked ``(samples, classes)`` array with the same float32
        operations per row. ``tests/unit/test_language_batch.py`` compares the results with
        the one-sample implementation bit for bit.

        The feature weights are widened from float16 to float32 once (28 MB more per
        process): numpy casts the gathered rows to float32 before the product anyway, and
        that cast was most of the scoring time. The walk uses a table of the next state's row
        offset for every (row, byte) (``_next_rowbase``, int32, 39 MB), one gather per step
        instead of two.
        """

        __slots__ = ("_depth", "_next_rowbase", "_nextmove_np", "_output_np", "_start")

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.nb_ptc = np.ascontiguousarray(self.nb_ptc, dtype=np.float32)
            self._full_model = (self.nb_ptc, self.nb_pc, self.nb_classes)
            self._nextmove_np = np.frombuffer(self.tk_nextmove, dtype=np.uint32)
            rowbase = np.asarray(self._rowbase, dtype=np.int64)
            self._output_np = np.asarray(self.tk_output, dtype=np.int32)
            self._depth = _dfa_depth(self._nextmove_np, rowbase)
            self._start = int(rowbase[0])  # row offset of the start state
            # Row offset of the state reached from row offset r by byte b, at r + b.
            assert rowbase.max() < 2**31
            self._next_rowbase = rowbase[self._nextmove_np].astype(np.int32)

        def features(self, text: bytes) -> tuple[np.ndarray, np.ndarray] | None:
            """(feature index, count as float32) in order of first appearance, or None."""
            features, counts, _ = self._feature_runs([text])
            if not len(features):
                return None
            return features.astype(np.intp), counts.astype(np.float32)

        def _feature_runs(self, samples: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            """Each sample's features with their counts, in order of first appearance.

            Returns ``(features, counts, bounds)``: sample k's are ``features[bounds[k] :
            bounds[k + 1]]`` with ``counts`` alike; what py3langid's ``visit_counts`` gives as a
            ``Counter`` (keys and values in insertion order) for each sample alone.
            """
            lengths = [len(sample) for sample in samples]
            ends = list(itertools.accumulate(lengths))
            data = np.frombuffer(b"".join(samples), dtype=np.uint8)
            n = len(data)
            # Last byte of each sample before another: a position `back` bytes after it is
            # reset to the start state once the step reading `back` bytes back has read it.
            boundaries = np.array([end - 1 for end in ends[:-1] if end > 0], dtype=np.intp)
            rowbase = np.full(n, self._start, dtype=np.int32)  # row offset of each state
            index = np.empty(n, dtype=np.intp)
            # The indices are in range by construction; mode="clip" only spares take() the
            # copy of `out` that it makes with the default mode="raise".
            for back in range(min(self._depth, n) - 1, 0, -1):
                # Positions i >= back read byte i - back; earlier ones have not started yet.
                step = index[: n - back]
                np.add(rowbase[back:], data[: n - back], out=step)
                self._next_rowbase.take(step, out=rowbase[back:], mode="clip")
                reset = boundaries + back
                rowbase[reset[reset < n]] = self._start
            # The last step reads each position's own byte; its state's output is the feature.
            np.add(rowbase, data, out=index)
            states = self._nextmove_np.take(index, mode="clip")
            found = self._output_np.take(states, mode="clip")  # < 0: no feature

            # Group by (sample, feature): sorting keys that end in the position makes the
            # first key of each group its first occurrence.
            positions = (found >= 0).nonzero()[0]
            bits = n.bit_length()
            mask = (1 << bits) - 1
            n_features = self.nb_ptc.shape[0]
            assert len(samples) * n_features < 1 << (63 - bits)  # the keys fit in int64
            if len(samples) == 1:
                keys = found.take(positions).astype(np.int64)
            else:
                offsets = np.arange(0, len(samples) * n_features, n_features, dtype=np.int64)
                keys = offsets.repeat(lengths).take(positions)
                keys += found.take(positions)
            keys <<= bits
            keys |= positions
            keys.sort()
            group = keys >> bits
            new = np.empty(len(keys), dtype=bool)
            new[:1] = True
            np.not_equal(group[1:], group[:-1], out=new[1:])
            starts = new.nonzero()[0]
            # (first position, count) of each group, sorted by first position: each sample's
            # features by first appearance, samples in order (positions are unique).
            packed = keys.take(starts)
            packed &= mask
            packed <<= bits
            packed[:-1] |= starts[1:] - starts[:-1]
            packed[-1:] |= len(keys) - starts[-1:]
            packed.sort()
            first = packed >> bits
            bounds = first.searchsorted([0, *ends])
            return found.take(first), packed & mask, bounds

        def probabilities(self, samples: list[bytes]) -> np.ndarray:
            """``_decide(sample)`` for each encoded sample, stacked: (samples, classes) float32.

            Per sample the same float32 operations as py3langid's ``_decide`` with
            ``norm_probs=True`` (the products one ``gemv`` per sample; see the class docstring).
            """
            features, counts, bounds = self._feature_runs(samples)
            weights = np.log1p(counts.astype(np.float32))
            scores = np.zeros((len(samples), len(self.nb_classes)), dtype=np.float32)
            edges = bounds.tolist()
            runs = [(k, begin, end) for k, (begin, end) in enumerate(itertools.pairwise(edges))]
            featured = [k for k, begin, end in runs if end > begin]
            longest = max((end - begin for _, begin, end in runs), default=0)
            rows = np.empty((longest, scores.shape[1]), dtype=np.float32)
            for k, begin, end in runs:
                if end > begin:
                    gathered = rows[: end - begin]
                    self.nb_ptc.take(features[begin:end], axis=0, out=gathered, mode="clip")
                    np.matmul(weights[begin:end], gathered, out=scores[k])
            # Featureless samples keep py3langid's 0.0 fill (no prior under norm_probs).
            scores[featured] += self.nb_pc
            # T = sqrt(bytes), as _decide: the Python float multiplies as float32.
            temperature = [1.0 / math.sqrt(len(sample) or 1) for sample in samples]
            scores *= np.array(temperature, dtype=np.float32)[:, None]
            scores -= scores.max(axis=1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=1, keepdims=True)
            for i, j in self._alias_pairs:
                scores[:, i] += scores[:, j]
                scores[:, j] = 0.0
            return scores

    return _VectorIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


# identify_batch works through this many documents at a time (bounds its working memory).
_CHUNK = 128
_UNDETERMINED_GUESS = LanguageGuess(UNDETERMINED, 0.0)


def identify_batch(texts: list[str]) -> list[LanguageGuess]:
    """Guess the language of each text from its first ~600 characters; see :func:`identify`.

    The same answers as identifying each text alone, bit for bit: the model's per-document
    arithmetic is unchanged (see ``_VectorIdentifier``), only its fixed cost is shared.
    """
    model = _identifier()
    guesses: list[LanguageGuess] = [_UNDETERMINED_GUESS] * len(texts)
    todo: list[int] = []
    samples: list[bytes] = []
    for position, text in enumerate(texts):
        sample = text[:SAMPLE_CHARS]
        if _ENOUGH_LETTERS.match(sample) is not None:
            todo.append(position)
            samples.append(model._encode(sample))  # py3langid's own case folding, NFC, UTF-8
    codes = _codes(tuple(model.nb_classes))
    for start in range(0, len(samples), _CHUNK):
        scores = model.probabilities(samples[start : start + _CHUNK])
        best = scores.argmax(axis=1)  # the first of equal maxima, as in classify
        confidences = scores[np.arange(len(best)), best].tolist()
        for position, label, score in zip(
            todo[start : start + _CHUNK], best.tolist(), confidences, strict=True
        ):
            guesses[position] = LanguageGuess(codes[label], min(1.0, max(0.0, score)))
    return guesses


def identify(text: str) -> LanguageGuess:
    """Guess the language of ``text`` from its first ~600 characters.

    Texts with fewer than 20 letters in that sample are ``LanguageGuess("und", 0.0)``. Model
    labels without an ISO 639-1 code are mapped to their macrolanguage where one exists, else to
    ``"und"`` with the model's confidence.
    """
    return identify_batch([text])[0]


@functools.cache
def _codes(labels: tuple[str, ...]) -> list[str]:
    """The reported code of each model label: ISO 639-1, its macrolanguage's, or "und"."""
    codes = [_TO_ISO639_1.get(label, label) for label in labels]
    return [code if len(code) == 2 else UNDETERMINED for code in codes]


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
