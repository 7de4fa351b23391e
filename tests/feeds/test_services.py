from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from feeds import services
from feeds.models import Instrument, ProviderAccount, Tier
from tests.feeds.factories import instrument_make

pytestmark = pytest.mark.django_db


def test_set_tier_counts_only_real_changes():
    a, b = instrument_make(), instrument_make(tier=Tier.CRITICAL)
    changed = services.instruments_set_tier(instrument_ids=[a.pk, b.pk], tier=Tier.CRITICAL)
    assert changed == 1
    assert set(Instrument.objects.values_list("tier", flat=True)) == {Tier.CRITICAL}


def test_set_tier_rejects_unknown_tier():
    with pytest.raises(ValueError, match="unknown tier"):
        services.instruments_set_tier(instrument_ids=[], tier="ultra")


def test_enable_and_disable():
    a, b = instrument_make(), instrument_make()
    assert services.instruments_set_enabled(instrument_ids=[a.pk, b.pk], enabled=True) == 2
    assert services.instruments_set_enabled(instrument_ids=[a.pk], enabled=False) == 1
    assert list(Instrument.objects.filter(enabled=True)) == [b]


def test_instrument_update_validates():
    inst = instrument_make()
    services.instrument_update(instrument=inst, changes={"priority": 90, "tier": Tier.CRITICAL})
    inst.refresh_from_db()
    assert (inst.priority, inst.tier) == (90, Tier.CRITICAL)
    with pytest.raises(ValidationError):
        services.instrument_update(instrument=inst, changes={"tier": "ultra"})


def test_provider_account_defaults_follow_the_references(settings):
    fyers = services.provider_account_create(provider="fyers", label="one")
    upstox = services.provider_account_create(provider="upstox", label="one")
    assert fyers.max_symbols_per_connection == 200
    assert fyers.max_connections == settings.FYERS["MAX_CONNECTIONS"]
    assert fyers.token_env == "FYERS_ACCESS_TOKEN"
    assert fyers.mode_limits == {}
    assert upstox.max_connections == 2
    assert upstox.max_symbols_per_connection == 5000
    assert upstox.mode_limits["ltpc"] == {"individual": 5000, "combined": 2000}
    assert upstox.token_env == "UPSTOX_ACCESS_TOKEN"


def test_default_accounts_are_created_once():
    assert len(services.provider_accounts_ensure_defaults()) == 2
    assert services.provider_accounts_ensure_defaults() == []
    assert ProviderAccount.objects.count() == 2


def test_starter_set_on_the_sample_instruments(sample_import):
    enabled = services.instruments_enable_starter_set()
    assert enabled == Instrument.objects.filter(enabled=True).count()
    assert enabled >= 150
    nifty = Instrument.objects.get(key="NSE:NIFTY50")
    assert (nifty.enabled, nifty.tier, nifty.priority) == (True, Tier.CRITICAL, 100)
    assert Instrument.objects.get(key="NSE:SBIN").tier == Tier.HIGH_FREQUENCY
    futures = Instrument.objects.filter(instrument_type="FUT")
    assert futures.exists()
    assert all(f.enabled and f.tier == Tier.HIGH_FREQUENCY for f in futures)
    # Options stay off: a new user sees every path work without thousands of topics.
    assert not Instrument.objects.filter(instrument_type="OPT", enabled=True).exists()
