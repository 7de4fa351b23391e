"""The validation admin as an operator uses it: outcomes and the per-symbol accuracy view."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from feeds.models import Tier
from tests.feeds.factories import instrument_make
from validation.models import SymbolValidation, ValidationOutcome

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:validation_symbolvalidation_changelist"
AT = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def _row(key: str, *, comparisons: int, agreements: int, **fields) -> SymbolValidation:
    tier = fields.pop("tier", Tier.STANDARD)
    return SymbolValidation.objects.create(
        instrument=instrument_make(key=key, name=f"{key} Ltd", tier=tier, enabled=True),
        ticks=10_000,
        flagged=12,
        comparisons=comparisons,
        agreements=agreements,
        by_check={"jump": 12},
        **fields,
    )


@pytest.fixture
def rows() -> dict[str, SymbolValidation]:
    return {
        "good": _row("NSE:GOOD", comparisons=10_000, agreements=9_990),  # 99.9 %
        "poor": _row(
            "NSE:POOR",
            comparisons=1_000,
            agreements=950,
            escalated=True,
            escalated_at=AT,
            preferred_provider="upstox",
            escalation_reason="agreement 95.00% ...",
        ),
        "fresh": _row("NSE:FRESH", comparisons=0, agreements=0, tier=Tier.HIGH_FREQUENCY),
        "crit": _row("NSE:CRIT", comparisons=500, agreements=497, tier=Tier.CRITICAL),
    }


def _listed(admin_client, **params) -> list[str]:
    page = admin_client.get(reverse(CHANGELIST), params)
    assert page.status_code == 200
    return [row.instrument.key for row in page.context["cl"].result_list]


def test_changelists_render(admin_client, rows):
    for name in [CHANGELIST, "admin:validation_validationoutcome_changelist",
                 "admin:validation_accuracyaudit_changelist"]:  # fmt: skip
        assert admin_client.get(reverse(name)).status_code == 200
    page = admin_client.get(reverse(CHANGELIST))
    text = page.text
    # Worst agreement first, no comparisons last; below target marked.
    assert _listed(admin_client) == ["NSE:POOR", "NSE:CRIT", "NSE:GOOD", "NSE:FRESH"]
    assert "▼ 95.00" in text and "▼ 99.40" in text and "99.90" in text
    assert "▼ 99.90" not in text
    assert "0.120" in text  # flagged %: 12 of 10,000
    assert "Deep (tiers 1-3)" in text  # the escalated and the critical symbol
    assert "Fast (tier 1)" in text  # the high-frequency one
    outcomes = reverse("admin:validation_validationoutcome_changelist")
    assert f'href="{outcomes}?symbol=NSE%3APOOR"' in text


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"agreement": "below"}, ["NSE:POOR", "NSE:CRIT"]),
        ({"agreement": "met"}, ["NSE:GOOD"]),
        ({"agreement": "none"}, ["NSE:FRESH"]),
        ({"escalated__exact": "1"}, ["NSE:POOR"]),
        ({"instrument__tier__exact": "critical"}, ["NSE:CRIT"]),
        ({"effective_tier": "3"}, ["NSE:POOR", "NSE:CRIT"]),
        ({"effective_tier": "1"}, ["NSE:FRESH"]),
        ({"effective_tier": "2"}, ["NSE:GOOD"]),
        ({"q": "poor"}, ["NSE:POOR"]),
        ({"q": "NSE:GOOD Ltd"}, ["NSE:GOOD"]),
    ],
)
def test_filters_and_search(admin_client, rows, params, expected):
    assert _listed(admin_client, **params) == expected


def test_override_moves_the_effective_tier_filter(admin_client, rows):
    rows["good"].tier_override = 3
    rows["good"].save()
    assert _listed(admin_client, effective_tier="3") == ["NSE:POOR", "NSE:CRIT", "NSE:GOOD"]
    assert _listed(admin_client, effective_tier="2") == []


def test_operator_fields_save_and_tracked_fields_are_read_only(admin_client, rows):
    row = rows["poor"]
    url = reverse("admin:validation_symbolvalidation_change", args=[row.pk])
    form = admin_client.get(url)
    assert form.status_code == 200
    fields = form.context["adminform"].form.fields
    assert set(fields) == {"tier_override", "discrepancy_bps"}  # nothing else is editable
    # The worker adds counts while the form is open; a tampered post tries the rest.
    SymbolValidation.objects.filter(pk=row.pk).update(ticks=20_000)
    response = admin_client.post(
        url,
        {"tier_override": "1", "discrepancy_bps": "35.5", "ticks": "0", "escalated": "",
         "by_check": "{}", "escalation_reason": "edited"},
    )  # fmt: skip
    assert response.status_code == 302, response.context and response.context["errors"]
    row.refresh_from_db()
    assert row.tier_override == 1 and row.discrepancy_bps == Decimal("35.5")
    assert row.ticks == 20_000 and row.by_check == {"jump": 12}
    assert row.escalated and row.escalation_reason == "agreement 95.00% ..."


def test_bad_threshold_is_refused(admin_client, rows):
    url = reverse("admin:validation_symbolvalidation_change", args=[rows["good"].pk])
    response = admin_client.post(url, {"tier_override": "", "discrepancy_bps": "-5"})
    assert response.status_code == 200 and response.context["errors"]
    rows["good"].refresh_from_db()
    assert rows["good"].discrepancy_bps is None


def test_add_settings_for_a_symbol_without_counts(admin_client):
    instrument = instrument_make(key="NSE:NEW", enabled=True)
    response = admin_client.post(
        reverse("admin:validation_symbolvalidation_add"),
        {"instrument": instrument.pk, "tier_override": "3", "discrepancy_bps": ""},
    )
    assert response.status_code == 302
    row = SymbolValidation.objects.get(instrument=instrument)
    assert row.tier_override == 3 and row.ticks == 0


def test_clear_escalation_action(admin_client, rows):
    response = admin_client.post(
        reverse(CHANGELIST),
        {"action": "clear_escalation",
         ACTION_CHECKBOX_NAME: [rows["poor"].pk, rows["good"].pk]},
    )  # fmt: skip
    assert response.status_code == 302
    rows["poor"].refresh_from_db()
    assert not rows["poor"].escalated and rows["poor"].preferred_provider == ""
    assert rows["poor"].escalation_reason == "" and rows["poor"].comparisons == 1_000
    messages = [str(m) for m in admin_client.get(reverse(CHANGELIST)).context["messages"]]
    assert "1 escalation(s) cleared." in messages


def test_reset_counts_action(admin_client, rows):
    admin_client.post(
        reverse(CHANGELIST),
        {"action": "reset_counts", ACTION_CHECKBOX_NAME: [rows["crit"].pk]},
    )
    rows["crit"].refresh_from_db()
    assert rows["crit"].ticks == 0 and rows["crit"].agreement is None


def test_no_delete(admin_client, rows):
    url = reverse("admin:validation_symbolvalidation_delete", args=[rows["good"].pk])
    assert admin_client.get(url).status_code == 403


def test_outcomes_link_filters_one_symbol_exactly(admin_client):
    sbi = instrument_make(key="NSE:SBI")
    sbin = instrument_make(key="NSE:SBIN")
    for instrument in (sbi, sbin):
        ValidationOutcome.objects.create(
            instrument=instrument, check_name="jump", tier=1, severity="warning",
            provider="fyers", decision="flagged", first_seen=AT, last_seen=AT,
        )  # fmt: skip
    url = reverse("admin:validation_validationoutcome_changelist")
    exact = admin_client.get(url, {"symbol": "NSE:SBI"}).context["cl"].result_list
    assert [o.instrument.key for o in exact] == ["NSE:SBI"]
    partial = admin_client.get(url, {"symbol": "SBI"}).context["cl"].result_list
    assert sorted(o.instrument.key for o in partial) == ["NSE:SBI", "NSE:SBIN"]
    searched = admin_client.get(url, {"q": sbin.fyers_symbol}).context["cl"].result_list
    assert [o.instrument.key for o in searched] == ["NSE:SBIN"]
