"""The whole suite connects to PostgreSQL as the tests' own role, tt_tests
(docs/postgres-roles.md): not a superuser, it may create schemas (each test makes its own:
it_*, ing_*, ledger_*, ...) and drop what it created, and nothing else. TT_DATABASE_URL is
pointed at that role for the session, so every process a test starts (a service, `1tt`,
a worker) inherits it; a URL that already names a user is kept as it is.

tests/security/test_postgres_roles.py logs in as each of the platform's roles itself.
"""

from __future__ import annotations

import os

from services.common.config import Settings

TESTS_PARTY = "tests"


def pytest_configure(config) -> None:
    os.environ["TT_DATABASE_URL"] = Settings.from_env(party=TESTS_PARTY).database_url
