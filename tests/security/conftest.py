"""The security suite runs against the real stack (`make up`): the broker's listeners and
ACLs, PostgreSQL's roles, the services. It shares the integration fixtures (one broker,
one database; a topic prefix and schema per test)."""

from tests.integration.conftest import (  # noqa: F401  (fixtures)
    admin,
    consumer_for,
    keys,
    pool,
    producer,
    registry,
    schema,
    settings,
    signers,
    stack_is_up,
    unique,
)
