"""Celery tasks of monitoring: thin wrappers around services (scheduled by beat)."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(name="monitoring.health_check")
def health_check() -> dict[str, Any]:
    """Verdicts on every connection, failover orders, stopped workers released."""
    from monitoring.services import connection_health_check

    result = connection_health_check()
    return {
        "verdicts": {name: v.verdict for name, v in result.verdicts.items()},
        "reasons": {name: v.reason for name, v in result.verdicts.items()},
        "ordered": result.ordered,
        "released": result.released,
        "workers": result.workers,
        "recorded": result.recorded,
    }


@shared_task(name="monitoring.retention")
def retention() -> dict[str, int]:
    """Prune old health rows, outcomes, audits and resolved alerts."""
    from monitoring.services import records_prune

    return records_prune()


@shared_task(name="monitoring.performance_report")
def performance_report() -> dict[str, Any]:
    """The performance monitor's window: figures, judgements, reactions."""
    from monitoring.services import performance_report_run

    report = performance_report_run()
    return {
        "report": report.pk,
        "latency_mean_ms": report.latency_mean_ms,
        "latency_p99_ms": report.latency_p99_ms,
        "cache_efficiency": report.cache_efficiency,
        "ticks_per_second": report.ticks_per_second,
        "actions": [str(a) for a in report.actions.all()],
        "tuning": report.tuning,
    }
