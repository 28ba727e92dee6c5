"""The payout service's HTTP API against real payout processes (tests/integration/
payout_server.py) over real Kafka and PostgreSQL, and `1tt payout run` / `1tt statement`
as subprocesses against them.

Three servers, each with its own prefix, schema and port, because payout runs change
state and runs only go forward in time:

- `server`: the standard world in PERIOD (2026-10). Provisional statements are read
  before anything is paid (fixture `provisional`); then olga runs PERIOD twice
  (fixture `first_run`), which every test about issued payouts depends on.
- `carry` (its own server): the minimum payout and a clawback. Bob gets a small
  allocation in 2026-07, nothing in 2026-08 and a clawback in 2026-09, each month run on
  its own, before the world's PERIOD is run through the CLI. (Months before PERIOD,
  because a run for a month that has not begun is refused, so which months after PERIOD
  a test could run would depend on the clock.)
- `matrix_server`: read-only, for the access matrix: every role x every endpoint in the
  OpenAPI document x own or other's data, with the expected status. Its only run is for
  a month with nothing in it, which stays a 200 because nothing is ever paid there.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass

import httpx
import pytest

from services.common.db import connect
from services.common.facts import decode
from services.common.identity import generate_api_key
from services.rules import settlement
from services.rules.ids import derived_id
from tests import ledger_facts as f
from tests.integration.conftest import publish_signed, read_topic
from tests.integration.ingest_server import ROOT
from tests.integration.payout_server import PERIOD, PayoutServer, World
from tt.facts.v1 import ledger_pb2

pytestmark = pytest.mark.integration

MICROS_PER_CENT = 10_000  # USD: 1,000,000 micros per dollar, 100 cents per dollar
MIN_PAYOUT_CENTS = 1000  # the world's agreement
EARLIER_PERIOD = "2026-09"
NOT_BEGUN_PERIOD = "2099-01"
CONTRIBUTORS = ("alice", "bob")
CSV_HEADER = [
    "currency",
    "status",
    "line",
    "period",
    "service_id",
    "revenue_id",
    "contribution_id",
    "weight",
    "total_weight",
    "pool_micros",
    "amount_micros",
    "amount_minor",
]


# -- helpers -------------------------------------------------------------------------------


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, f"{response.request.url}: {response.text}"
    return response.json()


def assert_error(response: httpx.Response, status: int) -> dict:
    """A 4xx with the platform's JSON error body and a message a person can act on."""
    assert response.status_code == status, f"{response.request.url}: {response.text}"
    assert response.headers["content-type"].startswith("application/json"), response.text
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"], response.text
    assert isinstance(error["message"], str) and error["message"].strip(), response.text
    return error


def run_payouts(server: PayoutServer, world: World, period: str) -> httpx.Response:
    return server.request("POST", "/v1/payout-runs", world.keys["olga"], json={"period": period})


def allocations_of(world: World, name: str) -> list[dict]:
    """The world's allocations of one contributor, as a statement lists them (in order)."""
    rows = [
        {
            "allocation_id": a.allocation_id,
            "period": a.period,
            "service_id": a.service_id,
            "revenue_id": a.revenue_id,
            "contribution_id": a.contribution_id,
            "weight": a.weight,
            "total_weight": a.total_weight,
            "pool_micros": a.pool_micros,
            "allocated_micros": a.allocated_micros,
        }
        for a in world.allocations
        if a.contributor_id == world.ids[name]
    ]
    return sorted(
        rows, key=lambda r: (r["period"], r["service_id"], r["revenue_id"], r["contribution_id"])
    )


def only_section(statement: dict) -> dict:
    assert [s["currency"] for s in statement["statements"]] == ["USD"], statement
    return statement["statements"][0]


def cli(server: PayoutServer, *args: str, key: str | None) -> subprocess.CompletedProcess:
    """`1tt ...` as a user runs it, against this server, with `key` or no key at all."""
    env = {name: value for name, value in os.environ.items() if name != "TT_API_KEY"}
    env["TT_PAYOUT_URL"] = server.url
    if key is not None:
        env["TT_API_KEY"] = key
    done = subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
    )
    # Decoded by hand: text=True would turn the CSV's \r\n line ends into \n.
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def payout_facts(server: PayoutServer, expected: int) -> list:
    topic = server.settings.topic_registry().fact_topic("payout.issued")
    records = asyncio.run(read_topic(server.settings.kafka, topic, expected))
    return [(record.key.decode(), decode(record.value)) for record in records]


def count_agreements(server: PayoutServer) -> int:
    """A look into the service's schema, only to wait for the agreement: the API has no
    view of agreements, and a run before it arrives holds the allocations back."""

    async def count() -> int:
        conn = await connect(server.settings.database_url, server.schema, application_name="tests")
        try:
            return await conn.fetchval("SELECT count(*) FROM agreements")
        finally:
            await conn.close()

    return asyncio.run(count())


