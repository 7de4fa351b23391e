"""Placement issues as an operator sees them in the admin."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from feeds.models import PlacementIssue, Tier
from feeds.services import placement_issues_record
from tests.feeds.factories import instrument_make

pytestmark = pytest.mark.django_db

NO_ROOM = "no capacity: FYERS and Upstox full"
NO_UPSTOX = "not carried by Upstox: no capacity: Upstox full"


def _placement_cells(html: str) -> dict[str, str]:
    """Instrument key -> the text of its "placement" cell, from the changelist's rows."""
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
    cells = {}
    for row in rows:
        key = re.search(r'<th class="field-key"><a [^>]*>([^<]+)</a></th>', row)
        placement = re.search(r'<td class="field-placement">([^<]*)</td>', row)
        if key and placement:
            cells[key.group(1)] = placement.group(1)
    return cells


def test_instrument_list_shows_each_ones_placement(admin_client):
    left_out, one_sided = instrument_make(), instrument_make(tier=Tier.CRITICAL)
    placed = instrument_make()
    placement_issues_record(left_out={left_out.key: NO_ROOM}, notes={one_sided.key: NO_UPSTOX})

    page = admin_client.get(reverse("admin:feeds_instrument_changelist"))

    assert page.status_code == 200
    header = r'column-placement">\s*<div class="text"><a href="\?o=[\d.]+">Placement</a>'
    assert re.search(header, page.text)  # a sortable column
    assert _placement_cells(page.text) == {
        left_out.key: "Left out",
        one_sided.key: "One provider only",
        placed.key: "—",
    }


def test_instrument_list_does_not_query_per_row(admin_client, django_assert_max_num_queries):
    def issues_for(items):
        keys = [i.key for i in items]
        placement_issues_record(
            left_out=dict.fromkeys(keys[::2], NO_ROOM), notes=dict.fromkeys(keys[1::4], NO_UPSTOX)
        )

    url = reverse("admin:feeds_instrument_changelist")
    items = [instrument_make() for _ in range(5)]
    issues_for(items)
    with django_assert_max_num_queries(20) as few:
        admin_client.get(url)
    items += [instrument_make() for _ in range(60)]
    issues_for(items)
    with django_assert_max_num_queries(len(few.captured_queries)) as many:
        page = admin_client.get(url)
    assert len(_placement_cells(page.text)) == len(items)
    assert len(many.captured_queries) == len(few.captured_queries)


def test_instrument_change_page_shows_the_issue(admin_client):
    inst = instrument_make(tier=Tier.CRITICAL)
    placement_issues_record(left_out={}, notes={inst.key: NO_UPSTOX})

    page = admin_client.get(reverse("admin:feeds_instrument_change", args=[inst.pk]))

    assert page.status_code == 200
    assert 'class="fieldset-heading">Placement</h2>' in page.text
    assert "<label>Placement issue:</label>" in page.text
    assert f'<div class="readonly">One provider only: {NO_UPSTOX}</div>' in page.text
    # Shown, never editable: the operator form still has only its four fields.
    form = page.context["adminform"].form
    assert set(form.fields) == {"tier", "priority", "enabled", "data_mode"}


def test_instrument_change_page_without_an_issue_says_so(admin_client):
    inst = instrument_make()
    page = admin_client.get(reverse("admin:feeds_instrument_change", args=[inst.pk]))
    assert "<label>Placement issue:</label>" in page.text
    assert '<div class="readonly">—</div>' in page.text


def test_instrument_add_page_has_no_placement(admin_client):
    page = admin_client.get(reverse("admin:feeds_instrument_add"))
    assert page.status_code == 200
    assert "<label>Placement issue:</label>" not in page.text


def test_placement_issue_list_filters_and_searches(admin_client):
    critical = instrument_make(key="NSE:NIFTY50", tier=Tier.CRITICAL, priority=100)
    standard = instrument_make(key="NSE:SBIN", tier=Tier.STANDARD, priority=40)
    low = instrument_make(key="NSE:IDEA", tier=Tier.LOW_FREQUENCY, priority=10)
    placement_issues_record(
        left_out={standard.key: NO_ROOM, low.key: NO_ROOM}, notes={critical.key: NO_UPSTOX}
    )
    url = reverse("admin:feeds_placementissue_changelist")

    page = admin_client.get(url)
    assert page.status_code == 200
    for text in ["NSE:NIFTY50", "NSE:SBIN", "NSE:IDEA", NO_ROOM, NO_UPSTOX, "One provider only"]:
        assert text in page.text
    assert '<td class="field-priority">100</td>' in page.text
    assert "Critical (both providers, deep checks)" in page.text

    def listed(params):
        page = admin_client.get(url, params)
        assert page.status_code == 200
        return {issue.instrument.key for issue in page.context["cl"].result_list}

    assert listed({"kind__exact": "left_out"}) == {"NSE:SBIN", "NSE:IDEA"}
    assert listed({"kind__exact": "one_provider"}) == {"NSE:NIFTY50"}
    assert listed({"instrument__tier__exact": "low_frequency"}) == {"NSE:IDEA"}
    assert listed({"q": "sbin"}) == {"NSE:SBIN"}


def test_placement_issues_are_view_only(admin_client):
    inst = instrument_make()
    placement_issues_record(left_out={inst.key: NO_ROOM}, notes={})
    issue = PlacementIssue.objects.get()

    assert admin_client.get(reverse("admin:feeds_placementissue_add")).status_code == 403
    page = admin_client.get(reverse("admin:feeds_placementissue_change", args=[issue.pk]))
    assert page.status_code == 200
    assert NO_ROOM in page.text
    assert 'name="reason"' not in page.text  # shown, not editable
    # The instrument field links to the instrument's admin page.
    assert reverse("admin:feeds_instrument_change", args=[inst.pk]) in page.text


def test_anonymous_is_sent_to_login(client):
    response = client.get(reverse("admin:feeds_placementissue_changelist"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
