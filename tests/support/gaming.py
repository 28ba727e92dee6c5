"""The gaming suite: one contributor tries each attack against an honest one's text, and
the attacker's accepted tokens are compared with what the honest originals earn.

An honest contributor uploads clean documents first (technical, legal and fiction); then
the attacker uploads what the attack makes of them. Both go through the pure pipeline and
the platform-wide index in that order, as `1tt estimate` runs them (the service does the
same steps across Kafka partitions). For each attack the figure is

    attacker's accepted tokens / honest originals' accepted tokens

(the goal of issue 16: at most 0.05 for every attack). `python -m tests.support.gaming`
prints the table; `make bench` prints it too.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from dataclasses import dataclass

from services.preprocess.dedup import DocRef, index_all
from services.preprocess.genres import clean_documents
from services.preprocess.pipeline import PipelineConfig, prepare_batch
from tests.support import attacks

EDIT_RATES = (0.05, 0.10, 0.15)


@dataclass(frozen=True)
class Outcome:
    attack: str
    honest_tokens: int
    attacker_tokens: int
    attacker_documents: int
    # What the attacker's own text earns alone (subtracted: it is theirs to be paid for).
    own_tokens: int = 0

    @property
    def fraction(self) -> float:
        gained = self.attacker_tokens - self.own_tokens
        return gained / self.honest_tokens if self.honest_tokens else 0.0


def honest_corpus(limit: int = 60) -> list[str]:
    """Clean documents of several genres, 150-2000 words each."""
    genres = clean_documents()
    chosen = []
    for genre in ("technical", "legal", "fiction"):
        docs = [d for d in genres[genre] if 150 <= len(d.split()) <= 2000]
        chosen += docs[: limit // 3]
    return chosen


def own_texts(count: int) -> list[str]:
    """The attacker's own honest text (genres the honest contributor does not write)."""
    genres = clean_documents()
    texts = genres["conversational"] + genres["poetry"]
    return (texts * (count // len(texts) + 1))[:count]


def accepted(documents: list[str], source: DocRef, stores, config) -> tuple[int, int]:
    """(accepted tokens, documents kept) of one upload, claiming the shared index."""
    results = []
    for start in range(0, len(documents), 128):
        batch = [(i, t, None) for i, t in enumerate(documents[start : start + 128], start)]
        results.extend(prepare_batch(batch, config))
    fingerprints = {r.index: r.fingerprint for r in results if r.fingerprint is not None}
    verdicts = index_all(source, fingerprints, stores, config.dedup)
    kept = [r for r in results if r.removal is None and r.index not in verdicts]
    return sum(r.tokens for r in kept), len(kept)


def attacks_on(originals: list[str], seed: int = 7) -> dict[str, Callable[[], list[str]]]:
    """Each attack: a function giving the attacker's documents."""
    vocabulary = sorted({w for text in originals for w in text.split() if w.isalpha()})

    def each(make) -> Callable[[], list[str]]:
        rng = random.Random(seed)
        return lambda: [make(text, rng) for text in originals]

    table: dict[str, Callable[[], list[str]]] = {
        "exact copies": each(lambda t, rng: t),
    }
    for rate in EDIT_RATES:
        table[f"{rate:.0%} of words edited"] = each(
            lambda t, rng, rate=rate: attacks.edit_words(t, rate, rng, vocabulary)
        )
    table["paragraphs shuffled"] = each(lambda t, rng: attacks.shuffle_paragraphs(t, rng))

    def merged() -> list[str]:
        rng = random.Random(seed)
        own = own_texts(len(originals))
        return [attacks.merge(t, mine, rng) for t, mine in zip(originals, own, strict=False)]

    table["merged into own text"] = merged
    for kinds in (("confusables",), ("zero_width",), ("case",), ("whitespace",),
                  ("confusables", "zero_width", "case", "whitespace")):  # fmt: skip
        table[f"characters: {'+'.join(kinds)}"] = each(
            lambda t, rng, kinds=kinds: attacks.disguise_characters(t, rng, kinds)
        )

    def split() -> list[str]:
        rng = random.Random(seed)
        return [piece for text in originals for piece in attacks.fragments(text, rng)]

    table["split into fragments"] = split

    def patchwork() -> list[str]:
        rng = random.Random(seed)
        return [attacks.patchwork(originals, rng) for _ in originals]

    table["others' paragraphs concatenated"] = patchwork

    def filler(make) -> Callable[[], list[str]]:
        rng = random.Random(seed)
        return lambda: [make(rng) for _ in originals]

    table["lorem ipsum filler"] = filler(lambda rng: attacks.lorem_ipsum(rng, vocabulary))
    table["word salad filler"] = filler(lambda rng: attacks.word_salad(rng, originals))
    table["web page chrome filler"] = filler(attacks.boilerplate_page)
    table["keyword spam filler"] = filler(attacks.keyword_spam)
    return table


def run(config: PipelineConfig | None = None, limit: int = 60) -> list[Outcome]:
    config = config or PipelineConfig()
    originals = honest_corpus(limit)
    outcomes = []
    for name, make in attacks_on(originals).items():
        stores: list[dict] = [{} for _ in range(4)]
        honest_tokens, _ = accepted(originals, DocRef(1, "honest", 0), stores, config)
        if name.endswith("filler"):
            stores = [{} for _ in range(4)]  # filler is judged on its own
        documents = make()
        tokens, kept = accepted(documents, DocRef(2, "attacker", 0), stores, config)
        own = 0
        if name == "merged into own text":
            fresh = [{} for _ in range(4)]
            own, _ = accepted(own_texts(len(originals)), DocRef(3, "own", 0), fresh, config)
        outcomes.append(Outcome(name, honest_tokens, tokens, kept, own))
    return outcomes


def junk_removal(samples: int = 200, seed: int = 9) -> dict[str, float]:
    """Share of each junk class the quality rules remove (issue 16's goal: 0.95 each)."""
    from services.preprocess.normalize import normalize
    from services.preprocess.quality import assess

    originals = honest_corpus(30)
    vocabulary = sorted({w for text in originals for w in text.split() if w.isalpha()})
    makers = {
        "placeholder text": lambda rng: attacks.lorem_ipsum(rng, vocabulary),
        "word salad": lambda rng: attacks.word_salad(rng, originals),
        "keyword spam": attacks.keyword_spam,
        "web page chrome": attacks.boilerplate_page,
    }
    rates = {}
    for name, make in makers.items():
        rng = random.Random(seed)
        removed = sum(not assess(normalize(make(rng))).kept for _ in range(samples))
        rates[name] = removed / samples
    return rates


def report(outcomes: list[Outcome]) -> str:
    lines = ["gaming suite: the attacker's accepted tokens / the honest originals' (goal <= 0.05)"]
    for o in outcomes:
        mark = "ok" if o.fraction <= 0.05 else "OVER"
        lines.append(
            f"  {o.attack:<48}{o.fraction:>7.3f}  {mark:<4} "
            f"({o.attacker_tokens:,} of {o.honest_tokens:,} tokens, "
            f"{o.attacker_documents} documents kept)"
        )
    return "\n".join(lines)


def main() -> int:
    print(report(run()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
