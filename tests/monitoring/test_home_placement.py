"""The home page's "Placement" section: what the pool leaves out, never silently."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from feeds.models import Tier
from feeds.pool.distribution import Conn, Placement
from feeds.services import (
    placement_issues_record,
    pool_assignments_record,
    provider_accounts_ensure_defaults,
)
from tests.feeds.factories import instrument_make

pytestmark = pytest.mark.django_db

NO_ROOM = "no capacity: FYERS and Upstox full"
NO_UPSTOX = "not carried by Upstox: no capacity: Upstox full"


def _home(client) -> str:
    page = client.get(reverse("monitoring:home"))
    assert page.status_code == 200
    return page.text


def _figure(html: str, testid: str) -> int:
    return int(re.search(rf'data-testid="{testid}">(\d+)<', html).group(1))


def _listed_keys(html: str) -> list[str]:
    table = re.search(r'<table data-testid="placement-issues">(.*?)</table>', html, re.S).group(1)
    return re.findall(r'<td><a href="[^"]+">([^<]+)</a></td>', table)


def _place(*instruments) -> None:
    """Record a pool assignment, so the page knows a plan exists."""
    provider_accounts_ensure_defaults()
    conn = Conn("fyers", "primary", 0)
    pool_assignments_record(
        assignment={i.key: (Placement(conn, "quote", "tier_rule"),) for i in instruments}
    )


def test_issues_are_counted_and_listed_most_important_first(client):
    low = instrument_make(key="NSE:LOW", tier=Tier.LOW_FREQUENCY, priority=99, enabled=True)
    std_b = instrument_make(key="NSE:STDB", tier=Tier.STANDARD, priority=40, enabled=True)
    std_a = instrument_make(key="NSE:STDA", tier=Tier.STANDARD, priority=40, enabled=True)
    std_top = instrument_make(key="NSE:STDTOP", tier=Tier.STANDARD, priority=80, enabled=True)
    high = instrument_make(key="NSE:HIGH", tier=Tier.HIGH_FREQUENCY, priority=1, enabled=True)
    critical = instrument_make(key="NSE:NIFTY50", tier=Tier.CRITICAL, priority=100, enabled=True)
    _place(critical)
    placement_issues_record(
        left_out={i.key: NO_ROOM for i in [low, std_b, std_a, std_top, high]},
        notes={critical.key: NO_UPSTOX},
    )

    html = _home(client)

    assert "<h2>Placement</h2>" in html
    assert _figure(html, "left-out-count") == 5
    assert _figure(html, "one-provider-count") == 1
    assert _listed_keys(html) == [
        "NSE:NIFTY50", "NSE:HIGH", "NSE:STDTOP", "NSE:STDA", "NSE:STDB", "NSE:LOW",
    ]  # fmt: skip
    assert NO_UPSTOX in html and NO_ROOM in html
    assert "One provider only" in html and "Left out" in html
    change_url = reverse("admin:feeds_instrument_change", args=[critical.pk])
    assert f'<a href="{change_url}">NSE:NIFTY50</a>' in html
    assert "6 instruments with a placement issue." in html
    assert "All enabled instruments are placed" not in html


def test_only_the_first_fifty_are_listed_with_the_total(client):
    items = [instrument_make(enabled=True, priority=n) for n in range(55)]
    placement_issues_record(left_out={i.key: NO_ROOM for i in items}, notes={})

    html = _home(client)

    listed = _listed_keys(html)
    assert len(listed) == 50
    assert listed[0] == items[-1].key  # highest priority first
    assert items[0].key not in listed  # the five least important are not listed
    assert _figure(html, "left-out-count") == 55
    assert "The 50 most important of 55 instruments with a placement issue." in html


def test_disabled_instruments_are_not_reported(client):
    on = instrument_make(enabled=True)
    off = instrument_make(enabled=False)
    placement_issues_record(left_out={on.key: NO_ROOM, off.key: NO_ROOM}, notes={})

    html = _home(client)

    assert _figure(html, "left-out-count") == 1
    assert _listed_keys(html) == [on.key]


def test_staff_get_a_link_to_every_issue_in_the_admin(admin_client, client):
    inst = instrument_make(enabled=True)
    placement_issues_record(left_out={inst.key: NO_ROOM}, notes={})
    all_issues = reverse("admin:feeds_placementissue_changelist")

    assert f'<a href="{all_issues}">See all in the admin</a>' in _home(admin_client)
    assert all_issues not in _home(client)


def test_without_issues_the_page_says_everything_is_placed(client):
    placed = instrument_make(enabled=True)
    _place(placed)

    html = _home(client)

    assert "<h2>Placement</h2>" in html
    assert "All enabled instruments are placed." in html
    assert 'data-testid="placement-issues"' not in html


def test_without_any_recorded_placement_the_page_does_not_claim_success(client):
    instrument_make(enabled=True)

    html = _home(client)

    assert "All enabled instruments are placed" not in html
    assert "No pool assignments are recorded yet" in html
