"""The pool's database side: inputs read from the admin's data, assignments recorded."""

from __future__ import annotations

import pytest

from feeds.models import PoolAssignment, Tier
from feeds.pool.distribution import distribute
from feeds.selectors import pool_inputs_get
from feeds.services import (
    instruments_set_tier,
    pool_assignments_record,
    provider_accounts_ensure_defaults,
)
from tests.feeds.factories import instrument_make

pytestmark = pytest.mark.django_db


def test_inputs_reflect_enabled_instruments_and_accounts(monkeypatch):
    provider_accounts_ensure_defaults()
    on = instrument_make(enabled=True, tier=Tier.CRITICAL, priority=90, data_mode="depth")
    instrument_make(enabled=False)
    upstox_only = instrument_make(enabled=True, fyers_token="", fyers_symbol="")
    monkeypatch.setenv("FYERS_ACCESS_TOKEN", "APP-100:jwt")

    inputs = pool_inputs_get()

    assert {w.key for w in inputs.wants} == {on.key, upstox_only.key}
    want = next(w for w in inputs.wants if w.key == on.key)
    assert (want.tier, want.priority, want.mode, want.on_fyers, want.on_upstox) == (
        "critical", 90, "depth", True, True,
    )  # fmt: skip
    assert next(w for w in inputs.wants if w.key == upstox_only.key).on_fyers is False
    assert {(a.provider, a.name) for a in inputs.accounts} == {
        ("fyers", "primary"), ("upstox", "primary"),
    }  # fmt: skip
    fyers = inputs.endpoints[("fyers", "primary")]
    assert fyers.per_connection == 200 and fyers.socket_url.endswith("/hsm/v1-5/prod")
    assert fyers.token() == "APP-100:jwt"  # read from the environment at connect time
    assert inputs.identities[on.key].fytoken == on.fyers_token
    assert inputs.current == {}


def test_recording_a_plan_keeps_rows_true_and_since_stable():
    provider_accounts_ensure_defaults()
    items = [instrument_make(enabled=True, tier=Tier.HIGH_FREQUENCY) for _ in range(5)]
    critical = instrument_make(enabled=True, tier=Tier.CRITICAL)
    inputs = pool_inputs_get()
    plan = distribute(wants=inputs.wants, accounts=inputs.accounts)

    written, deleted = pool_assignments_record(assignment=plan.assignment, worker_id="w1")
    assert (written, deleted) == (7, 0)  # the critical one is on both providers
    assert PoolAssignment.objects.filter(instrument=critical).count() == 2
    assert pool_inputs_get().current == dict(plan.assignment)
    since = dict(PoolAssignment.objects.values_list("pk", "since"))

    # Nothing changed: nothing written, and every row keeps its "since".
    assert pool_assignments_record(assignment=plan.assignment, worker_id="w1") == (0, 0)
    assert dict(PoolAssignment.objects.values_list("pk", "since")) == since

    # An admin demotes the critical one: its second (Upstox) placement goes away.
    instruments_set_tier(instrument_ids=[critical.pk], tier=Tier.HIGH_FREQUENCY)
    inputs = pool_inputs_get()
    replan = distribute(wants=inputs.wants, accounts=inputs.accounts, current=inputs.current)
    pool_assignments_record(assignment=replan.assignment, worker_id="w1")
    assert PoolAssignment.objects.filter(instrument=critical).count() == 1
    assert PoolAssignment.objects.count() == len(items) + 1
