"""Validation's read and write paths against the database: the specs the worker runs on, the
incidents and counts it stores, escalations recorded, restored and cleared."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from feeds.models import Tier
from tests.feeds.factories import instrument_make, option_make
from validation import selectors, services
from validation.accuracy import CountsDelta, Escalation, Incident
from validation.checks import ValidationTier
from validation.models import SymbolValidation, ValidationOutcome


def delta(ticks: int, flagged: int = 0, comparisons: int = 0, agreements: int = 0,
          **by_check: int) -> CountsDelta:  # fmt: skip
    return CountsDelta(ticks=ticks, flagged=flagged, by_check=by_check,
                       comparisons=comparisons, agreements=agreements)  # fmt: skip


def escalation_of(key: str, preferred: str = "fyers", reason: str = "-") -> Escalation:
    return Escalation(key=key, tier=ValidationTier.DEEP, preferred=preferred, reason=reason)


pytestmark = pytest.mark.django_db

T0_NS = 1_795_000_000_123_456_789  # epoch ns; the microseconds are 123456


# --- Specs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tier", "expected"),
    [
        (Tier.CRITICAL, ValidationTier.DEEP),
        (Tier.HIGH_FREQUENCY, ValidationTier.FAST),
        (Tier.STANDARD, ValidationTier.CROSS),
        (Tier.LOW_FREQUENCY, ValidationTier.CROSS),
    ],
)
def test_spec_tier_follows_the_instrument_tier(tier, expected):
    instrument = instrument_make(tier=tier, enabled=True, tick_size=Decimal("0.05"))
    spec = selectors.validation_specs_get()[instrument.key]
    assert spec.tier is expected
    assert spec.tick_size == Decimal("0.05") and spec.discrepancy_bps is None
    assert (spec.instrument_type, spec.exchange, spec.segment) == ("EQ", "NSE", "CM")
    assert spec.underlying_is_index is False


def test_override_beats_escalation_which_beats_the_instrument_tier():
    overridden = instrument_make(tier=Tier.CRITICAL, enabled=True)
    escalated = instrument_make(tier=Tier.HIGH_FREQUENCY, enabled=True)
    both = instrument_make(tier=Tier.STANDARD, enabled=True)
    SymbolValidation.objects.create(
        instrument=overridden, tier_override=ValidationTier.FAST, discrepancy_bps=Decimal("25")
    )
    SymbolValidation.objects.create(instrument=escalated, escalated=True)
    SymbolValidation.objects.create(instrument=both, escalated=True, tier_override=2)
    specs = selectors.validation_specs_get()
    assert specs[overridden.key].tier is ValidationTier.FAST
    assert specs[overridden.key].discrepancy_bps == 25.0
    assert specs[escalated.key].tier is ValidationTier.DEEP
    assert specs[both.key].tier is ValidationTier.CROSS


def test_disabled_instruments_have_no_spec_and_index_rows_have_no_tick():
    disabled = instrument_make(enabled=False)
    index = instrument_make(
        key="NSE:NIFTYIT", instrument_type="INDEX", tick_size=Decimal("0"), enabled=True
    )
    specs = selectors.validation_specs_get()
    assert disabled.key not in specs
    assert specs[index.key].tick_size is None  # "not given": the band table decides


def test_derivatives_know_whether_their_underlying_is_an_index():
    instrument_make(key="NSE:NIFTYIT", instrument_type="INDEX", tick_size=Decimal("0"))
    nifty = option_make(underlying="NIFTY", enabled=True)  # a known derivative name
    nifty_it = option_make(underlying="NIFTYIT", instrument_type="FUT", option_type="",
                           strike=None, enabled=True)  # fmt: skip  # an index row's symbol
    stock = option_make(underlying="SBIN", enabled=True)
    specs = selectors.validation_specs_get()
    assert specs[nifty.key].underlying_is_index is True
    assert specs[nifty_it.key].underlying_is_index is True
    assert specs[stock.key].underlying_is_index is False


def test_specs_take_two_queries_however_many_instruments(django_assert_max_num_queries):
    for n in range(30):
        instrument = instrument_make(enabled=True, tier=Tier.values[n % 4])
        if n % 3 == 0:
            SymbolValidation.objects.create(instrument=instrument, escalated=n % 2 == 0)
    with django_assert_max_num_queries(2):
        specs = selectors.validation_specs_get()
    assert len(specs) == 30


# --- Incidents ------------------------------------------------------------------------------


def test_incidents_are_stored_exactly_with_their_severity():
    sbin = instrument_make(key="NSE:SBIN")
    fx = instrument_make(
        key="NSE:USDINR-FUT",
        segment="CD",
        instrument_type="FUT",
        tick_size=Decimal("0.0025"),
        expiry=datetime(2026, 12, 29).date(),
    )
    incidents = [
        Incident(key=sbin.key, provider="fyers", check="not_positive", tier=1, first_ns=T0_NS,
                 last_ns=T0_NS + 2_000_000_000, occurrences=3, exchange_ts=1_795_000_000_042,
                 scale=2, observed=-80_005, reference=80_005),
        Incident(key=sbin.key, provider="upstox", check="jump", tier=1, first_ns=T0_NS,
                 last_ns=T0_NS, scale=2, observed=800_050, reference=80_005),  # x10
        Incident(key=sbin.key, provider="upstox", check="jump", tier=1, first_ns=T0_NS,
                 last_ns=T0_NS, scale=2, observed=88_005, reference=80_005),  # +10 %
        Incident(key=sbin.key, provider="", check="discrepancy", tier=2, first_ns=T0_NS,
                 last_ns=T0_NS, decision="consensus_fyers", scale=2, fyers=80_005,
                 upstox=81_010, consensus=80_005, gap_bps=125.6149,
                 detail={"reason": "fresher", "gap_ticks": 201}),
        Incident(key=fx.key, provider="fyers", check="rest_recheck", tier=3, first_ns=T0_NS,
                 last_ns=T0_NS, decision="confirmed", scale=4, observed=832_525,
                 reference=832_500),
        Incident(key=sbin.key, provider="fyers", check="escalation", tier=2, first_ns=T0_NS,
                 last_ns=T0_NS, decision="escalated", detail={"agreement": 0.97}),
        Incident(key="NSE:NOSUCH", provider="fyers", check="stale", tier=1, first_ns=T0_NS,
                 last_ns=T0_NS),
    ]  # fmt: skip
    assert services.validation_incidents_record(incidents=incidents) == 6
    rows = list(ValidationOutcome.objects.order_by("pk"))
    zero, shifted, moved, discrepancy, confirmed, escalation = rows

    assert zero.instrument == sbin and zero.check_name == "not_positive" and zero.tier == 1
    assert zero.severity == "error" and zero.provider == "fyers" and zero.decision == "flagged"
    assert zero.observed_value == Decimal("-800.05") and zero.reference_value == Decimal("800.05")
    assert zero.first_seen == datetime(2026, 11, 18, 11, 6, 40, 123456, tzinfo=UTC)
    assert (zero.last_seen - zero.first_seen).total_seconds() == 2
    assert zero.exchange_time == datetime(2026, 11, 18, 11, 6, 40, 42_000, tzinfo=UTC)
    assert zero.occurrences == 3

    assert shifted.severity == "error"  # a decimal shift is no market move
    assert moved.severity == "warning"  # a 10 % jump may be real
    assert discrepancy.severity == "warning" and discrepancy.provider == ""
    assert discrepancy.fyers_value == Decimal("800.05")
    assert discrepancy.upstox_value == Decimal("810.10")
    assert discrepancy.consensus_value == Decimal("800.05")
    assert discrepancy.gap_bps == Decimal("125.61")
    assert discrepancy.detail == {"reason": "fresher", "gap_ticks": 201}
    assert discrepancy.decision == "consensus_fyers"
    assert confirmed.severity == "info" and confirmed.instrument == fx
    assert confirmed.observed_value == Decimal("83.2525")  # four decimals kept
    assert escalation.severity == "critical" and escalation.observed_value is None


def test_a_price_too_large_to_store_is_kept_in_the_detail_and_odd_detail_is_text():
    sbin = instrument_make(key="NSE:SBIN")
    huge = Incident(key=sbin.key, provider="fyers", check="jump", tier=1, first_ns=T0_NS,
                    last_ns=T0_NS, scale=2, observed=10**20, reference=80_005,
                    detail={"ratio": Decimal("1.5")})  # fmt: skip
    assert services.validation_incidents_record(incidents=[huge]) == 1
    row = ValidationOutcome.objects.get()
    assert row.observed_value is None and row.reference_value == Decimal("800.05")
    assert row.detail == {"ratio": "1.5", "unstored": {"observed": [10**20, 2]}}
    assert row.severity == "error"


def test_no_incidents_no_query(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert services.validation_incidents_record(incidents=[]) == 0


# --- Running counts -------------------------------------------------------------------------


def test_deltas_accumulate_and_merge_checks():
    sbin, infy = instrument_make(key="NSE:SBIN"), instrument_make(key="NSE:INFY")
    first = {sbin.key: delta(100, 3, 40, 39, jump=2, duplicate=1), "NSE:NOSUCH": delta(5)}
    assert services.symbol_accuracy_record(deltas=first) == 1
    row = SymbolValidation.objects.get(instrument=sbin)
    since = row.counting_since
    assert since is not None and row.updated_at == since

    second = {sbin.key: delta(50, 2, 10, 10, jump=1, stale=1), infy.key: delta(7)}
    assert services.symbol_accuracy_record(deltas=second) == 2
    row.refresh_from_db()
    assert (row.ticks, row.flagged, row.comparisons, row.agreements) == (150, 5, 50, 49)
    assert row.by_check == {"jump": 3, "duplicate": 1, "stale": 1}
    assert row.counting_since == since and row.updated_at > since
    assert row.flagged_share == pytest.approx(5 / 150)
    assert row.agreement == pytest.approx(49 / 50)
    infy_row = SymbolValidation.objects.get(instrument=infy)
    assert infy_row.ticks == 7 and infy_row.agreement is None


def test_counts_keep_the_operator_settings():
    sbin = instrument_make(key="NSE:SBIN")
    services.symbol_validation_settings_set(
        instrument=sbin, tier_override=ValidationTier.DEEP, discrepancy_bps=Decimal("40")
    )
    services.symbol_accuracy_record(deltas={sbin.key: delta(1)})
    row = SymbolValidation.objects.get(instrument=sbin)
    assert row.tier_override == ValidationTier.DEEP and row.discrepancy_bps == Decimal("40")
    assert row.ticks == 1


def test_operator_settings_never_write_back_counts():
    sbin = instrument_make(key="NSE:SBIN")
    stale_copy = SymbolValidation.objects.create(instrument=sbin)  # e.g. an open admin form
    services.symbol_accuracy_record(deltas={sbin.key: delta(9, 1, 2, 2, jump=1)})
    services.symbol_validation_settings_set(
        instrument=stale_copy.instrument, tier_override=None, discrepancy_bps=Decimal("12.5")
    )
    row = SymbolValidation.objects.get(instrument=sbin)
    assert row.ticks == 9 and row.by_check == {"jump": 1}
    assert row.discrepancy_bps == Decimal("12.5")


def test_bad_operator_settings_are_refused():
    with pytest.raises(ValidationError):
        services.symbol_validation_settings_set(
            instrument=instrument_make(), tier_override=None, discrepancy_bps=Decimal("-1")
        )


def test_counts_reset():
    sbin = instrument_make(key="NSE:SBIN")
    services.symbol_accuracy_record(deltas={sbin.key: delta(9, 1, 2, 1, jump=1)})
    assert services.symbol_accuracy_reset(instrument_ids=[sbin.pk]) == 1
    row = SymbolValidation.objects.get(instrument=sbin)
    assert (row.ticks, row.flagged, row.by_check, row.comparisons) == (0, 0, {}, 0)
    assert row.agreement is None and row.counting_since is not None


# --- Escalations ----------------------------------------------------------------------------


def test_escalation_recorded_restored_and_cleared():
    sbin = instrument_make(key="NSE:SBIN", enabled=True, tier=Tier.HIGH_FREQUENCY)
    gone = instrument_make(key="NSE:GONE", enabled=False)
    services.symbol_accuracy_record(deltas={sbin.key: delta(1000, 9, 500, 491, discrepancy=9)})
    at = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    reason = "agreement 98.20% over 500 comparisons is below the 99.5% target"
    escalation = escalation_of(sbin.key, "upstox", reason)
    services.symbol_escalation_record(escalation=escalation, at=at)
    services.symbol_escalation_record(escalation=escalation_of(gone.key, reason="old"))
    services.symbol_escalation_record(escalation=escalation_of("NSE:NOSUCH"))

    row = SymbolValidation.objects.get(instrument=sbin)
    assert row.escalated and row.escalated_at == at and row.preferred_provider == "upstox"
    assert row.escalation_reason == reason and row.ticks == 1000  # counts untouched
    # A restarted worker gets it back (the disabled instrument's is not carried).
    assert selectors.validation_escalations_get() == [escalation]
    assert selectors.validation_specs_get()[sbin.key].tier is ValidationTier.DEEP

    assert services.symbol_escalation_clear(instrument_ids=[sbin.pk, gone.pk]) == 2
    assert services.symbol_escalation_clear(instrument_ids=[sbin.pk]) == 0
    row.refresh_from_db()
    assert not row.escalated and row.escalated_at is None
    assert row.preferred_provider == "" and row.escalation_reason == ""
    assert selectors.validation_escalations_get() == []
    assert selectors.validation_specs_get()[sbin.key].tier is ValidationTier.FAST


# --- Accuracy pages -------------------------------------------------------------------------


def test_accuracy_list_worst_first_and_below_target():
    rows = {}
    for key, comparisons, agreements in [("NSE:A", 1000, 999), ("NSE:B", 1000, 900),
                                         ("NSE:C", 0, 0), ("NSE:D", 200, 198)]:  # fmt: skip
        instrument = instrument_make(key=key)
        rows[key] = SymbolValidation.objects.create(
            instrument=instrument, comparisons=comparisons, agreements=agreements
        )
    listed = [r.instrument.key for r in selectors.symbol_accuracy_list()]
    assert listed == ["NSE:B", "NSE:D", "NSE:A", "NSE:C"]  # 90 %, 99 %, 99.9 %, none
    below = [r.instrument.key for r in selectors.symbol_accuracy_list(below_target=True)]
    assert below == ["NSE:B", "NSE:D"]
    assert [r.instrument.key for r in selectors.symbol_accuracy_list(limit=1)] == ["NSE:B"]


# --- Accuracy audit (the end-to-end runs are in test_audit.py) ------------------------------


def test_audit_sample_is_random_repeatable_and_carried_only():
    carried = [instrument_make(enabled=True).key for _ in range(10)]
    instrument_make(enabled=False)
    instrument_make(enabled=True, fyers_symbol="", fyers_token="", upstox_key="")  # no feed
    drawn = [t.key for t in selectors.accuracy_audit_sample_get(sample=4, seed=7)]
    assert len(drawn) == 4 and set(drawn) <= set(carried) and drawn == sorted(drawn)
    assert [t.key for t in selectors.accuracy_audit_sample_get(sample=4, seed=7)] == drawn
    everything = selectors.accuracy_audit_sample_get(sample=50)
    assert sorted(t.key for t in everything) == sorted(carried)
    assert everything[0].tick_size == Decimal("0.05") and everything[0].instrument_type == "EQ"


def test_audit_with_nothing_enabled_stores_an_empty_row():
    instrument_make(enabled=False)
    audit = services.accuracy_audit_run(sample=5)
    assert (audit.sampled, audit.matched, audit.mismatched, audit.unavailable) == (0, 0, 0, 0)
    assert audit.mismatches == [] and audit.accuracy is None and audit.finished_at is not None
