"""Which terms govern a period: the agreement in force and the deployments live
(docs/allocation.md, "Which terms apply"). Pure functions of the consumer's
agreement.published and service.deployed facts and of when the broker appended each
(`published_at`, the topic's LogAppendTime: the broker's clock, which no consumer sets).

Two rules make the choice the platform's, not the consumer's, and the same in every
replay:

1. Terms take effect no earlier than they are published: an agreement at the later of
   its `effective_from` and its publication, a deployment at the later of its
   `deployed_from` and its publication. Among the terms that took effect before a period
   ended, the usual rule applies: the agreement in force at the period's first instant
   governs the whole period (else the first to take effect during it), and the service
   ran on the deployment live at that instant and every one that took effect during the
   period. So terms published during a period change the next one, never the current one
   and never a past one.
2. A period that ended without any terms may be filled once, afterwards: by the earliest
   published agreement whose dates cover it (a deployment: whose `deployed_from` is
   before the period's end). Later publications never replace it. This is how a consumer
   that joins the platform (or starts a service) records revenue for months already past.

A revenue event is judged by the terms published before it (the caller passes only
those): terms published later can change nothing that was already decided.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

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
    # When the broker appended the agreement.published fact; None where unknown (a fact
    # being written, not yet on the log), which leaves effective_from as it is.
    published_at: datetime | None = None

    @property
    def takes_effect(self) -> datetime:
        """The later of effective_from and publication: no terms apply before they exist."""
        if self.published_at is None:
            return self.effective_from
        return max(self.effective_from, self.published_at)


def _published(item: AgreementTerms | Deployment) -> datetime:
    return item.published_at or datetime.min.replace(tzinfo=UTC)


def covers(agreement: AgreementTerms, period: str) -> bool:
    """Whether the agreement's dates (not its publication) overlap the period."""
    start, end = period_bounds(period)
    until = agreement.effective_until
    return agreement.effective_from < end and (until is None or until > start)


def _took_effect_before(agreement: AgreementTerms, end: datetime) -> bool:
    """Whether the agreement was in force at some instant before `end`, counting from
    when it took effect (an agreement published after its own end never was)."""
    begins = agreement.takes_effect
    until = agreement.effective_until
    return begins < end and (until is None or until > begins)


def agreement_in_force(
    agreements: Iterable[AgreementTerms], service_id: str, period: str
) -> AgreementTerms | None:
    """The agreement that governs a whole period. Of those that took effect before the
    period ended: the one in force at its first instant (the one that took effect most
    recently, then the largest id); if none was, the first to take effect during the
    period (then the smallest id). If none took effect before the period ended: the
    earliest published of those whose dates cover it (then the smallest id).
    """
    start, end = period_bounds(period)
    dated = [a for a in agreements if a.service_id == service_id and covers(a, period)]
    timely = [a for a in dated if _took_effect_before(a, end)]
    at_start = [a for a in timely if a.takes_effect <= start]
    if at_start:
        return max(at_start, key=lambda a: (a.takes_effect, a.agreement_id))
    if timely:
        return min(timely, key=lambda a: (a.takes_effect, a.agreement_id))
    if dated:
        return min(dated, key=lambda a: (_published(a), a.agreement_id))
    return None


@dataclass(frozen=True)
class Deployment:
    deployment_id: str
    service_id: str
    snapshot_ids: tuple[str, ...]
    deployed_from: datetime
    # When the broker appended the service.deployed fact (see AgreementTerms).
    published_at: datetime | None = None
    consumer_id: str = ""

    @property
    def takes_effect(self) -> datetime:
        if self.published_at is None:
            return self.deployed_from
        return max(self.deployed_from, self.published_at)


def deployments_for(
    deployments: Iterable[Deployment], service_id: str, period: str
) -> list[Deployment]:
    """The deployments a service ran on during a period, in the order they took effect
    (then by id). Of those that took effect before the period ended: the one live at its
    first instant (the latest to take effect by then, then the largest id) and every one
    that took effect during the period. If none took effect before the period ended: the
    earliest published of those deployed (by their dates) before its end (then the
    smallest id)."""
    start, end = period_bounds(period)
    dated = [d for d in deployments if d.service_id == service_id and d.deployed_from < end]
    before = [d for d in dated if d.takes_effect <= start]
    chosen = [d for d in dated if start < d.takes_effect < end]
    if before:
        chosen.append(max(before, key=lambda d: (d.takes_effect, d.deployment_id)))
    if not chosen and dated:
        chosen = [min(dated, key=lambda d: (_published(d), d.deployment_id))]
    return sorted(chosen, key=lambda d: (d.takes_effect, d.deployment_id))
