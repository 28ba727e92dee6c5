"""The contributor dashboard's server-rendered pages, over HTTP against a real payout
service process: sign in and out, the session cookie, each page's numbers, and who may
see what. (tests/browser drives the same pages in a real Chromium.)"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import stat
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from services.common.db import connect
from services.common.money import format_micros, format_minor
from tests.integration.payout_server import PERIOD, PayoutServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(settings, tmp_path_factory):
    """One payout service and one world for the module: these tests only read."""
    with PayoutServer.start(settings, tmp_path_factory.mktemp("dashboard")) as server:
        yield server, server.publish_world()


@contextmanager
def client(server: PayoutServer, key: str) -> Iterator[httpx.Client]:
    """A browser-like client signed in with `key`: keeps cookies, follows no redirects."""
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as session:
        response = session.post("/login", data={"api_key": key})
        assert response.status_code == 303, response.text
        yield session


def test_login_page_is_an_accessible_form(served):
    server, _ = served
    page = httpx.get(f"{server.url}/login")
    assert page.status_code == 200
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page.text
    assert '<label for="api-key">API key</label>' in page.text
    assert 'id="api-key" name="api_key" type="password"' in page.text
    assert '<main id="main">' in page.text and '<form method="post" action="/login"' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none'


@pytest.mark.parametrize(
    "path", ["/", "/contributions/x", f"/statements/{PERIOD}", f"/statements/{PERIOD}.csv"]
)
def test_without_a_session_every_page_redirects_to_login(served, path):
    server, _ = served
    response = httpx.get(server.url + path)
    assert response.status_code == 303 and response.headers["location"] == "/login"


@pytest.mark.parametrize(
    ("key", "message"),
    [("tt_not_a_key_of_this_platform", "This API key is not known"), ("", "Enter your API key")],
)
def test_a_bad_key_shows_the_login_page_with_an_error(served, key, message):
    server, _ = served
    response = httpx.post(f"{server.url}/login", data={"api_key": key})
    assert response.status_code == 401
    assert message in response.text and 'role="alert"' in response.text
    assert 'aria-invalid="true"' in response.text and "set-cookie" not in response.headers


def test_sign_in_sets_a_session_cookie_recorded_on_the_server_not_the_key(served):
    server, world = served
    response = httpx.post(f"{server.url}/login", data={"api_key": world.keys["alice"]})
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/", f"max-age={8 * 3600}"} <= attributes
    token = cookie.split(";")[0].removeprefix("tt_session=")
    assert world.keys["alice"] not in cookie and world.ids["alice"] not in cookie
    assert len(token) >= 43  # 256 random bits
    session = server_session(server, token)
    assert session["principal_id"] == world.ids["alice"]
    assert 0 < (session["expires_at"] - session["created_at"]).total_seconds() <= 8 * 3600
    key_file = server.run_dir / "secrets" / "dashboard-session.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and len(key_file.read_bytes()) == 32


def session_digest(server: PayoutServer, token: str) -> str:
    """What the server stores of a cookie's token: its HMAC under the dashboard's key."""
    secret = (server.run_dir / "secrets" / "dashboard-session.key").read_bytes()
    return hmac.new(secret, token.encode(), hashlib.sha256).hexdigest()


def server_session(server: PayoutServer, token: str) -> dict | None:
    """The session the server recorded for a cookie token."""

    async def read() -> dict | None:
        conn = await connect(server.settings.database_url, server.schema, application_name="t")
        try:
            row = await conn.fetchrow(
                "SELECT * FROM dashboard_sessions WHERE token_digest = $1",
                session_digest(server, token),
            )
            return dict(row) if row else None
        finally:
            await conn.close()

    return asyncio.run(read())


def test_forms_posted_from_another_site_are_refused(served):
    server, world = served
    for path in ["/login", "/logout"]:
        response = httpx.post(
            server.url + path,
            data={"api_key": world.keys["alice"]},
            headers={"Origin": "https://elsewhere.example"},
        )
        assert response.status_code == 403 and "set-cookie" not in response.headers
    same_site = httpx.post(
        f"{server.url}/login", data={"api_key": world.keys["alice"]}, headers={"Origin": server.url}
    )
    assert same_site.status_code == 303


def test_a_forged_or_expired_session_is_sent_to_login(served):
    server, world = served
    with client(server, world.keys["alice"]) as alice:
        token = alice.cookies["tt_session"]
        assert alice.get("/").status_code == 200

    async def expire() -> None:
        conn = await connect(server.settings.database_url, server.schema, application_name="t")
        try:
            await conn.execute(
                "UPDATE dashboard_sessions SET expires_at = now() - interval '1 second' "
                "WHERE token_digest = $1",
                session_digest(server, token),
            )
        finally:
            await conn.close()

    for forged in [
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # a token never issued
        session_digest(server, token),  # what the server stores, as a cookie
        world.ids["alice"],
        "garbage",
        "x" * 5000,
    ]:
        response = httpx.get(f"{server.url}/", cookies={"tt_session": forged})
        assert response.status_code == 303, forged
    assert httpx.get(f"{server.url}/", cookies={"tt_session": token}).status_code == 200
    asyncio.run(expire())
    assert httpx.get(f"{server.url}/", cookies={"tt_session": token}).status_code == 303


def test_overview_lists_contributions_earnings_and_statements(served):
    server, world = served
    with client(server, world.keys["alice"]) as alice:
        page = alice.get("/")
    assert page.status_code == 200
    first, second = world.contributions["alice"]
    assert f'href="/contributions/{first}">alice-0.jsonl</a>' in page.text
    assert f'href="/contributions/{second}">alice-1.jsonl</a>' in page.text
    assert '<td class="num">3 / 2</td>\n  <td class="num">30,000</td>' in page.text
    assert '<td class="num">1 / 1</td>\n  <td class="num">12,345</td>' in page.text
    assert world.contributions["bob"][0] not in page.text
    earned = format_micros(world.allocated_micros("alice"), "USD")
    assert f'<th scope="row">{PERIOD}</th><td class="num">{earned}</td>' in page.text
    assert '<svg role="img" aria-labelledby="earnings-1-title earnings-1-desc"' in page.text
    assert f'href="/statements/{PERIOD}">{PERIOD}</a>' in page.text


def test_report_page_shows_the_processed_facts_and_escapes_the_report(served):
    server, world = served
    first = world.contributions["alice"][0]
    with client(server, world.keys["alice"]) as alice:
        page = alice.get(f"/contributions/{first}").text
    assert '<span id="tokens-accepted">30,000</span>' in page
    assert '<span id="tokens-raw">30,500</span>' in page
    assert (
        '<tr data-outcome="near_duplicate/earlier_contribution"><th scope="row">removed: near '
        'duplicate (earlier contribution)</th><td class="num">1</td><td class="num"><span '
        'class="tokens">500</span> <span class="share">(1.6 %)</span></td>'
    ) in page
    assert '<tr data-kind="email"><th scope="row">email</th><td class="num">2</td>' in page
    assert '<tr data-language="en"><th scope="row">en</th><td class="num">2</td>' in page
    assert '<th scope="row">0.7 to 0.8</th><td class="num">1 documents</td>' in page
    assert "&lt;b&gt;copied&lt;/b&gt; &amp; pasted" in page and "<b>copied</b>" not in page


def test_a_contributor_cannot_open_another_contributors_report(served):
    server, world = served
    with client(server, world.keys["alice"]) as alice:
        for contribution_id in [world.contributions["bob"][0], "no-such-contribution"]:
            page = alice.get(f"/contributions/{contribution_id}")
            assert page.status_code == 404
            assert f"You have no contribution {contribution_id}." in page.text


def test_a_statement_of_a_period_that_is_not_an_accepted_month_is_a_400(served):
    server, world = served
    with client(server, world.keys["alice"]) as alice:
        for period in ["2026-13", "0000-01", "9999-12"]:
            page = alice.get(f"/statements/{period}")
            assert page.status_code == 400, period
            assert "YYYY-MM" in page.text or "outside the months" in page.text


def test_statement_page_spells_out_each_allocation_and_downloads_match_the_api(served):
    server, world = served
    key = world.keys["alice"]
    body = server.get(f"/v1/me/statements/{PERIOD}", key).json()
    (section,) = body["statements"]
    with client(server, key) as alice:
        page = alice.get(f"/statements/{PERIOD}").text
        csv_download = alice.get(f"/statements/{PERIOD}.csv")
        json_download = alice.get(f"/statements/{PERIOD}.json")
    for a in section["allocations"]:
        basis = (
            f'<span class="basis">weight {a["weight"]:,} of total {a["total_weight"]:,} of '
            f"pool {format_micros(a['pool_micros'], 'USD')} =</span>"
        )
        amount = f'<td class="num amount">{format_micros(a["allocated_micros"], "USD")}</td>'
        assert basis in page and amount in page
    assert format_minor(section["amount_minor"], "USD") in page
    assert format_micros(section["closing_carried_micros"], "USD") in page
    assert "USD: provisional" in page
    assert csv_download.text == server.get(f"/v1/me/statements/{PERIOD}?format=csv", key).text
    assert csv_download.headers["content-type"].startswith("text/csv")
    assert json_download.json() == body


def test_other_roles_get_a_page_saying_the_dashboard_is_for_contributors(served):
    server, world = served
    with client(server, world.keys["olga"]) as olga:
        page = olga.get("/")
    assert page.status_code == 403
    assert "This dashboard is for contributors" in page.text
    assert "Your key belongs to <strong>Olga " in page.text and "an operator" in page.text
    assert world.contributions["alice"][0] not in page.text


def test_sign_out_clears_the_session(served):
    server, world = served
    with client(server, world.keys["alice"]) as alice:
        response = alice.post("/logout")
        assert response.status_code == 303 and response.headers["location"] == "/login"
        assert 'tt_session=""' in response.headers["set-cookie"]
        assert "max-age=0" in response.headers["set-cookie"].lower()
        assert alice.get("/").status_code == 303
