"""The admin as an operator uses it: logged-in staff get pages, anonymous users a login."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from feeds.models import Instrument, Tier
from feeds.services import provider_account_create
from monitoring.models import ConnectionHealth
from tests.feeds.factories import instrument_make
from validation.models import AccuracyAudit, ValidationOutcome

pytestmark = pytest.mark.django_db

CHANGELISTS = [
    "admin:feeds_instrument_changelist",
    "admin:feeds_provideraccount_changelist",
    "admin:feeds_poolassignment_changelist",
    "admin:monitoring_connectionhealth_changelist",
    "admin:validation_validationoutcome_changelist",
    "admin:validation_accuracyaudit_changelist",
]


@pytest.mark.parametrize("name", CHANGELISTS)
def test_anonymous_is_sent_to_login(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("name", CHANGELISTS)
def test_staff_sees_every_changelist(admin_client, name):
    assert admin_client.get(reverse(name)).status_code == 200


def test_non_staff_user_cannot_enter(client, django_user_model):
    user = django_user_model.objects.create_user(username="trader", password="pw-123-long")
    client.force_login(user)
    response = client.get(reverse("admin:feeds_instrument_changelist"))
    assert response.status_code == 302


def test_sample_instruments_are_listed_and_searchable(admin_client, sample_import):
    url = reverse("admin:feeds_instrument_changelist")
    page = admin_client.get(url)
    assert page.status_code == 200
    assert page.context["cl"].result_count == Instrument.objects.count() > 2000
    first = Instrument.objects.order_by("key").first()
    assert first.key in page.text

    sbin = Instrument.objects.get(key="NSE:SBIN")
    for term in ["SBIN", sbin.isin, sbin.fyers_token, sbin.upstox_key, "STATE BANK"]:
        found = admin_client.get(url, {"q": term})
        assert found.status_code == 200
        assert found.context["cl"].result_count >= 1, term
        assert sbin in found.context["cl"].result_list, term


@pytest.mark.parametrize(
    ("params", "check"),
    [
        ({"instrument_type__exact": "INDEX"}, lambda i: i.instrument_type == "INDEX"),
        ({"exchange__exact": "BSE"}, lambda i: i.exchange == "BSE"),
        ({"segment__exact": "FO"}, lambda i: i.segment == "FO"),
        ({"enabled__exact": "0"}, lambda i: not i.enabled),
        ({"coverage": "fyers"}, lambda i: i.fyers_token and not i.upstox_key),
        ({"coverage": "upstox"}, lambda i: i.upstox_key and not i.fyers_token),
    ],
)
def test_instrument_filters(admin_client, sample_import, params, check):
    page = admin_client.get(reverse("admin:feeds_instrument_changelist"), params)
    assert page.status_code == 200
    results = list(page.context["cl"].queryset)
    assert results, params
    assert all(check(i) for i in results)


def test_list_edit_changes_tier_priority_and_enabled(admin_client):
    a, b = instrument_make(), instrument_make()
    data = {
        "form-TOTAL_FORMS": "2",
        "form-INITIAL_FORMS": "2",
        "form-0-id": str(a.pk),
        "form-0-tier": Tier.CRITICAL,
        "form-0-priority": "95",
        "form-0-enabled": "on",
        "form-1-id": str(b.pk),
        "form-1-tier": b.tier,
        "form-1-priority": str(b.priority),
        "_save": "Save",
    }
    response = admin_client.post(reverse("admin:feeds_instrument_changelist"), data)
    assert response.status_code == 302, response.content[:2000]
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.tier, a.priority, a.enabled) == (Tier.CRITICAL, 95, True)
    assert (b.tier, b.enabled) == (Tier.STANDARD, False)


@pytest.mark.parametrize("tier", list(Tier))
def test_bulk_set_tier(admin_client, tier):
    items = [instrument_make(), instrument_make()]
    response = admin_client.post(
        reverse("admin:feeds_instrument_changelist"),
        {"action": f"set_tier_{tier.value}", "_selected_action": [i.pk for i in items]},
        follow=True,
    )
    assert response.status_code == 200
    assert {i.tier for i in Instrument.objects.filter(pk__in=[i.pk for i in items])} == {tier}


def test_bulk_enable_and_disable(admin_client):
    items = [instrument_make(), instrument_make(), instrument_make()]
    url = reverse("admin:feeds_instrument_changelist")
    pks = [i.pk for i in items]
    response = admin_client.post(
        url, {"action": "enable_instruments", "_selected_action": pks}, follow=True
    )
    assert "3 instrument(s) enabled." in response.text
    assert Instrument.objects.filter(enabled=True).count() == 3
    admin_client.post(url, {"action": "disable_instruments", "_selected_action": pks[:1]})
    assert Instrument.objects.filter(enabled=True).count() == 2


def test_master_fields_are_read_only_on_the_change_form(admin_client):
    inst = instrument_make()
    page = admin_client.get(reverse("admin:feeds_instrument_change", args=[inst.pk]))
    form = page.context["adminform"].form
    assert set(form.fields) == {"tier", "priority", "enabled", "data_mode"}


def test_hub_written_records_are_view_only(admin_client):
    account = provider_account_create(provider="fyers", label="main")
    ConnectionHealth.objects.create(
        connection_id="fyers:main:0", account=account, recorded_at=timezone.now(), state="live"
    )
    for model in [
        "feeds_poolassignment",
        "monitoring_connectionhealth",
        "validation_validationoutcome",
        "validation_accuracyaudit",
    ]:
        assert admin_client.get(reverse(f"admin:{model}_add")).status_code == 403
    health = ConnectionHealth.objects.get()
    page = admin_client.get(reverse("admin:monitoring_connectionhealth_change", args=[health.pk]))
    assert page.status_code == 200
    assert b'name="state"' not in page.content  # shown, not editable


def test_outcomes_filter_by_symbol_check_and_severity(admin_client):
    sbin = instrument_make(key="NSE:SBIN", fyers_symbol="NSE:SBIN-EQ")
    other = instrument_make()
    now = timezone.now()

    def outcome(inst, check, severity):
        return ValidationOutcome.objects.create(
            instrument=inst,
            check_name=check,
            tier=1,
            severity=severity,
            decision="flagged",
            first_seen=now,
            last_seen=now,
        )

    jump = outcome(sbin, "jump", "error")
    stale = outcome(sbin, "stale", "warning")
    outcome(other, "jump", "error")
    url = reverse("admin:validation_validationoutcome_changelist")

    def listed(params):
        page = admin_client.get(url, params)
        assert page.status_code == 200
        return set(page.context["cl"].queryset)

    assert listed({"symbol": "NSE:SBIN"}) == {jump, stale}
    assert listed({"symbol": "NSE:SBIN-EQ"}) == {jump, stale}  # FYERS form works too
    assert listed({"symbol": "NSE:SBIN", "check_name__exact": "jump"}) == {jump}
    assert listed({"symbol": "sbin", "severity__exact": "warning"}) == {stale}
    # The symbol box keeps the other active filters as hidden inputs.
    page = admin_client.get(url, {"severity__exact": "warning"})
    assert b'name="severity__exact" value="warning"' in page.content


def test_accuracy_audit_shows_its_accuracy(admin_client):
    AccuracyAudit.objects.create(started_at=timezone.now(), sampled=200, matched=199, mismatched=1)
    page = admin_client.get(reverse("admin:validation_accuracyaudit_changelist"))
    assert b"99.50" in page.content