def projected_world(server: PayoutServer) -> World:
    """publish_world, then wait for what it does not wait for: bob's contribution, every
    contribution processed (alice's report) and the agreement."""
    world = server.publish_world()

    def processed(name: str, count: int) -> bool:
        response = server.get("/v1/me/contributions", world.keys[name])
        states = [c["state"] for c in response.json().get("contributions", [])]
        return response.status_code == 200 and states == ["processed"] * count

    server.wait_until(
        lambda: processed("alice", 2) and processed("bob", 1) and count_agreements(server) == 1,
        what="every contribution processed and the agreement",
    )
    return world


def publish_allocation(
    server: PayoutServer, world: World, name: str, period: str, micros: int, pool_micros: int
) -> ledger_pb2.AllocationMade:
    """One more allocation.made for `name`'s first contribution under the world's
    agreement (a clawback when negative), as the ledger would make it; waits until the
    service has it."""
    first = next(a for a in world.allocations if a.contributor_id == world.ids[name])
    revenue_id = derived_id("test.revenue", uuid.uuid4().hex, period)
    fact = ledger_pb2.AllocationMade(
        allocation_id=derived_id("allocation.made", revenue_id, first.contribution_id),
        revenue_id=revenue_id,
        service_id=first.service_id,
        agreement_id=first.agreement_id,
        contributor_id=first.contributor_id,
        contribution_id=first.contribution_id,
        period=period,
        currency="USD",
        allocated_micros=micros,
        pool_micros=pool_micros,
        weight=first.weight,
        total_weight=first.total_weight,
    )

    registry = server.settings.topic_registry()
    asyncio.run(publish_signed(server.settings, registry, f.envelope(fact, fact.allocation_id)))
    server.wait_until(
        lambda: any(
            a["allocation_id"] == fact.allocation_id
            for a in server.get(f"/v1/allocations?period={period}", world.keys["olga"])
            .json()
            .get("allocations", [])
        ),
        what=f"allocation {fact.allocation_id}",
    )
    return fact


# -- the main server: statements, runs, the CLI --------------------------------------------


@pytest.fixture(scope="module")
def server(settings, tmp_path_factory):
    with PayoutServer.start(settings, tmp_path_factory.mktemp("payout-main")) as running:
        yield running


@pytest.fixture(scope="module")
def world(server) -> World:
    return projected_world(server)


@dataclass
class Provisional:
    json: dict[str, dict]  # contributor -> statement
    csv: dict[str, httpx.Response]
    periods: dict[str, list[dict]]  # contributor -> /v1/me/statements


@pytest.fixture(scope="module")
def provisional(server, world) -> Provisional:
    """The contributors' statements of PERIOD before any payout run."""
    path = f"/v1/me/statements/{PERIOD}"
    return Provisional(
        json={name: ok(server.get(path, world.keys[name])) for name in CONTRIBUTORS},
        csv={name: server.get(f"{path}?format=csv", world.keys[name]) for name in CONTRIBUTORS},
        periods={
            name: ok(server.get("/v1/me/statements", world.keys[name]))["periods"]
            for name in CONTRIBUTORS
        },
    )


@dataclass
class FirstRun:
    first: dict
    second: dict
    facts: list  # (Kafka key, envelope) of every payout.issued on the topic


@pytest.fixture(scope="module")
def first_run(server, world, provisional) -> FirstRun:
    """olga runs PERIOD, then runs it again; after `provisional`, so that saw no run."""
    first = ok(run_payouts(server, world, PERIOD))
    second = ok(run_payouts(server, world, PERIOD))
    return FirstRun(first, second, payout_facts(server, expected=2))


@pytest.mark.parametrize("name", CONTRIBUTORS)
def test_a_provisional_statement_shows_every_allocation_with_its_basis(name, world, provisional):
    statement = provisional.json[name]
    assert (statement["contributor_id"], statement["period"]) == (world.ids[name], PERIOD)
    assert statement["contributor_name"].startswith(name.title())
    section = only_section(statement)
    allocated = world.allocated_micros(name)
    assert section["allocations"] == allocations_of(world, name)
    assert section == {
        "currency": "USD",
        "status": "provisional",
        "payout_id": None,
        "opening_carried_micros": 0,
        "allocations": section["allocations"],
        "allocated_micros": allocated,
        "amount_minor": allocated // MICROS_PER_CENT,
        "closing_carried_micros": allocated % MICROS_PER_CENT,
        "balanced": True,
    }
    assert section["amount_minor"] >= MIN_PAYOUT_CENTS  # so the numbers above are a payment
    assert "floored" in statement["rules"]
    assert provisional.periods[name] == [
        {
            "period": PERIOD,
            "currency": "USD",
            "status": "provisional",
            "amount_minor": None,
            "amount": None,
        }
    ]


