"""Which terms govern a period: the agreement in force and the deployments live
(docs/money.md, "Which terms apply"). Pure functions of the consumer's agreement.published
and service.deployed facts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from services.rules.allocation import period_bounds


@dataclass(frozen=True)
class AgreementTerms:
    agreement_id: str
    service_id: str
    share_bps: int
    currency: str
    effective_from: datetime
    effective_until: datetime | None
    min_payout_minor: int = 0
    weighting_rule: int = 1


def covers(agreement: AgreementTerms, period: str) -> bool:
    start, end = period_bounds(period)
    return agreement.effective_from < end and (
        agreement.effective_until is None or agreement.effective_until > start
    )


def agreement_in_force(
    agreements: Iterable[AgreementTerms], service_id: str, period: str
) -> AgreementTerms | None:
    """The agreement that governs a whole period: the one in force at the period's first
    instant (the most recently effective, if several); if none was, the first to take
    effect during the period. A change of terms mid-period applies from the next period.
    """
    start, _ = period_bounds(period)
    candidates = [a for a in agreements if a.service_id == service_id and covers(a, period)]
    at_start = [a for a in candidates if a.effective_from <= start]
    if at_start:
        return max(at_start, key=lambda a: (a.effective_from, a.agreement_id))
    if candidates:
        return min(candidates, key=lambda a: (a.effective_from, a.agreement_id))
    return None


@dataclass(frozen=True)
class Deployment:
    deployment_id: str
    service_id: str
    snapshot_ids: tuple[str, ...]
    deployed_from: datetime


def deployments_for(
    deployments: Iterable[Deployment], service_id: str, period: str
) -> list[Deployment]:
    """The deployments a service ran on during a period: the one live at the period's
    start (the latest deployed by then) and every one deployed during the period."""
    start, end = period_bounds(period)
    own = [d for d in deployments if d.service_id == service_id and d.deployed_from < end]
    before = [d for d in own if d.deployed_from <= start]
    during = [d for d in own if d.deployed_from > start]
    chosen = during
    if before:
        chosen = [max(before, key=lambda d: (d.deployed_from, d.deployment_id)), *during]
    return sorted(chosen, key=lambda d: (d.deployed_from, d.deployment_id))
