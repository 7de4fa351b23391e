"""Read-only queries for the monitoring pages."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Case, Count, IntegerField, Q, Value, When

from feeds.models import (
    Instrument,
    PlacementIssue,
    PlacementIssueKind,
    PoolAssignment,
    ProviderAccount,
    Tier,
)

PLACEMENT_ISSUES_SHOWN = 50


@dataclass(frozen=True, slots=True)
class TierCount:
    tier: str
    label: str
    enabled: int
    total: int


@dataclass(frozen=True, slots=True)
class HubOverview:
    instruments: int
    enabled: int
    linked_both: int
    tiers: list[TierCount]
    accounts: list[ProviderAccount]
    assignments: int


def hub_overview_get() -> HubOverview:
    """Counts for the home page: instruments by tier, provider accounts, assignments."""
    totals = Instrument.objects.aggregate(
        instruments=Count("id"),
        enabled=Count("id", filter=Q(enabled=True)),
        linked_both=Count("id", filter=~Q(fyers_token="") & ~Q(upstox_key="")),
    )
    by_tier = {
        row["tier"]: row
        for row in Instrument.objects.values("tier").annotate(
            total=Count("id"), enabled=Count("id", filter=Q(enabled=True))
        )
    }
    tiers = [
        TierCount(
            tier=tier.value,
            label=tier.label,
            enabled=by_tier.get(tier.value, {}).get("enabled", 0),
            total=by_tier.get(tier.value, {}).get("total", 0),
        )
        for tier in Tier
    ]
    return HubOverview(
        instruments=totals["instruments"],
        enabled=totals["enabled"],
        linked_both=totals["linked_both"],
        tiers=tiers,
        accounts=list(ProviderAccount.objects.all()),
        assignments=PoolAssignment.objects.count(),
    )


@dataclass(frozen=True, slots=True)
class PlacementOverview:
    left_out: int
    one_provider: int
    total: int
    issues: list[PlacementIssue]  # the most important first, at most ``limit``


def placement_overview_get(*, limit: int = PLACEMENT_ISSUES_SHOWN) -> PlacementOverview:
    """Enabled instruments the pool leaves out or carries on one provider only.

    Most important first, as the pool ranks them: tier, then priority descending, then key.
    """
    issues = PlacementIssue.objects.filter(instrument__enabled=True)
    counts = issues.aggregate(
        left_out=Count("id", filter=Q(kind=PlacementIssueKind.LEFT_OUT)),
        one_provider=Count("id", filter=Q(kind=PlacementIssueKind.ONE_PROVIDER)),
    )
    tier_rank = Case(
        *(When(instrument__tier=tier.value, then=Value(rank)) for rank, tier in enumerate(Tier)),
        default=Value(len(Tier)),
        output_field=IntegerField(),
    )
    first = (
        issues.select_related("instrument")
        .annotate(tier_rank=tier_rank)
        .order_by("tier_rank", "-instrument__priority", "instrument__key")[:limit]
    )
    return PlacementOverview(
        left_out=counts["left_out"],
        one_provider=counts["one_provider"],
        total=counts["left_out"] + counts["one_provider"],
        issues=list(first),
    )