@pytest.mark.parametrize("name", CONTRIBUTORS)
def test_a_statement_as_csv_has_a_line_per_allocation_and_the_balances(name, world, provisional):
    response = provisional.csv[name]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert (
        response.headers["content-disposition"] == f'attachment; filename="statement-{PERIOD}.csv"'
    )
    header, *lines = list(csv.reader(response.text.splitlines()))
    assert header == CSV_HEADER
    rows = [dict(zip(header, line, strict=True)) for line in lines]
    expected = allocations_of(world, name)
    assert [row["line"] for row in rows] == (
        ["opening_carried"] + ["allocation"] * len(expected) + ["payout", "closing_carried"]
    )
    assert {(row["currency"], row["status"]) for row in rows} == {("USD", "provisional")}
    section = only_section(provisional.json[name])
    opening, *allocation_rows, payout, closing = rows
    assert opening["amount_micros"] == "0"
    assert [
        (
            r["period"],
            r["service_id"],
            r["revenue_id"],
            r["contribution_id"],
            int(r["weight"]),
            int(r["total_weight"]),
            int(r["pool_micros"]),
            int(r["amount_micros"]),
        )
        for r in allocation_rows
    ] == [
        (
            a["period"],
            a["service_id"],
            a["revenue_id"],
            a["contribution_id"],
            a["weight"],
            a["total_weight"],
            a["pool_micros"],
            a["allocated_micros"],
        )
        for a in expected
    ]
    assert (payout["period"], int(payout["amount_minor"])) == (PERIOD, section["amount_minor"])
    assert int(closing["amount_micros"]) == section["closing_carried_micros"]


def test_a_payout_run_pays_the_floor_and_carries_the_remainder(world, first_run):
    result = first_run.first
    assert result["period"] == PERIOD
    assert result["payout_run_id"] == derived_id("payout.run", PERIOD)
    assert result["already_issued"] == 0
    by_contributor = {p["contributor_id"]: p for p in result["issued"]}
    assert set(by_contributor) == {world.ids[name] for name in CONTRIBUTORS}
    for name in CONTRIBUTORS:
        allocated = world.allocated_micros(name)
        assert by_contributor[world.ids[name]] == {
            "payout_id": derived_id("payout.issued", world.ids[name], PERIOD, "USD"),
            "contributor_id": world.ids[name],
            "currency": "USD",
            "amount_minor": allocated // MICROS_PER_CENT,
            "opening_carried_micros": 0,
            "allocated_micros": allocated,
            "carried_forward_micros": allocated % MICROS_PER_CENT,
            "allocations": len(allocations_of(world, name)),
            "outcome": settlement.PAID,
            "min_payout_minor": MIN_PAYOUT_CENTS,
        }
    issued = result["issued"]
    assert result["paid_minor_by_currency"] == {"USD": sum(p["amount_minor"] for p in issued)}
    assert result["carried_micros_by_currency"] == {
        "USD": sum(p["carried_forward_micros"] for p in issued)
    }


def test_running_the_same_period_again_pays_nothing_twice(server, world, first_run):
    assert first_run.second == {
        "payout_run_id": first_run.first["payout_run_id"],
        "period": PERIOD,
        "issued": [],
        "already_issued": 2,
        "held": [],
        "paid_minor_by_currency": {},
        "carried_micros_by_currency": {},
    }
    payouts = ok(server.get("/v1/payouts", world.keys["audrey"]))["payouts"]
    assert sorted((p["contributor_id"], p["allocations"]) for p in payouts) == sorted(
        (world.ids[name], len(allocations_of(world, name))) for name in CONTRIBUTORS
    )


def test_the_payout_issued_facts_name_exactly_the_allocations_they_cover(world, first_run):
    assert len(first_run.facts) == 2, first_run.facts
    issued = {p["contributor_id"]: p for p in first_run.first["issued"]}
    for key, envelope in first_run.facts:
        assert envelope.event_type == "payout.issued"
        fact = envelope.payout_issued
        assert key == fact.contributor_id
        assert envelope.event_id == fact.payout_id == issued[fact.contributor_id]["payout_id"]
        name = next(n for n in CONTRIBUTORS if world.ids[n] == fact.contributor_id)
        assert sorted(fact.allocation_ids) == sorted(
            a["allocation_id"] for a in allocations_of(world, name)
        )
        assert (
            fact.payout_run_id,
            fact.period,
            fact.currency,
            fact.amount_minor,
            fact.opening_carried_micros,
            fact.carried_forward_micros,
        ) == (
            first_run.first["payout_run_id"],
            PERIOD,
            "USD",
            issued[fact.contributor_id]["amount_minor"],
            0,
            issued[fact.contributor_id]["carried_forward_micros"],
        )


@pytest.mark.parametrize("name", CONTRIBUTORS)
def test_after_the_run_the_statement_is_issued_with_the_payout(
    name, server, world, provisional, first_run
):
    payout_id = derived_id("payout.issued", world.ids[name], PERIOD, "USD")
    statement = ok(server.get(f"/v1/me/statements/{PERIOD}", world.keys[name]))
    before = only_section(provisional.json[name])
    assert only_section(statement) == {**before, "status": "issued", "payout_id": payout_id}
    # The auditor and the operator read the same statement through the platform route.
    for staff in ("audrey", "olga"):
        path = f"/v1/contributors/{world.ids[name]}/statements/{PERIOD}"
        assert ok(server.get(path, world.keys[staff])) == statement
    periods = ok(server.get("/v1/me/statements", world.keys[name]))["periods"]
    assert [(p["period"], p["status"], p["amount_minor"]) for p in periods] == [
        (PERIOD, "issued", before["amount_minor"])
    ]


