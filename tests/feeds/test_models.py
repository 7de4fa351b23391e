from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from feeds.models import (
    UPSTOX_DEFAULT_MODE_LIMITS,
    PoolAssignment,
    ProviderAccount,
    Tier,
    connection_id,
)
from tests.feeds.factories import instrument_make, option_make

pytestmark = pytest.mark.django_db


def test_instrument_defaults_are_safe_for_a_fresh_import():
    inst = instrument_make()
    # A new instrument is not subscribed until an operator (or setup) enables it.
    assert (inst.enabled, inst.tier, inst.priority, inst.data_mode) == (
        False,
        Tier.STANDARD,
        50,
        "quote",
    )


def test_option_needs_strike_type_and_expiry():
    inst = option_make()
    inst.full_clean()
    inst.option_type = ""
    with pytest.raises(ValidationError, match="option type and a strike"):
        inst.full_clean()
    inst.option_type, inst.expiry = "PE", None
    with pytest.raises(ValidationError, match="expiry"):
        inst.full_clean()


def test_tick_size_must_be_positive():
    inst = instrument_make()
    inst.tick_size = Decimal("0")
    with pytest.raises(ValidationError, match="Tick size must be positive"):
        inst.full_clean()


@pytest.mark.parametrize("field", ["fyers_token", "fyers_symbol", "upstox_key"])
def test_provider_identities_are_unique_when_present(field):
    first = instrument_make()
    with pytest.raises(IntegrityError):
        instrument_make(**{field: getattr(first, field)})


def test_many_instruments_may_lack_a_provider_identity():
    instrument_make(fyers_token="", fyers_symbol="")
    instrument_make(fyers_token="", fyers_symbol="")
    instrument_make(upstox_key="")
    instrument_make(upstox_key="")


def test_provider_account_refuses_a_token_in_place_of_a_variable_name():
    account = ProviderAccount(
        provider="fyers",
        label="main",
        max_connections=5,
        max_symbols_per_connection=200,
        token_env="APP-100:eyJhbGciOi.payload.sig",
    )
    with pytest.raises(ValidationError, match="NAME of an environment variable"):
        account.full_clean()


def test_upstox_account_gets_documented_mode_limits_and_rejects_bad_ones():
    account = ProviderAccount(
        provider="upstox",
        label="main",
        max_connections=2,
        max_symbols_per_connection=5000,
        token_env="UPSTOX_ACCESS_TOKEN",
    )
    account.full_clean()
    assert account.mode_limits == UPSTOX_DEFAULT_MODE_LIMITS
    assert account.mode_limits["full"] == {"individual": 2000, "combined": 1500}

    account.mode_limits = {"ltpc": {"individual": 5000, "combined": 2000}}
    with pytest.raises(ValidationError, match="Expected exactly the modes"):
        account.full_clean()
    account.mode_limits = {**UPSTOX_DEFAULT_MODE_LIMITS, "full": {"individual": -1, "combined": 1}}
    with pytest.raises(ValidationError, match="full: expected positive integers"):
        account.full_clean()


def test_fyers_account_has_no_mode_limits():
    account = ProviderAccount(
        provider="fyers",
        label="main",
        max_connections=5,
        max_symbols_per_connection=200,
        token_env="FYERS_ACCESS_TOKEN",
        mode_limits={"ltpc": {"individual": 1, "combined": 1}},
    )
    with pytest.raises(ValidationError, match="Upstox only"):
        account.full_clean()


def test_assignment_is_unique_per_instrument_and_account(django_user_model):
    from django.utils import timezone

    from feeds.services import provider_account_create

    fyers = provider_account_create(provider="fyers", label="a")
    upstox = provider_account_create(provider="upstox", label="b")
    inst = instrument_make(tier=Tier.CRITICAL)
    now = timezone.now()
    PoolAssignment.objects.create(
        instrument=inst,
        account=fyers,
        connection_slot=0,
        data_mode="quote",
        reason="tier_rule",
        since=now,
    )
    # A critical instrument is also carried by the other provider.
    second = PoolAssignment.objects.create(
        instrument=inst,
        account=upstox,
        connection_slot=1,
        data_mode="quote",
        reason="cross_check",
        since=now,
    )
    assert second.connection_id == "upstox:b:1" == connection_id("upstox", "b", 1)
    with pytest.raises(IntegrityError):
        PoolAssignment.objects.create(
            instrument=inst,
            account=fyers,
            connection_slot=3,
            data_mode="quote",
            reason="failover",
            since=now,
        )
