"""Read paths for instruments and provider accounts."""

from __future__ import annotations

from django.db.models import QuerySet

from feeds.models import Instrument


def instruments_for_simulation(*, enabled_only: bool = False) -> QuerySet[Instrument]:
    """Instruments a simulator should list: anything with at least one provider identity."""
    queryset = Instrument.objects.exclude(fyers_token="", upstox_key="")
    return queryset.filter(enabled=True) if enabled_only else queryset