def test_a_run_for_an_earlier_period_is_refused_because_runs_go_forward(server, world, first_run):
    error = assert_error(run_payouts(server, world, EARLIER_PERIOD), 409)
    assert "go forward" in error["message"]
    assert PERIOD in error["message"] and EARLIER_PERIOD in error["message"]
    assert len(ok(server.get("/v1/payouts", world.keys["olga"]))["payouts"]) == 2


def test_a_run_for_a_period_not_yet_begun_is_refused(server, world):
    error = assert_error(run_payouts(server, world, NOT_BEGUN_PERIOD), 409)
    assert "has not begun" in error["message"] and NOT_BEGUN_PERIOD in error["message"]
    assert ok(server.get(f"/v1/payouts?period={NOT_BEGUN_PERIOD}", world.keys["olga"])) == {
        "payouts": []
    }


@pytest.mark.parametrize("period", ["2026-13", "2026-1", "november", ""])
def test_a_run_for_a_malformed_period_says_how_to_write_one(server, world, period):
    error = assert_error(run_payouts(server, world, period), 400)
    assert error["code"] == "invalid_request"
    assert "YYYY-MM" in error["message"]


@pytest.mark.parametrize(
    "period",
    ["2026-1", "2026-010", "+2026-10", "%202026-10", "2026-10%0A", "\uff12\uff10\uff12\uff16-10"],
    ids=["one-digit-month", "three-digit-month", "plus-sign", "space", "newline", "fullwidth"],
)
def test_a_statement_for_a_malformed_period_says_how_to_write_one(server, world, period):
    for path, key in [
        (f"/v1/me/statements/{period}", world.keys["alice"]),
        (f"/v1/contributors/{world.ids['alice']}/statements/{period}", world.keys["audrey"]),
    ]:
        error = assert_error(server.get(path, key), 400)
        assert "YYYY-MM" in error["message"]


def test_a_contributor_sees_its_own_contributions_with_the_report(server, world):
    alice = world.keys["alice"]
    listed = ok(server.get("/v1/me/contributions", alice))["contributions"]
    assert sorted(c["contribution_id"] for c in listed) == sorted(world.contributions["alice"])
    first, second = world.contributions["alice"]
    detail = ok(server.get(f"/v1/me/contributions/{first}", alice))
    assert detail["report"] == world.report
    # The processed fact in proto3's JSON mapping, which writes 64-bit counts as strings.
    assert int(detail["processed"]["documents_kept"]) == 2
    assert ok(server.get(f"/v1/me/contributions/{second}", alice))["report"] is None
    mine = ok(server.get("/v1/me/allocations", alice))["allocations"]
    assert {a["allocation_id"] for a in mine} == {
        a["allocation_id"] for a in allocations_of(world, "alice")
    }
    earnings = ok(server.get("/v1/me/earnings", alice))["earnings"]
    assert earnings == [
        {"period": PERIOD, "currency": "USD", "allocated_micros": world.allocated_micros("alice")}
    ]


def test_the_consumer_sees_aggregates_only(server, world):
    revenue = ok(server.get("/v1/revenue", world.keys["acme"]))["revenue"]
    pools = sorted({a.pool_micros for a in world.allocations})
    assert sorted(r["pool_micros"] for r in revenue) == pools
    for row in revenue:
        assert row["allocated_micros"] == row["pool_micros"]  # split exactly
        assert (row["contributions"], row["contributors"], row["period"]) == (3, 2, PERIOD)
    assert not any(world.ids[name] in str(revenue) for name in CONTRIBUTORS)


def test_health_readiness_and_the_openapi_document(server):
    assert ok(server.get("/healthz")) == {"status": "ok"}
    assert ok(server.get("/readyz")) == {"status": "ready"}
    docs = server.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    document = ok(server.get("/openapi.json"))
    assert document["info"]["title"] == "1TT Platform API"
    assert {"/v1/me/statements/{period}", "/v1/payout-runs"} <= set(document["paths"])


def test_an_unknown_path_and_a_wrong_method_are_json_errors(server, world):
    assert_error(server.get("/v1/nothing-here", world.keys["olga"]), 404)
    assert_error(server.get("/v1/payout-runs", world.keys["olga"]), 405)


# -- the CLI against the main server -------------------------------------------------------


