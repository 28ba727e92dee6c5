"""docs/money.md states the constants an outside implementation needs; they must be the
ones the code uses (the docs are the definition, so a drift is a bug in one of them)."""

from __future__ import annotations

import re
from pathlib import Path

from services.common.money import MINOR_UNIT_EXPONENT
from services.rules import ids

DOC = (Path(__file__).resolve().parents[2] / "docs" / "money.md").read_text()


def test_the_currency_table_is_the_one_the_platform_settles_in():
    documented = {}
    for exponent, currencies in re.findall(r"^\| (\d) \| ([A-Z, ]+) \|$", DOC, re.MULTILINE):
        for currency in currencies.split(", "):
            documented[currency] = int(exponent)
    assert documented == MINOR_UNIT_EXPONENT


def test_the_namespace_is_the_one_every_id_is_derived_in():
    assert f"    {ids.PLATFORM_NAMESPACE}\n" in DOC


def test_the_id_table_names_each_derivation_the_code_makes():
    rows = dict(re.findall(r"^\| `(\w+)` \| `([\w.]+)` \|", DOC, re.MULTILINE))
    assert rows == {
        "allocation_id": "allocation.made",
        "payout_id": "payout.issued",
        "payout_run_id": "payout.run",
        "revenue_id": "revenue.recorded",
        "adjustment_id": "revenue.adjusted",
    }
    # each kind is the one the function uses
    assert ids.allocation_id("r", "c") == ids.derived_id(rows["allocation_id"], "r", "c")
    assert ids.payout_id("p", "2026-11", "USD") == ids.derived_id(
        rows["payout_id"], "p", "2026-11", "USD"
    )
    assert ids.payout_run_id("2026-11") == ids.derived_id(rows["payout_run_id"], "2026-11")
    assert ids.revenue_id("k", "e") == ids.derived_id(rows["revenue_id"], "k", "e")
    assert ids.adjustment_id("k", "e") == ids.derived_id(rows["adjustment_id"], "k", "e")
