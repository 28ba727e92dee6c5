"""CSV cells a spreadsheet would evaluate are neutralised (services.payout.api.csv_cell)."""

import csv
import io

import pytest

from services.payout.api import csv_cell, statement_csv


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("=1+1", "'=1+1"),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("chat", "chat"),
        ("a=b", "a=b"),
        ("", ""),
        (-1500, -1500),
        (0, 0),
    ],
)
def test_a_cell_that_starts_like_a_formula_gets_an_apostrophe(value, shown):
    assert csv_cell(value) == shown


def test_a_statement_csv_neutralises_every_text_cell_and_keeps_numbers():
    body = {
        "period": "2026-10",
        "statements": [
            {
                "currency": "USD",
                "status": "provisional",
                "opening_carried_micros": -20,
                "amount_minor": 0,
                "closing_carried_micros": -10,
                "allocations": [
                    {
                        "period": "2026-10",
                        "service_id": '=HYPERLINK("x")',
                        "revenue_id": "@r",
                        "contribution_id": "+c",
                        "weight": 1,
                        "total_weight": 2,
                        "pool_micros": 20,
                        "allocated_micros": 10,
                    }
                ],
            }
        ],
    }
    rows = list(csv.reader(io.StringIO(statement_csv(body))))
    allocation = next(row for row in rows if row[2] == "allocation")
    assert allocation[4:7] == ['\'=HYPERLINK("x")', "'@r", "'+c"]
    opening = next(row for row in rows if row[2] == "opening_carried")
    assert opening[10] == "-20"