def test_cli_statement_gives_the_api_numbers(server, world):
    alice = world.keys["alice"]
    as_json = cli(server, "statement", "--period", PERIOD, "--format", "json", key=alice)
    assert as_json.returncode == 0, as_json.stderr
    api = ok(server.get(f"/v1/me/statements/{PERIOD}", alice))
    assert json.loads(as_json.stdout) == api

    as_csv = cli(server, "statement", "--period", PERIOD, "--format", "csv", key=alice)
    assert as_csv.returncode == 0, as_csv.stderr
    assert as_csv.stdout == server.get(f"/v1/me/statements/{PERIOD}?format=csv", alice).text

    bob = world.ids["bob"]
    as_auditor = cli(
        server, "statement", "--period", PERIOD, "--contributor", bob, "--format", "json",
        key=world.keys["audrey"],
    )  # fmt: skip
    assert as_auditor.returncode == 0, as_auditor.stderr
    api = ok(server.get(f"/v1/me/statements/{PERIOD}", world.keys["bob"]))
    assert json.loads(as_auditor.stdout) == api


def test_cli_payout_run_again_gives_what_the_api_gave(server, world, first_run):
    again = cli(server, "payout", "run", "--period", PERIOD, "--json", key=world.keys["olga"])
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == first_run.second


@pytest.mark.parametrize(("name", "role"), [("alice", "contributor"), ("audrey", "auditor")])
def test_cli_payout_run_by_another_role_exits_1_naming_the_role(server, world, name, role):
    refused = cli(server, "payout", "run", "--period", PERIOD, key=world.keys[name])
    assert refused.returncode == 1, refused.stdout
    assert "operator" in refused.stderr and role in refused.stderr, refused.stderr
    assert "403" in refused.stderr


def test_cli_without_a_key_exits_1_saying_what_to_set(server):
    for args in (["payout", "run", "--period", PERIOD], ["statement", "--period", PERIOD]):
        refused = cli(server, *args, key=None)
        assert refused.returncode == 1, refused.stdout
        assert "TT_API_KEY" in refused.stderr, refused.stderr


# -- the minimum payout and a clawback, carried --------------------------------------------

SMALL_PERIOD, QUIET_PERIOD, CLAWBACK_PERIOD = "2026-07", "2026-08", "2026-09"
SMALL_MICROS = 5_000_000  # 5.00 USD: under the 10.00 USD minimum payout
CLAWBACK_MICROS = -20_000_000
# Digits that are not ASCII: `\d` in a pattern matches them, a calendar month does not.
FULLWIDTH_PERIOD = "\uff12\uff10\uff12\uff16-09"  # 2026-09 in fullwidth digits


@dataclass
class CarryScenario:
    world: World
    small: ledger_pb2.AllocationMade
    clawback: ledger_pb2.AllocationMade
    small_run: dict
    small_statement: dict
    quiet_provisional: dict  # bob's QUIET_PERIOD statement before its run
    quiet_run: dict
    clawback_provisional: dict
    clawback_run: dict
    clawback_statement: dict
    cli_run: subprocess.CompletedProcess
    payouts: list[dict]  # /v1/payouts for PERIOD after the CLI run
    statement: dict  # bob's, PERIOD, after the CLI run
    facts: list
    fullwidth_run: httpx.Response  # the last call: it may issue payouts under that period


@pytest.fixture(scope="module")
def carry(settings, tmp_path_factory) -> CarryScenario:
    """Bob: a small allocation (SMALL_PERIOD, run), nothing new (QUIET_PERIOD, run), a
    clawback (CLAWBACK_PERIOD, run), then the world's PERIOD run through the CLI."""
    with PayoutServer.start(settings, tmp_path_factory.mktemp("payout-carry")) as server:
        world = projected_world(server)
        bob = world.keys["bob"]

        def statement(period: str) -> dict:
            return ok(server.get(f"/v1/me/statements/{period}", bob))

        small = publish_allocation(server, world, "bob", SMALL_PERIOD, SMALL_MICROS, 15_586_250)
        small_run = ok(run_payouts(server, world, SMALL_PERIOD))
        small_statement = statement(SMALL_PERIOD)
        quiet_provisional = statement(QUIET_PERIOD)
        quiet_run = ok(run_payouts(server, world, QUIET_PERIOD))
        clawback = publish_allocation(
            server, world, "bob", CLAWBACK_PERIOD, CLAWBACK_MICROS, -62_345_000
        )
        clawback_provisional = statement(CLAWBACK_PERIOD)
        clawback_run = ok(run_payouts(server, world, CLAWBACK_PERIOD))
        clawback_statement = statement(CLAWBACK_PERIOD)
        cli_run = cli(server, "payout", "run", "--period", PERIOD, "--json", key=world.keys["olga"])
        return CarryScenario(
            world=world,
            small=small,
            clawback=clawback,
            small_run=small_run,
            small_statement=small_statement,
            quiet_provisional=quiet_provisional,
            quiet_run=quiet_run,
            clawback_provisional=clawback_provisional,
            clawback_run=clawback_run,
            clawback_statement=clawback_statement,
            cli_run=cli_run,
            payouts=ok(server.get(f"/v1/payouts?period={PERIOD}", world.keys["olga"]))["payouts"],
            statement=statement(PERIOD),
            facts=payout_facts(server, expected=5),
            fullwidth_run=run_payouts(server, world, FULLWIDTH_PERIOD),
        )


