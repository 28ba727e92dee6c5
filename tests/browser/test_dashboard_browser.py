"""The contributor dashboard in a real headless Chromium: a contributor signs in, opens a
report and a statement, and every number on the pages equals the ledger's; the pages fit
a 360 px wide screen without scrolling sideways."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from services.common.money import format_micros, format_minor
from tests.integration.payout_server import PERIOD, PayoutServer, World

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture(scope="module")
def served(settings, tmp_path_factory):
    with PayoutServer.start(settings, tmp_path_factory.mktemp("dashboard-browser")) as server:
        yield server, server.publish_world()


def sign_in(browser: WebDriver, server: PayoutServer, key: str) -> None:
    browser.delete_all_cookies()
    browser.get(f"{server.url}/login")
    browser.find_element(By.ID, "api-key").send_keys(key)
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    WebDriverWait(browser, 10).until(lambda b: b.current_url == f"{server.url}/")


def text(root, selector: str) -> str:
    return root.find_element(By.CSS_SELECTOR, selector).text


def open_link(browser: WebDriver, href: str) -> None:
    browser.find_element(By.CSS_SELECTOR, f'main a[href="{href}"]').click()
    WebDriverWait(browser, 10).until(lambda b: b.current_url.endswith(href))


def check_statement_page(browser: WebDriver, server: PayoutServer, world: World) -> dict:
    """Every amount on the statement page equals the API's statement, and each allocation
    equals the allocation.made fact the ledger published; returns the API's statement."""
    body = server.get(f"/v1/me/statements/{PERIOD}", world.keys["alice"]).json()
    facts = {
        a.allocation_id: a for a in world.allocations if a.contributor_id == world.ids["alice"]
    }
    (section,) = body["statements"]
    currency = section["currency"]
    assert section["allocated_micros"] == world.allocated_micros("alice")
    root = browser.find_element(By.CSS_SELECTOR, f'section[data-currency="{currency}"]')
    assert text(root, "h2") == f"{currency}: {section['status']}"
    shown = {
        row.get_attribute("data-allocation"): (
            text(row, ".basis"),
            text(row, "td.amount"),
        )
        for row in root.find_elements(By.CSS_SELECTOR, "tr[data-allocation]")
    }
    assert shown == {
        a["allocation_id"]: (
            f"weight {a['weight']:,} of total {a['total_weight']:,} of pool "
            f"{format_micros(a['pool_micros'], currency)} =",
            format_micros(a["allocated_micros"], currency),
        )
        for a in section["allocations"]
    }
    assert shown == {
        allocation_id: (shown[allocation_id][0], format_micros(fact.allocated_micros, currency))
        for allocation_id, fact in facts.items()
    }
    lines = {
        row.get_attribute("data-line"): text(row, "td")
        for row in root.find_elements(By.CSS_SELECTOR, "tr[data-line]")
    }
    assert lines == {
        "opening": format_micros(section["opening_carried_micros"], currency),
        "allocated": format_micros(world.allocated_micros("alice"), currency),
        "payout": format_minor(section["amount_minor"], currency),
        "closing": format_micros(section["closing_carried_micros"], currency),
    }
    return body


def test_a_contributor_sees_the_ledgers_numbers(browser, served):
    server, world = served
    key = world.keys["alice"]
    sign_in(browser, server, key)
    assert text(browser, "h1") == server.get("/v1/me", key).json()["name"]

    first = world.contributions["alice"][0]
    open_link(browser, f"/contributions/{first}")
    processed = server.get(f"/v1/me/contributions/{first}", key).json()["processed"]
    assert text(browser, "#tokens-accepted") == f"{int(processed['tokens_accepted']):,}"
    assert text(browser, "#tokens-raw") == f"{world.report['tokens']['raw']:,}"
    (removal,) = processed["removals"]
    row = browser.find_element(
        By.CSS_SELECTOR, 'tr[data-outcome="near_duplicate/earlier_contribution"]'
    )
    assert text(row, "td:nth-of-type(1)") == f"{int(removal['documents']):,}"
    assert text(row, ".tokens") == f"{int(removal['tokens']):,}"
    for redaction in processed["redactions"]:
        shown = text(browser, f'tr[data-kind="{redaction["kind"]}"] td')
        assert shown == f"{int(redaction['count']):,}"
    assert world.report["redactions"] == {"email": 2}

    browser.get(f"{server.url}/")
    open_link(browser, f"/statements/{PERIOD}")
    before = check_statement_page(browser, server, world)
    assert before["statements"][0]["status"] == "provisional"

    run = server.request("POST", "/v1/payout-runs", world.keys["olga"], json={"period": PERIOD})
    assert run.status_code == 200, run.text
    (paid,) = [p for p in run.json()["issued"] if p["contributor_id"] == world.ids["alice"]]
    browser.refresh()
    after = check_statement_page(browser, server, world)
    (section,) = after["statements"]
    assert section["status"] == "issued" and section["amount_minor"] == paid["amount_minor"]
    assert section["closing_carried_micros"] == paid["carried_forward_micros"]
    # Every page loaded its style sheet and icon, and nothing broke the content policy.
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    header = browser.find_element(By.CSS_SELECTOR, "header.site")
    assert header.value_of_css_property("background-color") == "rgba(15, 23, 42, 1)"


def test_pages_fit_a_360_pixel_wide_screen(browser, served):
    server, world = served
    sign_in(browser, server, world.keys["alice"])
    metrics = {"width": 360, "height": 780, "deviceScaleFactor": 2, "mobile": True}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)

    def assert_fits(page: str) -> None:
        width, scroll_width, clipped = browser.execute_script(
            "const e = document.documentElement;"
            "const wraps = [...document.querySelectorAll('.table-wrap')];"
            "const clipped = wraps.filter(w => w.scrollWidth > w.clientWidth);"
            "return [e.clientWidth, e.scrollWidth, clipped.map(w => w.textContent.trim())];"
        )
        assert width == 360, page
        assert scroll_width <= width, f"{page} scrolls sideways: {scroll_width} px wide"
        # Tables may scroll in their own region, but these fit, so no number is hidden.
        assert clipped == [], f"{page}: tables wider than the screen: {clipped}"

    try:
        for path in [
            "/",
            f"/contributions/{world.contributions['alice'][0]}",
            f"/statements/{PERIOD}",
        ]:
            browser.get(server.url + path)
            assert_fits(path)
        browser.find_element(By.CSS_SELECTOR, "header form button").click()  # sign out
        WebDriverWait(browser, 10).until(lambda b: b.current_url == f"{server.url}/login")
        assert_fits("/login")
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
