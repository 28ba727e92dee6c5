"""identify_batch / identify against the previous one-document implementation.

``tests/unit/language_reference.py`` is the module as it was before the batch API. The codes
must be equal and the confidences bit-identical (the batch path does the same float32
operations per document), on the bench corpus, the genre corpora and generated texts.
"""

from __future__ import annotations

import functools
import random

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.preprocess.genres import clean_documents, low_quality_documents
from services.preprocess.language import SAMPLE_CHARS, _identifier, identify, identify_batch
from services.preprocess.normalize import normalize
from tests.unit import language_reference


def assert_same(texts: list[str]) -> None:
    expected = [language_reference.identify(text) for text in texts]
    for size in (128, 7, 1):
        found = [g for k in range(0, len(texts), size) for g in identify_batch(texts[k : k + size])]
        for text, want, got in zip(texts, expected, found, strict=True):
            assert got.code == want.code, text[:80]
            # Bit-identical, not just close: the same float32 operations per document.
            assert got.confidence == want.confidence, text[:80]
    assert [identify(text) for text in texts[:50]] == expected[:50]


@functools.cache
def bench_documents() -> list[str]:
    from tests.bench.preprocess_bench import build_corpus

    documents, _ = build_corpus(800)
    return [normalize(text) for text in documents]


def test_bench_corpus_same_answers() -> None:
    assert_same(bench_documents())


def test_bench_corpus_raw_and_shuffled() -> None:
    # Unnormalised text, and neighbours of every kind (short, long, featureless) in a batch.
    from tests.bench.preprocess_bench import build_corpus

    texts, _ = build_corpus(300, seed=3)
    random.Random(1).shuffle(texts)
    assert_same(texts)


def test_genre_documents_same_answers() -> None:
    texts = [text for genre in clean_documents().values() for text in genre]
    texts += [text for _, text in low_quality_documents()]
    assert_same(texts)


def test_edge_cases() -> None:
    assert identify_batch([]) == []
    assert_same(
        [
            "",
            "a" * 19,
            "a" * 20,
            "a" * 20 + "\ud800 lone surrogate",
            "\ud83d" * 30 + " abcdefghijklmnopqrstuvwxyz",
            "ÅÄÖ" * 10,  # all upper case: py3langid lower-cases the sample
            "1" * 1000 + "the end of the text",
            "word " * 500,
        ]
    )


SCRIPTS = [
    "The quick brown fox jumps over the lazy dog. ",
    "Der schnelle braune Fuchs springt über den faulen Hund. ",
    "Быстрая коричневая лиса прыгает через ленивую собаку. ",
    "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο. ",  # noqa: RUF001
    "敏捷的棕色狐狸跳过了懒狗。",
    "素早い茶色の狐がのろまな犬を飛び越える。",
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다. ",
    "الثعلب البني السريع يقفز فوق الكلب الكسول. ",
    "השועל החום המהיר קופץ מעל הכלב העצלן. ",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है। ",
    "สุนัขจิ้งจอกสีน้ำตาลกระโดดข้ามสุนัขขี้เกียจ ",
    "12345 67890 -- ## !! ... ",
    "x = f(y) + 1; ",
    "🙂🙃 ",
    "ÉCOLE PRIMAIRE ",
    "e\u0301 a\u0308 ",  # combining marks: NFC composes them
]

pieces = st.sampled_from(SCRIPTS) | st.text(max_size=30)
texts = st.lists(pieces, max_size=40).map("".join) | st.text(max_size=SAMPLE_CHARS + 50)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(texts, min_size=1, max_size=20))
def test_generated_texts_same_answers(batch: list[str]) -> None:
    assert_same(batch)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=10))
def test_short_texts_same_answers(batch: list[str]) -> None:
    # Around the 20-letter threshold, and samples shorter than the automaton's depth.
    assert_same(batch)


def test_the_batched_walk_finds_what_py3langid_finds() -> None:
    # Feature counts of each sample in a batch, in first-appearance order, must be those of
    # py3langid's own walk over that sample alone: no state crosses a sample boundary.
    from py3langid.langid import visit_counts

    model = _identifier()
    rng = random.Random(11)
    samples = [b"", b"a", b"ab", b"\xff" * 9, b"the", b" the cat", b"hello world" * 50]
    samples += [bytes(rng.randrange(256) for _ in range(rng.randrange(12))) for _ in range(300)]
    samples += [
        bytes(rng.choice(b"etaoin shrdlu\xc3\xa9\xe2\x80\x9c") for _ in range(rng.randrange(700)))
        for _ in range(100)
    ]
    for _ in range(20):
        rng.shuffle(samples)
        features, counts, bounds = model._feature_runs(samples)
        assert len(bounds) == len(samples) + 1
        for k, sample in enumerate(samples):
            expected = visit_counts(model.tk_nextmove, model._rowbase, model.tk_output, sample)
            expected = expected or {}
            run = slice(bounds[k], bounds[k + 1])
            assert features[run].tolist() == list(expected)
            assert counts[run].tolist() == list(expected.values())


def test_log1p_does_not_depend_on_the_position_in_the_array() -> None:
    # The weights of a whole batch come from one np.log1p call; py3langid calls it per document.
    values = np.arange(1, 3000, dtype=np.float32)
    table = np.log1p(values)
    for size in (1, 3, 17, 64, 331):
        for offset in range(0, 40):
            chunk = values[offset : offset + size]
            assert np.array_equal(
                np.log1p(chunk).view(np.uint32), table[offset : offset + size].view(np.uint32)
            )
