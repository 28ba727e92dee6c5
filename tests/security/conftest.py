"""The security suite runs against the real stack, like tests/integration, and reuses its
fixtures: each test gets its own topic prefix and schema."""

from tests.integration.conftest import (  # noqa: F401  (fixtures, found by name)
    admin,
    consumer_for,
    pool,
    producer,
    registry,
    schema,
    settings,
    stack_is_up,
    unique,
)