def bobs(run: dict, world: World) -> dict:
    [payout] = run["issued"]
    assert payout["contributor_id"] == world.ids["bob"], run
    return payout


def balances(section_or_payout: dict) -> tuple[int, int, int, int]:
    """(opening, allocated, paid, closing) of a statement section or a run's payout."""
    closing = section_or_payout.get("closing_carried_micros")
    if closing is None:
        closing = section_or_payout["carried_forward_micros"]
    return (
        section_or_payout["opening_carried_micros"],
        section_or_payout["allocated_micros"],
        section_or_payout["amount_minor"],
        closing,
    )


def test_an_amount_under_the_minimum_payout_is_carried_whole(carry):
    payout = bobs(carry.small_run, carry.world)
    assert balances(payout) == (0, SMALL_MICROS, 0, SMALL_MICROS)
    assert (payout["outcome"], payout["min_payout_minor"]) == (
        settlement.BELOW_MINIMUM,
        MIN_PAYOUT_CENTS,
    )
    section = only_section(carry.small_statement)
    assert (section["status"], section["payout_id"]) == ("issued", payout["payout_id"])
    assert [a["allocation_id"] for a in section["allocations"]] == [carry.small.allocation_id]
    assert balances(section) == balances(payout) and section["balanced"] is True


def test_a_balance_under_the_minimum_stays_carried_when_nothing_new_is_allocated(carry):
    payout = bobs(carry.quiet_run, carry.world)
    assert balances(payout) == (SMALL_MICROS, 0, 0, SMALL_MICROS)
    assert (payout["outcome"], payout["min_payout_minor"]) == (
        settlement.BELOW_MINIMUM,
        MIN_PAYOUT_CENTS,
    )


def test_a_provisional_statement_shows_a_carried_balance_without_new_allocations(carry):
    section = only_section(carry.quiet_provisional)
    assert section["status"] == "provisional" and section["allocations"] == []
    assert section["opening_carried_micros"] == SMALL_MICROS
    assert section["closing_carried_micros"] + section["amount_minor"] * MICROS_PER_CENT == (
        SMALL_MICROS
    )


def test_a_clawback_leaves_a_negative_balance_that_is_carried_and_never_paid(carry):
    # The opening is whatever the quiet run carried (5.00 USD by the rules).
    opening = bobs(carry.quiet_run, carry.world)["carried_forward_micros"]
    debt = opening + CLAWBACK_MICROS
    assert debt < 0
    provisional = only_section(carry.clawback_provisional)
    assert provisional["status"] == "provisional"
    assert [a["allocation_id"] for a in provisional["allocations"]] == [
        carry.clawback.allocation_id
    ]
    assert balances(provisional) == (opening, CLAWBACK_MICROS, 0, debt)
    assert provisional["balanced"] is True
    payout = bobs(carry.clawback_run, carry.world)
    assert balances(payout) == (opening, CLAWBACK_MICROS, 0, debt)
    assert payout["outcome"] == settlement.NEGATIVE
    assert only_section(carry.clawback_statement) == {
        **provisional,
        "status": "issued",
        "payout_id": payout["payout_id"],
    }


def test_the_carried_debt_is_netted_against_the_next_allocations(carry):
    """The world's PERIOD run through `1tt payout run --json`: the same numbers as the API
    and the statement, and bob's debt taken off before he is paid."""
    assert carry.cli_run.returncode == 0, carry.cli_run.stderr
    result = json.loads(carry.cli_run.stdout)
    world = carry.world
    debt = bobs(carry.clawback_run, world)["carried_forward_micros"]
    issued = {p["contributor_id"]: p for p in result["issued"]}
    assert set(issued) == {world.ids["alice"], world.ids["bob"]}
    bob = issued[world.ids["bob"]]
    net = debt + world.allocated_micros("bob")
    assert balances(bob) == (
        debt,
        world.allocated_micros("bob"),
        net // MICROS_PER_CENT,
        net % MICROS_PER_CENT,
    )
    alice = world.allocated_micros("alice")
    assert balances(issued[world.ids["alice"]]) == (
        0,
        alice,
        alice // MICROS_PER_CENT,
        alice % MICROS_PER_CENT,
    )
    fields = ("amount_minor", "opening_carried_micros", "carried_forward_micros")
    assert {p["payout_id"]: [p[k] for k in fields] for p in carry.payouts} == {
        p["payout_id"]: [p[k] for k in fields] for p in result["issued"]
    }
    section = only_section(carry.statement)
    assert (section["status"], section["payout_id"]) == ("issued", bob["payout_id"])
    assert balances(section) == balances(bob) and section["balanced"] is True


