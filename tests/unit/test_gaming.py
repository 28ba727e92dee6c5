"""The gaming suite (tests/support/gaming.py) on the attacks the pipeline defeats today:
each earns the attacker at most 5% of what the honest originals earn. (`make bench`
prints every attack, including those not yet defeated.)"""

from __future__ import annotations

import random

import pytest

from services.preprocess.quality import assess
from tests.support import attacks, gaming

DEFEATED = (
    "exact copies",
    "characters: confusables",
    "characters: zero_width",
    "characters: case",
    "characters: whitespace",
    "characters: confusables+zero_width+case+whitespace",
    "lorem ipsum filler",
    "web page chrome filler",
    "keyword spam filler",
)


@pytest.fixture(scope="module")
def outcomes():
    return {o.attack: o for o in gaming.run(limit=30)}


@pytest.mark.parametrize("attack", DEFEATED)
def test_the_attack_earns_at_most_five_percent(outcomes, attack):
    outcome = outcomes[attack]
    assert outcome.honest_tokens > 10_000
    assert outcome.fraction <= 0.05, (attack, outcome)


def test_the_suite_measures_something_an_undefended_attack_earns(outcomes):
    """The harness is not blind: an attack the pipeline does not defeat yet shows up."""
    assert outcomes["15% of words edited"].fraction > 0.5


@pytest.mark.parametrize("seed", range(12))
def test_placeholder_text_is_removed_in_each_variant(seed):
    vocabulary = "the of report said river market council window summer".split()
    text = attacks.lorem_ipsum(random.Random(seed), vocabulary)
    verdict = assess(text)
    assert verdict.rule == "max_placeholder_fraction", (verdict.rule, text[:200])


@pytest.mark.parametrize(
    "text",
    [
        "Designers often fill a mock-up with the words lorem ipsum dolor sit amet until the "
        "copy arrives; the final brochure replaced every one of them with our own text about "
        "the new library, its opening hours and the reading programme for children.",
        "The parties agree that the clause applies mutatis mutandis, and that nulla poena sine "
        "lege remains the principle; force majeure events are defined in Schedule 2 and "
        "notices must be sent to the addresses given in clause 14 of this agreement.",
    ],
)
def test_latin_in_real_prose_is_kept(text):
    assert assess(text).kept


def test_each_junk_class_that_has_a_rule_is_removed_at_the_goal():
    rates = gaming.junk_removal(samples=100)
    for name in ("placeholder text", "keyword spam", "web page chrome"):
        assert rates[name] >= 0.95, rates
