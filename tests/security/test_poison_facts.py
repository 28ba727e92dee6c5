"""No fact can stop a service: hand-made facts that a projection cannot store, published
straight onto the topics of real ingest, payout and ledger processes. Each is
dead-lettered by every service that reads it, with a reason naming the problem; nothing
of it is written; and each service goes on to apply the next, good fact."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.rules.ids import derived_id
from tests import ledger_facts as f
from tests.security.support import (
    INGEST_GROUP,
    LEDGER_GROUP,
    PAYOUT_GROUP,
    Platform,
    envelope,
    principal_fact,
    publish,
    query,
    start_platform,
    wait_for_dead_letter,
    wait_until,
)
from tt.facts.v1 import common_pb2, contribution_pb2, ledger_pb2

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def platform(settings, tmp_path_factory):
    running = start_platform(settings, tmp_path_factory.mktemp("poison"), with_ledger=True)
    yield running
    running.stop()


def received(contributor_id: str, file_name: str, upload_id: str | None = None):
    contribution_id = derived_id("security.contribution", uuid.uuid4().hex)
    fact = contribution_pb2.ContributionReceived(
        contribution_id=contribution_id,
        contributor_id=contributor_id,
        upload_id=upload_id or f"u-{uuid.uuid4().hex[:12]}",
        dataset_name="field manuals",
        file_name=file_name,
        format=contribution_pb2.DATASET_FORMAT_TEXT,
        compression=contribution_pb2.COMPRESSION_NONE,
        raw_blob=common_pb2.BlobRef(uri=f"blob://sha256/{'a' * 64}", sha256="a" * 64, byte_size=9),
        document_count=1,
        accepted_terms=contribution_pb2.AcceptedTerms(
            terms_id="standard-2026-01", terms_sha256="b" * 64, accepted_at=f.timestamp(f.T0)
        ),
        encryption_key_id="k",
    )
    return envelope(fact), contribution_id


def registered(platform: Platform, role: str = "contributor") -> tuple[str, str]:
    """A good principal, published and applied by ingest and payout: (id, key)."""
    fact_envelope, key, fact = principal_fact(role)
    publish(platform.settings, fact_envelope)
    wait_until(
        lambda: platform.payout.get("/v1/me", key).status_code == 200,
        what="payout to apply a good principal",
    )
    wait_until(
        lambda: query(
            platform.settings,
            platform.ingest.schema,
            "SELECT 1 FROM principals WHERE principal_id = $1",
            fact.principal_id,
        ),
        what="ingest to apply a good principal",
    )
    return fact.principal_id, key


def test_a_principal_of_a_role_the_schema_does_not_define_stops_no_service(platform):
    """Before: validation checked only that the role was set, and payout exited with
    KeyError on this fact, again on every restart."""
    poison, _, fact = principal_fact("operator")
    poison.principal_registered.role = 99
    publish(platform.settings, poison)
    for group in (INGEST_GROUP, PAYOUT_GROUP):
        letter = wait_for_dead_letter(platform.settings, group, poison.event_id)
        assert "role is 99, which is not a Role" in letter.reason, letter
    for schema in (platform.ingest.schema, platform.payout.schema):
        assert not query(
            platform.settings,
            schema,
            "SELECT 1 FROM principals WHERE principal_id = $1",
            fact.principal_id,
        )
    registered(platform)  # the next fact is applied by both
    platform.still_serving()


@pytest.mark.parametrize(
    ("file_name", "phrase"),
    [
        ("report\x00.txt", "file_name contains the control character U+0000 at position 6"),
        ("a\nforged log line", "file_name contains the control character U+000A"),
        ("f" * 300, "file_name must be at most 255 characters, got 300"),
    ],
    ids=["nul", "newline", "overlong"],
)
def test_a_contribution_whose_file_name_no_table_can_hold_stops_no_service(
    platform, file_name, phrase
):
    """Before: a U+0000 in file_name was refused by PostgreSQL in ingest's and payout's
    projections, and both exited, payout again on every restart."""
    contributor_id, key = registered(platform)
    poison, poison_id = received(contributor_id, file_name)
    publish(platform.settings, poison)
    for group in (INGEST_GROUP, PAYOUT_GROUP):
        letter = wait_for_dead_letter(platform.settings, group, poison.event_id)
        assert phrase in letter.reason, letter
    good, good_id = received(contributor_id, "manual.txt")
    publish(platform.settings, good)
    listed = wait_until(
        lambda: [
            c["contribution_id"]
            for c in platform.payout.get("/v1/me/contributions", key).json()["contributions"]
        ],
        what="payout to apply the good contribution",
    )
    assert listed == [good_id]
    wait_until(
        lambda: query(
            platform.settings,
            platform.ingest.schema,
            "SELECT 1 FROM contributions WHERE contribution_id = $1",
            good_id,
        ),
        what="ingest to apply the good contribution",
    )
    for schema in (platform.ingest.schema, platform.payout.schema):
        assert not query(
            platform.settings,
            schema,
            "SELECT 1 FROM contributions WHERE contribution_id = $1",
            poison_id,
        )
    platform.still_serving()


def test_a_fact_that_passes_validation_but_breaks_a_constraint_is_dead_lettered(platform):
    """Two contribution.received facts claiming one upload id of one contributor: both
    valid, but ingest's projection has UNIQUE (contributor_id, upload_id). PostgreSQL
    refuses the second; the inbox rolls it back and dead-letters it with the
    constraint's name; ingest goes on."""
    contributor_id, _ = registered(platform)
    first, first_id = received(contributor_id, "a.txt", upload_id="same-upload")
    second, second_id = received(contributor_id, "b.txt", upload_id="same-upload")
    publish(platform.settings, first, second)

    def outcome():
        stored = query(
            platform.settings,
            platform.ingest.schema,
            "SELECT contribution_id FROM contributions WHERE contributor_id = $1",
            contributor_id,
        )
        return stored or None

    [stored] = wait_until(outcome, what="ingest to apply one of the two")
    loser = second if stored["contribution_id"] == first_id else first
    assert stored["contribution_id"] in (first_id, second_id)
    letter = wait_for_dead_letter(platform.settings, INGEST_GROUP, loser.event_id)
    assert "UniqueViolation (SQLSTATE 23505)" in letter.reason, letter
    assert "contributions_contributor_id_upload_id_key" in letter.reason, letter
    assert "handler rejected the fact" in letter.reason
    good, good_id = received(contributor_id, "c.txt")
    publish(platform.settings, good)
    wait_until(
        lambda: query(
            platform.settings,
            platform.ingest.schema,
            "SELECT 1 FROM contributions WHERE contribution_id = $1",
            good_id,
        ),
        what="ingest to apply the next contribution",
    )
    platform.still_serving()


