"""A payout run cannot be blocked or inflated by a bad fact. Against a real payout
service: one payout.issued for a far-future period (out of range: dead-lettered; in
range but forged in time: ignored by runs), and an allocation naming an agreement the
service does not know. Before, each made every later run answer 409, and the forged
payout's carried_forward_micros would have been paid out by the next run."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest

from services.common.periods import period_bounds, period_of
from services.payout.rebuild import rebuild_payout
from services.rules.ids import derived_id
from tests import ledger_facts as f
from tests.integration.payout_server import PERIOD, PayoutServer, World
from tests.security.support import (
    PAYOUT_GROUP,
    envelope,
    principal_fact,
    publish,
    query,
    wait_for_dead_letter,
    wait_until,
)
from tt.facts.v1 import ledger_pb2

pytestmark = pytest.mark.integration

FORGED_CARRY_MICROS = 9_250_000_000  # 9,250.00 USD
UNKNOWN_AGREEMENT = f"agreement-never-published-{uuid.uuid4().hex[:6]}"
CAROL_MICROS = 5_000_000  # 5.00 USD
NEXT_PERIOD = "2026-11"


@dataclass
class Scenario:
    server: PayoutServer
    world: World
    carol: str
    carol_allocation: str
    out_of_range: str  # event id of the payout.issued for 2999-12
    run: httpx.Response  # PERIOD, after the poison
    next_run: httpx.Response  # NEXT_PERIOD, after the agreement arrived


def run(server: PayoutServer, world: World, period: str) -> httpx.Response:
    return server.request("POST", "/v1/payout-runs", world.keys["olga"], json={"period": period})


@pytest.fixture(scope="module")
def scenario(settings, tmp_path_factory) -> Scenario:
    assert period_bounds(NEXT_PERIOD)[0] <= datetime.now(UTC), "the test needs a past period"
    with PayoutServer.start(settings, tmp_path_factory.mktemp("runs")) as server:
        world = server.publish_world()
        wait_until(
            lambda: query(server.settings, server.schema, "SELECT 1 FROM agreements"),
            what="the world's agreement",
        )
        alice = world.ids["alice"]
        # 1. Out of range: dead-lettered by validation.
        out_of_range = envelope(
            ledger_pb2.PayoutIssued(
                payout_id=uuid.uuid4().hex,
                payout_run_id="forged",
                contributor_id=alice,
                period="2999-12",
                currency="USD",
                carried_forward_micros=FORGED_CARRY_MICROS,
            )
        )
        # 2. In range and dated inside its period, as a forger would: valid, stored, and
        # no run may be blocked or inflated by it.
        forged_at = datetime(2150, 2, 1, tzinfo=UTC)
        in_the_future = envelope(
            ledger_pb2.PayoutIssued(
                payout_id=uuid.uuid4().hex,
                payout_run_id="forged",
                contributor_id=alice,
                period="2150-01",
                currency="USD",
                carried_forward_micros=FORGED_CARRY_MICROS,
            ),
            at=forged_at,
        )
        # 3. An allocation under an agreement the service has never seen.
        carol_fact, carol_key, carol = principal_fact("contributor", "Carol")
        first = world.allocations[0]
        revenue_id = derived_id("security.revenue", uuid.uuid4().hex)
        orphan = ledger_pb2.AllocationMade(
            allocation_id=derived_id("allocation.made", revenue_id, "carol-contribution"),
            revenue_id=revenue_id,
            service_id=first.service_id,
            agreement_id=UNKNOWN_AGREEMENT,
            contributor_id=carol.principal_id,
            contribution_id="carol-contribution",
            period=PERIOD,
            currency="USD",
            allocated_micros=CAROL_MICROS,
            pool_micros=CAROL_MICROS,
            weight=1,
            total_weight=1,
        )
        publish(server.settings, out_of_range, in_the_future, carol_fact, envelope(orphan))
        wait_for_dead_letter(server.settings, PAYOUT_GROUP, out_of_range.event_id)
        staff = world.keys["olga"]
        wait_until(
            lambda: server.get("/v1/payouts?period=2150-01", staff).json()["payouts"],
            what="the forged future payout to be stored",
        )
        wait_until(
            lambda: any(
                a["allocation_id"] == orphan.allocation_id
                for a in server.get("/v1/allocations", staff).json()["allocations"]
            ),
            what="the orphan allocation to be stored",
        )
        first_run = run(server, world, PERIOD)
        # The agreement arrives late: a later run pays what was held back.
        publish(
            server.settings,
            f.agreement(UNKNOWN_AGREEMENT, world.ids["acme"], first.service_id, 1500),
        )
        wait_until(
            lambda: query(
                server.settings,
                server.schema,
                "SELECT 1 FROM agreements WHERE agreement_id = $1",
                UNKNOWN_AGREEMENT,
            ),
            what="the late agreement",
        )
        next_run = run(server, world, NEXT_PERIOD)
        yield Scenario(
            server,
            world,
            carol.principal_id,
            orphan.allocation_id,
            out_of_range.event_id,
            first_run,
            next_run,
        )
        assert carol_key  # registered, though this module never signs carol in


def issued_to(response: httpx.Response, contributor_id: str) -> dict | None:
    issued = response.json()["issued"]
    return next((p for p in issued if p["contributor_id"] == contributor_id), None)


def test_a_payout_for_a_period_out_of_range_is_dead_lettered(scenario):
    letter = wait_for_dead_letter(
        scenario.server.settings, PAYOUT_GROUP, scenario.out_of_range, timeout_s=5
    )
    assert "period 2999-12 is outside the months the platform accepts" in letter.reason
    assert not query(
        scenario.server.settings,
        scenario.server.schema,
        "SELECT 1 FROM payouts WHERE period = '2999-12'",
    )


def test_a_forged_future_payout_does_not_block_the_next_run(scenario):
    assert scenario.run.status_code == 200, scenario.run.text
    assert period_of(datetime.now(UTC)) < "2150-01"


def test_a_forged_future_payout_does_not_inflate_the_next_run(scenario):
    world = scenario.world
    alice = issued_to(scenario.run, world.ids["alice"])
    assert alice["opening_carried_micros"] == 0  # not the forged 9,250.00 USD
    assert alice["allocated_micros"] == world.allocated_micros("alice")
    assert alice["amount_minor"] == world.allocated_micros("alice") // 10_000
    assert scenario.run.json()["paid_minor_by_currency"]["USD"] < FORGED_CARRY_MICROS // 10_000


def test_an_allocation_naming_an_unknown_agreement_is_held_back_not_a_409(scenario):
    body = scenario.run.json()
    assert issued_to(scenario.run, scenario.carol) is None
    [held] = body["held"]
    assert held["allocation_id"] == scenario.carol_allocation
    expected = f"its agreement {UNKNOWN_AGREEMENT} has not reached the payout service"
    assert expected in held["reason"]
    # Everybody else was paid.
    assert {p["contributor_id"] for p in body["issued"]} == {
        scenario.world.ids["alice"],
        scenario.world.ids["bob"],
    }


def test_the_held_allocation_is_paid_once_its_agreement_is_known(scenario):
    assert scenario.next_run.status_code == 200, scenario.next_run.text
    carol = issued_to(scenario.next_run, scenario.carol)
    assert carol["allocations"] == 1 and carol["allocated_micros"] == CAROL_MICROS
    assert carol["amount_minor"] == CAROL_MICROS // 10_000
    assert scenario.next_run.json()["held"] == []


def test_the_service_still_serves_after_all_of_it(scenario):
    assert scenario.server.get("/readyz").status_code == 200
    assert scenario.server.process.poll() is None


def test_a_rebuild_from_the_log_gives_the_same_projection(scenario):
    """Last: it stops the service. Replaying the log (the poison refused again, the held
    allocation and the forged payout stored again) gives the projection byte for byte."""
    scenario.server.process.terminate()
    scenario.server.process.wait(30)
    result = asyncio.run(rebuild_payout(scenario.server.settings, scenario.server.schema))
    assert result.identical, (result.counts_before, result.counts_after)
    assert result.facts_rejected == 0  # the 2999-12 payout never reaches the projector
    assert result.invalid_records == 1
    assert result.counts_after["revoked_keys"] == 0
