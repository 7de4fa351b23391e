"""Retention: old health rows, outcomes, audits, performance reports and actions and resolved
alerts go; recent ones and open alerts stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.models import Alert, ConnectionHealth, PerformanceAction, PerformanceReport
from monitoring.tasks import retention
from tests.feeds.factories import instrument_make
from validation.models import AccuracyAudit, ValidationOutcome

pytestmark = pytest.mark.django_db


def test_retention_prunes_what_is_older_than_the_setting(settings) -> None:
    settings.MONITORING = {**settings.MONITORING, "RETENTION_DAYS": 7}
    now = timezone.now()
    old, recent = now - timedelta(days=8), now - timedelta(days=6)
    instrument = instrument_make(key="NSE:SBIN")
    for label, at in (("old", old), ("recent", recent)):
        ConnectionHealth.objects.create(connection_id="fyers:primary:0", recorded_at=at,
                                        state="live")  # fmt: skip
        ValidationOutcome.objects.create(
            instrument=instrument, check_name="jump", tier=1, severity="warning",
            provider="fyers", decision="flagged", first_seen=at, last_seen=at,
        )  # fmt: skip
        AccuracyAudit.objects.create(started_at=at)
        Alert.objects.create(
            kind="connection_unhealthy", subject=label, level="error", message="x",
            opened_at=at, last_seen_at=at, resolved_at=at,
        )  # fmt: skip
        report = PerformanceReport.objects.create(created_at=at, window_seconds=60)
        PerformanceAction.objects.create(
            created_at=at, kind="widen_flush", reason=label, setting="flush_interval",
            before=0.005, after=0.02, metric="latency_mean_ms", report=report,
        )  # fmt: skip
    # Open for long: still going on, so it stays whatever its age.
    Alert.objects.create(kind="worker_stopped", subject="w", level="error", message="x",
                         opened_at=old, last_seen_at=now)  # fmt: skip

    deleted = retention.apply().get()  # the task as beat runs it, in this process

    assert deleted == {"connection_health": 1, "validation_outcomes": 1, "accuracy_audits": 1,
                       "alerts": 1, "performance_reports": 1, "performance_actions": 1}  # fmt: skip
    assert list(ConnectionHealth.objects.values_list("recorded_at", flat=True)) == [recent]
    assert ValidationOutcome.objects.get().last_seen == recent
    assert AccuracyAudit.objects.get().started_at == recent
    assert set(Alert.objects.values_list("subject", flat=True)) == {"recent", "w"}
    assert PerformanceReport.objects.get().created_at == recent
    assert PerformanceAction.objects.get().reason == "recent"