def _revenue(period: str):
    return f.revenue(
        "consumer-1", f"INV-{uuid.uuid4().hex[:8]}", "chat", period, 100_000, "agreement-1", ["d-1"]
    )


@pytest.mark.parametrize(
    ("make", "phrase", "groups"),
    [
        (
            lambda: _revenue("0000-01"),
            "period 0000-01 is outside the months the platform accepts",
            (LEDGER_GROUP,),
        ),
        (
            lambda: _revenue("9999-12"),
            "period 9999-12 is outside the months the platform accepts",
            (LEDGER_GROUP,),
        ),
        (
            lambda: _with(
                f.agreement(uuid.uuid4().hex, "consumer-1", "chat", 1000),
                lambda a: setattr(a.agreement_published, "weighting_rule", 99),
            ),
            "weighting_rule is 99, which is not a WeightingRule",
            (LEDGER_GROUP, PAYOUT_GROUP),
        ),
        (
            lambda: _with(
                f.withdrawn(uuid.uuid4().hex, "someone", datetime(2027, 1, 1, tzinfo=UTC)),
                lambda w: setattr(w.contribution_withdrawn.effective_at, "seconds", 2**37),
            ),
            "effective_at must lie between 1970-01-01 and 2200-01-01",
            (LEDGER_GROUP, INGEST_GROUP, PAYOUT_GROUP),
        ),
        (
            lambda: envelope(
                ledger_pb2.PayoutIssued(
                    payout_id=uuid.uuid4().hex,
                    payout_run_id="run",
                    contributor_id="someone",
                    period="2999-12",
                    currency="USD",
                    amount_minor=925_000,
                )
            ),
            "period 2999-12 is outside the months the platform accepts",
            (LEDGER_GROUP, PAYOUT_GROUP),
        ),
        (
            lambda: envelope(
                ledger_pb2.PayoutIssued(
                    payout_id=uuid.uuid4().hex,
                    payout_run_id="run",
                    contributor_id="someone",
                    period="2150-01",
                    currency="USD",
                    amount_minor=925_000,
                )
            ),
            "period 2150-01 had not begun when the payout was issued",
            (LEDGER_GROUP, PAYOUT_GROUP),
        ),
    ],
    ids=[
        "revenue-0000-01",
        "revenue-9999-12",
        "weighting-rule-99",
        "withdrawal-year-6325",
        "payout-2999-12",
        "payout-before-its-period",
    ],
)
def test_facts_out_of_the_schemas_range_stop_no_service(platform, make, phrase, groups):
    poison = make()
    publish(platform.settings, poison)
    for group in groups:
        letter = wait_for_dead_letter(platform.settings, group, poison.event_id)
        assert phrase in letter.reason, letter
    # The ledger goes on: a good agreement after the poison is stored.
    good = f.agreement(uuid.uuid4().hex, "consumer-1", "chat", 1000)
    publish(platform.settings, good)
    wait_until(
        lambda: query(
            platform.settings,
            platform.ledger.schema,
            "SELECT 1 FROM agreements WHERE agreement_id = $1",
            good.agreement_published.agreement_id,
        ),
        what="the ledger to store the good agreement",
    )
    assert not query(
        platform.settings,
        platform.ledger.schema,
        "SELECT 1 FROM revenue WHERE event_id = $1 UNION ALL "
        "SELECT 1 FROM agreements WHERE event_id = $1",
        poison.event_id,
    )
    platform.still_serving()


def _with(fact_envelope, change):
    change(fact_envelope)
    return fact_envelope
