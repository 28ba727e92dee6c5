"""The payout service's HTTP holes of issue 14, each tried against a real process: a
consumer reading other consumers' revenue, a session that outlives sign-out, formulas in
CSV cells, impossible periods and ids answered with 500, cacheable or sniffable private
responses, internal error text, and metrics on the public port."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import uuid

import httpx
import pytest

from services.common.db import connect
from services.rules.ids import derived_id
from tests import ledger_facts as f
from tests.integration.payout_server import PERIOD, PayoutServer
from tests.security.support import envelope, principal_fact, publish, query, wait_until
from tt.facts.v1 import ledger_pb2

pytestmark = pytest.mark.integration

FORMULAS = {
    "service_id": '=HYPERLINK("http://evil.example","click")',
    "revenue_id": "@SUM(1+1)*cmd|' /C calc'!A0",
    "contribution_id": "+1+1",
}


@pytest.fixture(scope="module")
def served(settings, tmp_path_factory):
    with PayoutServer.start(settings, tmp_path_factory.mktemp("http")) as server:
        world = server.publish_world()
        yield server, world


@pytest.fixture(scope="module")
def zeta(served):
    """A second consumer, with an agreement and a revenue event of its own."""
    server, world = served
    consumer_fact, key, consumer = principal_fact("consumer", "Zeta Labs")
    agreement_id = f"zeta-agreement-{uuid.uuid4().hex[:6]}"
    revenue_id = derived_id("security.revenue", "zeta", uuid.uuid4().hex)
    first = world.allocations[0]
    allocation = ledger_pb2.AllocationMade(
        allocation_id=derived_id("allocation.made", revenue_id, first.contribution_id),
        revenue_id=revenue_id,
        service_id="zeta-search",
        agreement_id=agreement_id,
        contributor_id=first.contributor_id,
        contribution_id=first.contribution_id,
        period=PERIOD,
        currency="USD",
        allocated_micros=7_000_000,
        pool_micros=7_000_000,
        weight=1,
        total_weight=1,
    )
    publish(
        server.settings,
        consumer_fact,
        f.agreement(agreement_id, consumer.principal_id, "zeta-search", 500),
        envelope(allocation),
    )
    wait_until(
        lambda: any(
            r["revenue_id"] == revenue_id
            for r in server.get("/v1/revenue", key).json().get("revenue", [])
        ),
        what="zeta's revenue to be projected",
    )
    return key, revenue_id


def revenue_ids(server: PayoutServer, key: str) -> set[str]:
    response = server.get("/v1/revenue", key)
    assert response.status_code == 200, response.text
    return {row["revenue_id"] for row in response.json()["revenue"]}


def test_a_consumer_sees_the_revenue_of_its_own_agreements_only(served, zeta):
    server, world = served
    zeta_key, zeta_revenue = zeta
    acme_revenue = {a.revenue_id for a in world.allocations}
    assert revenue_ids(server, zeta_key) == {zeta_revenue}
    assert revenue_ids(server, world.keys["acme"]) == acme_revenue
    # Staff see everything.
    assert revenue_ids(server, world.keys["audrey"]) == acme_revenue | {zeta_revenue}


def signed_in(server: PayoutServer, key: str) -> str:
    response = httpx.post(f"{server.url}/login", data={"api_key": key}, timeout=30)
    assert response.status_code == 303, response.text
    return response.cookies["tt_session"]


def test_signing_out_ends_the_session_on_the_server_not_only_in_the_browser(served):
    """Before: sign-out only asked the browser to forget the cookie; a copy of it (a
    proxy's log, a stolen laptop's profile) stayed valid for 8 hours."""
    server, world = served
    cookie = signed_in(server, world.keys["alice"])
    copy = {"tt_session": cookie}
    assert httpx.get(f"{server.url}/", cookies=copy).status_code == 200
    out = httpx.post(f"{server.url}/logout", cookies=copy)
    assert out.status_code == 303
    for path in ["/", f"/statements/{PERIOD}", f"/statements/{PERIOD}.csv"]:
        replayed = httpx.get(f"{server.url}{path}", cookies=copy)
        assert replayed.status_code == 303 and replayed.headers["location"] == "/login", path
    # Another session of the same contributor is not ended by this sign-out.
    other = signed_in(server, world.keys["alice"])
    assert httpx.get(f"{server.url}/", cookies={"tt_session": other}).status_code == 200


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_csv_cells_that_start_like_a_formula_are_neutralised(served):
    server, world = served
    agreement_id = f"formula-agreement-{uuid.uuid4().hex[:6]}"
    agreement = f.agreement(agreement_id, world.ids["acme"], FORMULAS["service_id"], 1000)
    allocation = ledger_pb2.AllocationMade(
        allocation_id=derived_id("security.formula", uuid.uuid4().hex),
        revenue_id=FORMULAS["revenue_id"],
        service_id=FORMULAS["service_id"],
        agreement_id=agreement_id,
        contributor_id=world.ids["bob"],
        contribution_id=FORMULAS["contribution_id"],
        period=PERIOD,
        currency="USD",
        allocated_micros=-1_500,  # a clawback: a negative number stays a number
        pool_micros=-1_500,
        weight=1,
        total_weight=1,
    )
    publish(server.settings, agreement, envelope(allocation))
    bob = world.keys["bob"]
    wait_until(
        lambda: "HYPERLINK" in server.get(f"/v1/me/statements/{PERIOD}?format=csv", bob).text,
        what="the allocation in bob's statement",
    )
    api_csv = server.get(f"/v1/me/statements/{PERIOD}?format=csv", bob).text
    with httpx.Client(base_url=server.url) as browser:
        browser.post("/login", data={"api_key": bob})
        dashboard_csv = browser.get(f"/statements/{PERIOD}.csv").text
    staff_csv = server.get(
        f"/v1/contributors/{world.ids['bob']}/statements/{PERIOD}?format=csv", world.keys["olga"]
    ).text
    for text in (api_csv, dashboard_csv, staff_csv):
        rows = csv_rows(text)
        cells = [cell for row in rows for cell in row]
        assert not [c for c in cells if c[:1] in ("=", "+", "@")], cells
        [line] = [row for row in rows if row[3:7] and row[5] == "'" + FORMULAS["revenue_id"]]
        assert line[4] == "'" + FORMULAS["service_id"]
        assert line[6] == "'" + FORMULAS["contribution_id"]
        assert line[10] == "-1500"  # an integer is written as it is


PERIOD_ENDPOINTS = [
    ("GET", "/v1/me/allocations?period={p}", "alice"),
    ("GET", "/v1/me/statements/{p}", "alice"),
    ("GET", "/v1/me/statements/{p}?format=csv", "alice"),
    ("GET", "/v1/contributors/{alice}/statements/{p}", "audrey"),
    ("GET", "/v1/allocations?period={p}", "audrey"),
    ("GET", "/v1/payouts?period={p}", "audrey"),
    ("POST", "/v1/payout-runs", "olga"),
]


@pytest.mark.parametrize("period", ["0000-01", "9999-12", "1999-12", "2200-01"])
@pytest.mark.parametrize(("method", "path", "who"), PERIOD_ENDPOINTS)
def test_a_period_outside_the_accepted_months_is_a_400_on_every_endpoint(
    served, period, method, path, who
):
    server, world = served
    url = path.format(p=period, alice=world.ids["alice"])
    body = {"period": period} if method == "POST" else None
    response = server.request(method, url, world.keys[who], json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert "outside the months the platform accepts" in error["message"]


@pytest.mark.parametrize("period", ["0000-01", "9999-12"])
def test_a_period_outside_the_accepted_months_is_a_400_on_the_dashboard(served, period):
    server, world = served
    with httpx.Client(base_url=server.url) as browser:
        browser.post("/login", data={"api_key": world.keys["alice"]})
        for path in (f"/statements/{period}", f"/statements/{period}.csv"):
            page = browser.get(path)
            assert page.status_code == 400, path
            assert "outside the months the platform accepts" in page.text


@pytest.mark.parametrize(
    ("path", "who"),
    [
        ("/v1/me/contributions/%00", "alice"),
        ("/v1/me/contributions/" + "c" * 201, "alice"),
        ("/v1/contributors/%00/statements/" + PERIOD, "audrey"),
        ("/v1/contributors/a%0Ab/statements/" + PERIOD, "audrey"),
        ("/v1/allocations?revenue_id=%00", "audrey"),
    ],
)
def test_an_id_no_fact_could_hold_is_a_400_not_a_500(served, path, who):
    """Before: a NUL in a path reached PostgreSQL, which refused it: 500."""
    server, world = served
    response = server.get(path, world.keys[who])
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"


def test_a_dashboard_page_for_an_id_no_fact_could_hold_is_a_400(served):
    server, world = served
    with httpx.Client(base_url=server.url) as browser:
        browser.post("/login", data={"api_key": world.keys["alice"]})
        assert browser.get("/contributions/%00").status_code == 400


@pytest.mark.parametrize(
    ("method", "path", "who", "status"),
    [
        ("GET", "/v1/me", "alice", 200),
        ("GET", "/v1/me/contributions", "alice", 200),
        ("GET", f"/v1/me/statements/{PERIOD}", "alice", 200),
        ("GET", "/v1/revenue", "acme", 200),
        ("GET", "/v1/payouts", "olga", 200),
        ("GET", "/v1/payouts", "alice", 403),
        ("GET", "/v1/me", None, 401),
        ("GET", "/v1/me/contributions/nothing", "alice", 404),
        ("GET", "/v1/me/statements/2026-13", "alice", 400),
        ("GET", "/openapi.json", None, 200),
    ],
)
def test_private_json_responses_are_neither_stored_nor_sniffed(served, method, path, who, status):
    server, world = served
    response = server.request(method, path, world.keys[who] if who else None)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_dashboards_json_download_and_pages_are_not_stored_either(served):
    server, world = served
    with httpx.Client(base_url=server.url) as browser:
        browser.post("/login", data={"api_key": world.keys["alice"]})
        for path in [f"/statements/{PERIOD}.json", "/", "/login"]:
            response = browser.get(path)
            assert response.headers["cache-control"] == "no-store", path
            assert response.headers["x-content-type-options"] == "nosniff", path
    style = httpx.get(f"{server.url}/static/dashboard.css")
    assert style.status_code == 200 and style.headers["x-content-type-options"] == "nosniff"
    assert "no-store" not in style.headers.get("cache-control", "")  # public, cacheable


def test_metrics_are_not_served_on_the_api_port(served):
    server, world = served
    for key in (None, world.keys["olga"]):
        assert server.get("/metrics", key).status_code == 404
    metrics = httpx.get(server.metrics_url, timeout=10)
    assert metrics.status_code == 200 and "tt_facts_processed_total" in metrics.text


def test_an_unexpected_error_is_a_500_with_a_correlation_id_and_no_internals(served):
    """Provoked for real: the payouts table disappears under the running service."""
    server, world = served

    async def rename(old: str, new: str) -> None:
        conn = await connect(server.settings.database_url, server.schema, application_name="t")
        try:
            await conn.execute(f"ALTER TABLE {old} RENAME TO {new}")
        finally:
            await conn.close()

    asyncio.run(rename("payouts", "payouts_hidden"))
    try:
        response = server.get("/v1/payouts", world.keys["olga"])
    finally:
        asyncio.run(rename("payouts_hidden", "payouts"))
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "internal"
    correlation_id = re.search(r"correlation id ([0-9a-f]{32})", error["message"]).group(1)
    assert response.headers["x-correlation-id"] == correlation_id
    for internal in ('relation "', "does not exist", "Undefined", "asyncpg", "Traceback", "SELECT"):
        assert internal not in response.text, internal
    assert response.headers["cache-control"] == "no-store"
    log = server.log_tail()
    assert correlation_id in log and "UndefinedTableError" in log
    assert server.get("/v1/payouts", world.keys["olga"]).status_code == 200


def test_staff_and_contributors_lists_still_hold_after_the_hardening(served, zeta):
    """The access rules that held before still hold: a contributor sees only its own."""
    server, world = served
    mine = server.get("/v1/me/allocations", world.keys["alice"]).json()["allocations"]
    assert mine and {a["contributor_id"] for a in mine} == {world.ids["alice"]}
    assert server.get("/v1/revenue", world.keys["alice"]).status_code == 403
    assert query(server.settings, server.schema, "SELECT 1 FROM agreements")
