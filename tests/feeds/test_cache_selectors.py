"""The database side of the caches: instrument refs (primary provider) and the persisted
last ticks (L4), written by ``last_ticks_record`` and read by ``last_ticks_get``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.utils import timezone

from feeds import services
from feeds.cache.layers import InstrumentRef
from feeds.models import LastTick, PoolAssignment, ProviderAccount
from feeds.selectors import instrument_refs_get, last_ticks_get
from tests.feeds.factories import instrument_make

pytestmark = pytest.mark.django_db

RECV_NS = 1_764_052_800_123_456_789


def carry(instrument, provider: str) -> None:
    account = ProviderAccount.objects.get(provider=provider)
    PoolAssignment.objects.create(
        instrument=instrument,
        account=account,
        connection_slot=0,
        data_mode="quote",
        reason="tier_rule",
        since=timezone.now(),
    )


def test_the_primary_provider_is_the_one_carrying_it_fyers_first() -> None:
    services.provider_accounts_ensure_defaults()
    both, upstox_only, neither = instrument_make(), instrument_make(), instrument_make()
    no_fyers = instrument_make(fyers_symbol="", fyers_token="")
    carry(both, "fyers")
    carry(both, "upstox")
    carry(upstox_only, "upstox")
    refs = instrument_refs_get(
        keys=[i.key for i in (both, upstox_only, neither, no_fyers)] + ["NSE:NOSUCH"]
    )
    assert {k: r.primary for k, r in refs.items()} == {
        both.key: "fyers",
        upstox_only.key: "upstox",
        neither.key: "fyers",  # not carried: FYERS when it lists the instrument
        no_fyers.key: "upstox",
    }
    assert refs[upstox_only.key] == InstrumentRef(
        upstox_only.key, "upstox", upstox_only.fyers_symbol, upstox_only.upstox_key,
        upstox_only.tier,
    )  # fmt: skip


def test_last_ticks_round_trip_and_overwrite_in_place() -> None:
    sbin, infy = instrument_make(), instrument_make()
    first = {"ltp": 81_005, "scale": 2, "recv_ns": RECV_NS, "bids": [[81_000, 50, 3]]}
    written = services.last_ticks_record(
        latest={
            sbin.key: ("fyers", first),
            infy.key: ("upstox", {**first, "ltp": 1}),
            "NSE:NOSUCH": ("fyers", first),
        }
    )
    assert written == 2  # the unknown key is skipped
    row = LastTick.objects.get(instrument=sbin)
    assert row.received_at == datetime(2025, 11, 25, 6, 40, 0, 123456, tzinfo=UTC)
    newer = {**first, "ltp": 81_010, "recv_ns": RECV_NS + 5}
    assert services.last_ticks_record(latest={sbin.key: ("upstox", newer)}) == 1
    assert LastTick.objects.count() == 2
    assert last_ticks_get(keys=[sbin.key, infy.key, "NSE:NOSUCH"]) == {
        sbin.key: ("upstox", newer),
        infy.key: ("upstox", {**first, "ltp": 1}),
    }


def test_a_record_without_recv_ns_is_refused_and_nothing_is_written() -> None:
    sbin = instrument_make()
    with pytest.raises(ValueError, match="recv_ns"):
        services.last_ticks_record(latest={sbin.key: ("fyers", {"ltp": 1, "scale": 2})})
    assert not LastTick.objects.exists()


def test_a_row_without_recv_ns_in_its_record_ages_from_received_at() -> None:
    sbin = instrument_make()
    at = datetime(2025, 11, 25, 6, 40, 0, 123456, tzinfo=UTC)
    LastTick.objects.create(instrument=sbin, provider="fyers", record={"ltp": 1}, received_at=at)
    assert last_ticks_get(keys=[sbin.key]) == {
        sbin.key: ("fyers", {"ltp": 1, "recv_ns": 1_764_052_800_123_456_000})
    }
