"""Read-only queries for the monitoring pages."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q

from feeds.models import Instrument, PoolAssignment, ProviderAccount, Tier


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
