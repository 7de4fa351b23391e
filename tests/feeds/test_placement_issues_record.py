"""Recording the plan's left-out and one-provider instruments as ``PlacementIssue`` rows."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from feeds.models import PlacementIssue, PlacementIssueKind, Tier
from feeds.pool.distribution import Account, Want, distribute
from feeds.services import placement_issues_record
from tests.feeds.factories import instrument_make

pytestmark = pytest.mark.django_db

LEFT_OUT, ONE_PROVIDER = PlacementIssueKind.LEFT_OUT, PlacementIssueKind.ONE_PROVIDER
NO_ROOM = "no capacity: FYERS and Upstox full"
NO_UPSTOX = "not carried by Upstox: no capacity: Upstox full"


def _rows() -> dict[str, tuple[str, str, str]]:
    return {
        row.instrument.key: (row.kind, row.reason, row.worker_id)
        for row in PlacementIssue.objects.select_related("instrument")
    }


def _age_all_rows() -> datetime:
    """Move every ``since`` an hour back, so that a rewrite would be visible."""
    old = timezone.now() - timedelta(hours=1)
    PlacementIssue.objects.update(since=old)
    return old


def test_creates_one_row_per_issue():
    low, critical = instrument_make(), instrument_make(tier=Tier.CRITICAL)

    written, deleted = placement_issues_record(
        left_out={low.key: NO_ROOM}, notes={critical.key: NO_UPSTOX}, worker_id="w1"
    )

    assert (written, deleted) == (2, 0)
    assert _rows() == {
        low.key: (LEFT_OUT, NO_ROOM, "w1"),
        critical.key: (ONE_PROVIDER, NO_UPSTOX, "w1"),
    }
    assert critical.placement_issue.since <= timezone.now()


def test_unchanged_rows_are_not_written_and_keep_since():
    a, b = instrument_make(), instrument_make()
    placement_issues_record(left_out={a.key: NO_ROOM}, notes={b.key: NO_UPSTOX})
    old = _age_all_rows()

    assert placement_issues_record(left_out={a.key: NO_ROOM}, notes={b.key: NO_UPSTOX}) == (0, 0)
    assert set(PlacementIssue.objects.values_list("since", flat=True)) == {old}


def test_a_new_reason_updates_the_row_but_keeps_since():
    a = instrument_make()
    placement_issues_record(left_out={a.key: f"displaced by NSE:X; {NO_ROOM}"}, notes={})
    old = _age_all_rows()

    assert placement_issues_record(left_out={a.key: NO_ROOM}, notes={}, worker_id="w2") == (1, 0)
    row = PlacementIssue.objects.get()
    assert (row.kind, row.reason, row.worker_id, row.since) == (LEFT_OUT, NO_ROOM, "w2", old)


def test_a_new_kind_updates_the_row_and_restarts_since():
    a = instrument_make(tier=Tier.CRITICAL)
    placement_issues_record(left_out={}, notes={a.key: NO_UPSTOX})
    old = _age_all_rows()

    assert placement_issues_record(left_out={a.key: NO_ROOM}, notes={}) == (1, 0)
    row = PlacementIssue.objects.get()
    assert (row.kind, row.reason) == (LEFT_OUT, NO_ROOM)
    assert row.since > old


def test_issues_no_longer_in_the_plan_are_deleted():
    a, b, c = instrument_make(), instrument_make(), instrument_make()
    placement_issues_record(left_out={a.key: NO_ROOM, b.key: NO_ROOM}, notes={c.key: NO_UPSTOX})

    assert placement_issues_record(left_out={a.key: NO_ROOM}, notes={}) == (0, 2)
    assert set(_rows()) == {a.key}
    assert placement_issues_record(left_out={}, notes={}) == (0, 1)
    assert not PlacementIssue.objects.exists()


def test_unknown_keys_are_ignored():
    a = instrument_make()

    written, deleted = placement_issues_record(
        left_out={a.key: NO_ROOM, "NSE:NOSUCH": NO_ROOM}, notes={"BSE:GONE": NO_UPSTOX}
    )

    assert (written, deleted) == (1, 0)
    assert set(_rows()) == {a.key}


def test_left_out_wins_over_one_provider():
    a = instrument_make(tier=Tier.CRITICAL)

    assert placement_issues_record(left_out={a.key: NO_ROOM}, notes={a.key: NO_UPSTOX}) == (1, 0)
    assert _rows() == {a.key: (LEFT_OUT, NO_ROOM, "")}


def test_a_long_reason_is_cut_to_the_column():
    a = instrument_make()
    placement_issues_record(left_out={a.key: "x" * 500}, notes={})
    assert placement_issues_record(left_out={a.key: "x" * 500}, notes={}) == (0, 0)
    assert len(PlacementIssue.objects.get().reason) == 300


def test_a_real_plan_is_recorded():
    a, b = instrument_make(tier=Tier.CRITICAL), instrument_make(tier=Tier.CRITICAL)
    c = instrument_make(fyers_token="", fyers_symbol="")
    wants = [
        Want(a.key, "critical", 90, "quote", on_fyers=True, on_upstox=True),
        Want(b.key, "critical", 80, "quote", on_fyers=True, on_upstox=True),
        Want(c.key, "standard", 50, "quote", on_fyers=False, on_upstox=True),
    ]
    accounts = [Account("primary", "fyers", 1, 2), Account("primary", "upstox", 1, 1)]
    plan = distribute(wants=wants, accounts=accounts)

    assert placement_issues_record(left_out=plan.left_out, notes=plan.notes) == (2, 0)
    assert _rows() == {
        b.key: (ONE_PROVIDER, NO_UPSTOX, ""),
        c.key: (LEFT_OUT, "no capacity: Upstox full", ""),
    }


def test_thousands_of_keys_take_a_handful_of_queries(django_assert_max_num_queries):
    keys = [instrument_make().key for _ in range(1200)]
    half = len(keys) // 2
    placement_issues_record(left_out=dict.fromkeys(keys[:half], NO_ROOM), notes={})

    # 600 rows updated (new reason) and 600 created, each in a few batched statements.
    with django_assert_max_num_queries(12):
        written, deleted = placement_issues_record(
            left_out=dict.fromkeys(keys, NO_UPSTOX), notes={}
        )
    assert (written, deleted) == (len(keys), 0)
    with django_assert_max_num_queries(6):
        assert placement_issues_record(left_out={}, notes={}) == (0, len(keys))
