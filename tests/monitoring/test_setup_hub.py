from __future__ import annotations

import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from feeds.models import Instrument, ProviderAccount

pytestmark = pytest.mark.django_db


def setup_hub() -> str:
    out = StringIO()
    call_command("setup_hub", stdout=out)
    return out.getvalue()


def test_first_run_prepares_everything_and_the_password_works(client):
    output = setup_hub()

    assert set(ProviderAccount.objects.values_list("provider", "label")) == {
        ("fyers", "primary"),
        ("upstox", "primary"),
    }
    assert Instrument.objects.count() > 2000
    assert "Imported sample instruments: created" in output
    assert Instrument.objects.filter(enabled=True).count() >= 150
    password = re.search(r"One-time password: (\S+)", output).group(1)
    assert client.login(username="admin", password=password)
    assert client.get(reverse("admin:feeds_instrument_changelist")).status_code == 200


def test_second_run_changes_nothing():
    setup_hub()
    Instrument.objects.filter(key="NSE:SBIN").update(enabled=False)
    counts = (Instrument.objects.count(), ProviderAccount.objects.count())

    output = setup_hub()

    assert output == ""
    assert (Instrument.objects.count(), ProviderAccount.objects.count()) == counts
    assert not Instrument.objects.get(key="NSE:SBIN").enabled  # the operator's choice stays
    assert get_user_model().objects.count() == 1
