"""Browser fixtures: a real headless Chromium (Debian's `chromium` and `chromium-driver`,
installed by deploy/local/browser.sh) driven by Selenium through the system binaries, so
nothing is downloaded. The tests also need the local stack (make up)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.integration.conftest import settings, stack_is_up  # noqa: F401 (fixtures)

CHROMIUM = Path(os.environ.get("TT_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("TT_CHROMEDRIVER", "/usr/bin/chromedriver"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives the pages in a real headless Chromium")


@pytest.fixture(scope="module")
def browser():
    """Fails, never skips, without Chromium: the pages must be tested in a real browser."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(
            f"no {' or '.join(missing)}: the browser tests need Debian's chromium and "
            "chromium-driver; run deploy/local/browser.sh (it installs them with apt-get)",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # read by the tests
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