def test_no_payout_issued_fact_pays_a_negative_amount(carry):
    bob, alice = carry.world.ids["bob"], carry.world.ids["alice"]
    facts = [envelope.payout_issued for _, envelope in carry.facts]
    assert sorted((fact.period, fact.contributor_id) for fact in facts) == sorted(
        [
            (SMALL_PERIOD, bob),
            (QUIET_PERIOD, bob),
            (CLAWBACK_PERIOD, bob),
            (PERIOD, bob),
            (PERIOD, alice),
        ]
    )
    assert all(fact.amount_minor >= 0 for fact in facts)
    clawback = next(fact for fact in facts if fact.period == CLAWBACK_PERIOD)
    assert list(clawback.allocation_ids) == [carry.clawback.allocation_id]
    assert clawback.carried_forward_micros < 0


def test_a_run_for_a_period_in_other_digits_is_refused(carry):
    error = assert_error(carry.fullwidth_run, 400)
    assert "YYYY-MM" in error["message"]


# -- the access matrix ---------------------------------------------------------------------

ROLES = ("no-key", "malformed-key", "unknown-key", "alice", "bob", "acme", "olga", "audrey")
PEOPLE = ("alice", "bob", "acme", "olga", "audrey")
ROLE_OF = {
    "alice": "contributor",
    "bob": "contributor",
    "acme": "consumer",
    "olga": "operator",
    "audrey": "auditor",
}


@dataclass(frozen=True)
class Call:
    """One call of the matrix: an endpoint (as the OpenAPI document names it), the data
    it is about, and the status each person gets (alice, bob, acme, olga, audrey); a
    caller without a valid key gets `anonymous`."""

    method: str
    route: str
    case: str
    path: str  # the route with {placeholders} filled from the world
    statuses: tuple[int, int, int, int, int]
    anonymous: int = 401
    body: dict | None = None

    def expected(self, role: str) -> int:
        return self.statuses[PEOPLE.index(role)] if role in PEOPLE else self.anonymous


EVERYONE = (200, 200, 200, 200, 200)
CONTRIBUTOR_OWN = (200, 200, 403, 403, 403)
CONTRIBUTOR_BAD = (400, 400, 403, 403, 403)
STAFF = (403, 403, 403, 200, 200)
STAFF_NOT_FOUND = (403, 403, 403, 404, 404)
STAFF_BAD = (403, 403, 403, 400, 400)
OPERATOR = (403, 403, 403, 200, 403)

CONTRIBUTION = "/v1/me/contributions/{contribution_id}"
MY_STATEMENT = "/v1/me/statements/{period}"
STATEMENT = "/v1/contributors/{contributor_id}/statements/{period}"

MATRIX = [
    Call("GET", "/healthz", "probe", "/healthz", EVERYONE, anonymous=200),
    Call("GET", "/readyz", "probe", "/readyz", EVERYONE, anonymous=200),
    Call("GET", "/v1/me", "whoami", "/v1/me", EVERYONE),
    Call("GET", "/v1/me/contributions", "own", "/v1/me/contributions", CONTRIBUTOR_OWN),
    Call("GET", CONTRIBUTION, "of-alice", "/v1/me/contributions/{alice_contribution}",
         (200, 404, 403, 403, 403)),
    Call("GET", CONTRIBUTION, "of-bob", "/v1/me/contributions/{bob_contribution}",
         (404, 200, 403, 403, 403)),
    Call("GET", CONTRIBUTION, "unknown", "/v1/me/contributions/{unknown}",
         (404, 404, 403, 403, 403)),
    Call("GET", "/v1/me/allocations", "own", "/v1/me/allocations", CONTRIBUTOR_OWN),
    Call("GET", "/v1/me/allocations", "own-one-period", "/v1/me/allocations?period={period}",
         CONTRIBUTOR_OWN),
    Call("GET", "/v1/me/allocations", "bad-period", "/v1/me/allocations?period=2026-13",
         CONTRIBUTOR_BAD),
    Call("GET", "/v1/me/earnings", "own", "/v1/me/earnings", CONTRIBUTOR_OWN),
    Call("GET", "/v1/me/statements", "own", "/v1/me/statements", CONTRIBUTOR_OWN),
    Call("GET", MY_STATEMENT, "own", "/v1/me/statements/{period}", CONTRIBUTOR_OWN),
    Call("GET", MY_STATEMENT, "own-csv", "/v1/me/statements/{period}?format=csv",
         CONTRIBUTOR_OWN),
    Call("GET", MY_STATEMENT, "bad-period", "/v1/me/statements/2026-13", CONTRIBUTOR_BAD),
    Call("GET", MY_STATEMENT, "bad-format", "/v1/me/statements/{period}?format=xml",
         CONTRIBUTOR_BAD),
    Call("GET", STATEMENT, "of-alice", "/v1/contributors/{alice}/statements/{period}", STAFF),
    Call("GET", STATEMENT, "of-bob-csv", "/v1/contributors/{bob}/statements/{period}?format=csv",
         STAFF),
    Call("GET", STATEMENT, "unknown", "/v1/contributors/{unknown}/statements/{period}",
         STAFF_NOT_FOUND),
    Call("GET", STATEMENT, "of-a-consumer", "/v1/contributors/{acme}/statements/{period}",
         STAFF_NOT_FOUND),
    Call("GET", STATEMENT, "bad-period", "/v1/contributors/{alice}/statements/2026-13",
         STAFF_BAD),
    Call("GET", "/v1/allocations", "all", "/v1/allocations", STAFF),
    Call("GET", "/v1/allocations", "bad-period", "/v1/allocations?period=2026-13", STAFF_BAD),
    Call("GET", "/v1/revenue", "aggregates", "/v1/revenue", (403, 403, 200, 200, 200)),
    Call("GET", "/v1/payouts", "all", "/v1/payouts", STAFF),
    Call("GET", "/v1/payouts", "bad-period", "/v1/payouts?period=2026-13", STAFF_BAD),
    Call("POST", "/v1/payout-runs", "nothing-to-settle", "/v1/payout-runs", OPERATOR,
         body={"period": EARLIER_PERIOD}),
    Call("POST", "/v1/payout-runs", "not-begun", "/v1/payout-runs", (403, 403, 403, 409, 403),
         body={"period": NOT_BEGUN_PERIOD}),
    Call("POST", "/v1/payout-runs", "bad-period", "/v1/payout-runs", (403, 403, 403, 400, 403),
         body={"period": "2026-13"}),
    Call("POST", "/v1/payout-runs", "no-period", "/v1/payout-runs", (403, 403, 403, 400, 403),
         body={}),
]  # fmt: skip


@pytest.fixture(scope="module")
def matrix_server(settings, tmp_path_factory):
    with PayoutServer.start(settings, tmp_path_factory.mktemp("payout-matrix")) as running:
        yield running


@pytest.fixture(scope="module")
def matrix_world(matrix_server) -> World:
    return projected_world(matrix_server)


@pytest.fixture(scope="module")
def matrix_client(matrix_server):
    """One connection for the matrix's calls (a client per call costs ~50 ms)."""
    with httpx.Client(base_url=matrix_server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def unknown_key() -> str:
    return generate_api_key().key


def headers_of(role: str, world: World, unknown_key: str) -> dict[str, str]:
    if role == "no-key":
        return {}
    if role == "malformed-key":
        return {"Authorization": f"Basic {world.keys['alice']}"}
    key = unknown_key if role == "unknown-key" else world.keys[role]
    return {"Authorization": f"Bearer {key}"}


def fill(path: str, world: World) -> str:
    return path.format(
        alice_contribution=world.contributions["alice"][0],
        bob_contribution=world.contributions["bob"][0],
        unknown=derived_id("test.unknown", "nobody"),
        alice=world.ids["alice"],
        bob=world.ids["bob"],
        acme=world.ids["acme"],
        period=PERIOD,
    )


def other_peoples_ids(role: str, world: World) -> list[str]:
    """Ids that must not appear in what `role` is shown: the other contributor's, for a
    contributor; every contributor's, for the consumer."""
    others = {"alice": ["bob"], "bob": ["alice"], "acme": ["alice", "bob"]}.get(role, [])
    return [i for name in others for i in (world.ids[name], *world.contributions[name])]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("call", MATRIX, ids=lambda c: f"{c.method}{c.route}:{c.case}")
def test_access_matrix(call, role, matrix_client, matrix_world, unknown_key):
    response = matrix_client.request(
        call.method,
        fill(call.path, matrix_world),
        headers=headers_of(role, matrix_world, unknown_key),
        json=call.body,
    )
    expected = call.expected(role)
    if expected == 200:
        assert response.status_code == 200, f"{role}: {response.text}"
        for other in other_peoples_ids(role, matrix_world):
            assert other not in response.text, f"{role} was shown {other}"
        if call.method == "POST":
            assert response.json()["issued"] == [], "the matrix must not pay anything"
        return
    error = assert_error(response, expected)
    if expected == 401:
        assert "API key" in error["message"] or "Authorization" in error["message"]
    if expected == 403:
        # "this endpoint is for the operator role; your key belongs to 'Audrey ..', an auditor"
        assert re.search(rf", an? {ROLE_OF[role]}$", error["message"]), error["message"]


def test_the_matrix_covers_every_endpoint_in_the_openapi_document(matrix_server):
    document = ok(matrix_server.get("/openapi.json"))
    documented = {
        (method.upper(), path) for path, operations in document["paths"].items()
        for method in operations
    }  # fmt: skip
    covered = {(call.method, call.route) for call in MATRIX}
    assert documented - covered == set(), "endpoints without a row in the access matrix"
    assert covered - documented == set(), "matrix rows for endpoints that do not exist"


def test_every_matrix_path_is_an_instance_of_its_route(matrix_world):
    for call in MATRIX:
        pattern = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(call.route))
        path = fill(call.path, matrix_world).split("?")[0]
        assert re.fullmatch(pattern, path), (call.route, path)
