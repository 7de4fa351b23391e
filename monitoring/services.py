"""Operator-facing setup, the health check and its records, alerts, retention."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from feeds.models import (
    PlacementIssue,
    PlacementIssueKind,
    PoolAssignment,
    ProviderAccount,
    connection_id,
)
from feeds.pool.distribution import conn_from_name
from feeds.pool.worker import PLANNER_LEASE
from monitoring.health import (
    DEGRADED,
    UNHEALTHY,
    HealthThresholds,
    Previous,
    Verdict,
    connection_verdict,
    errors_total,
)
from monitoring.models import (
    Alert,
    AlertLevel,
    ConnectionHealth,
    ConnectionState,
    HealthAction,
    PerformanceAction,
    PerformanceReport,
)
from monitoring.perf import (
    PerfWindow,
    connection_tick_base,
    connection_tick_counters,
    connection_tick_rates,
)
from monitoring.runtime import PERF_KIND, TUNING_IDENT, TUNING_KIND
from monitoring.tuning import REVERT, Figures, Pending, TuningLimits, tuning_decide

if TYPE_CHECKING:
    from feeds.runtime import HubAccess

logger = logging.getLogger(__name__)


def operator_ensure(*, username: str = "admin") -> str | None:
    """Create a superuser when none exists; return its one-time password, else None.

    The password is random and shown once by the caller; nothing stores it.
    """
    user_model = get_user_model()
    if user_model.objects.filter(is_superuser=True).exists():
        return None
    password = secrets.token_urlsafe(12)
    user_model.objects.create_superuser(username=username, email="", password=password)
    return password


def _from_ns(value: object) -> datetime | None:
    return datetime.fromtimestamp(value / 1e9, tz=UTC) if isinstance(value, int) and value else None


def _health_row(
    status: Mapping[str, Any],
    *,
    worker_id: str,
    accounts: Mapping[tuple[str, str], ProviderAccount],
    now: datetime,
) -> ConnectionHealth | None:
    state = str(status.get("state", ""))
    name = str(status.get("name", ""))
    if state not in ConnectionState.values:
        return None  # closed on purpose: nothing to watch
    try:
        conn = conn_from_name(name)
    except ValueError:
        return None  # not a pool connection
    return ConnectionHealth(
        connection_id=name,
        account=accounts.get((conn.provider, conn.account)),
        worker_id=worker_id,
        recorded_at=now,
        state=state,
        symbols=int(status.get("symbols", 0)),
        symbol_cap=int(status.get("symbol_cap", 0)),
        messages_per_second=float(status.get("messages_per_second", 0.0)),
        messages_total=int(status.get("frames", 0)),
        errors_total=errors_total(status),
        reconnects=int(status.get("reconnects", 0)),
        last_message_at=_from_ns(status.get("last_message_ns")),
        last_pong_at=_from_ns(status.get("last_pong_ns")),
        last_error=str(status.get("last_error", ""))[:2000],
    )


def _accounts() -> dict[tuple[str, str], ProviderAccount]:
    return {(a.provider, a.label): a for a in ProviderAccount.objects.all()}


def connection_health_record(*, statuses: Iterable[Mapping[str, Any]], worker_id: str) -> int:
    """Store one ``ConnectionHealth`` row per connection status a feed worker reports
    (``FeedClient.status()`` plus the worker's ``available``); returns how many.

    The worker's own view goes in ``note``; the verdict is left to the health check."""
    accounts, now = _accounts(), timezone.now()
    rows = []
    for status in statuses:
        row = _health_row(status, worker_id=worker_id, accounts=accounts, now=now)
        if row is None:
            continue
        available = status.get("available", True)
        reason = str(status.get("reason", ""))
        row.note = f"worker: {'in use' if available else 'failed over'} ({reason})"[:200]
        rows.append(row)
    ConnectionHealth.objects.bulk_create(rows)
    return len(rows)


# --- alerts ---------------------------------------------------------------------------------


def alert_raise(
    *,
    kind: str,
    subject: str,
    level: str,
    message: str,
    details: Mapping[str, Any] | None = None,
) -> Alert:
    """Open an alert for ``(kind, subject)``, or refresh the open one. Opening logs the alert
    (WARNING or ERROR, with its fields as structured ``extra``); refreshing does not."""
    now = timezone.now()
    fields = {"level": level, "message": message[:500], "details": dict(details or {})}
    alert = Alert.objects.filter(kind=kind, subject=subject, resolved_at__isnull=True).first()
    if alert is not None:
        Alert.objects.filter(pk=alert.pk).update(last_seen_at=now, **fields)
        return alert
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                kind=kind, subject=subject, opened_at=now, last_seen_at=now, **fields
            )
    except IntegrityError:  # opened meanwhile by a concurrent check
        return Alert.objects.get(kind=kind, subject=subject, resolved_at__isnull=True)
    log_level = logging.ERROR if level == AlertLevel.ERROR else logging.WARNING
    extra = {"alert": kind, "subject": subject, **fields["details"]}
    logger.log(log_level, "alert %s %s: %s", kind, subject, message, extra=extra)
    return alert


def alerts_resolve(*, kind: str, keep: Iterable[str] = ()) -> int:
    """Resolve the open alerts of ``kind`` whose subject is not in ``keep``; how many."""
    open_alerts = Alert.objects.filter(kind=kind, resolved_at__isnull=True).exclude(
        subject__in=set(keep)
    )
    subjects = list(open_alerts.values_list("subject", flat=True))
    resolved = open_alerts.filter(subject__in=subjects).update(resolved_at=timezone.now())
    for subject in subjects:
        logger.info("alert %s %s resolved", kind, subject,
                    extra={"alert": kind, "subject": subject, "resolved": True})  # fmt: skip
    return resolved


# --- the health check -----------------------------------------------------------------------


@dataclass(slots=True)
class HealthCheckResult:
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # connection -> verdict
    ordered: list[str] = field(default_factory=list)  # connections given a failover order
    released: dict[str, list[str]] = field(default_factory=dict)  # stopped worker -> leases
    workers: list[str] = field(default_factory=list)  # live workers
    recorded: int = 0


@dataclass(frozen=True, slots=True)
class _HubView:
    workers: dict[str, dict[str, Any]]
    connections: dict[str, dict[str, Any]]
    holders: dict[str, str]  # lease -> holder, for the assigned connections and the planner


def health_thresholds_get() -> HealthThresholds:
    conf = settings.MONITORING
    return HealthThresholds(
        beat_stale=conf["BEAT_STALE"],
        data_silence=conf["DATA_SILENCE"],
        order_cooldown=conf["ORDER_COOLDOWN"],
    )


def _assigned_connections() -> set[str]:
    rows = PoolAssignment.objects.values_list(
        "account__provider", "account__label", "connection_slot"
    ).distinct()
    return {connection_id(provider, label, slot) for provider, label, slot in rows}


def _previous_records(names: Iterable[str], since: datetime) -> dict[str, ConnectionHealth]:
    latest: dict[str, ConnectionHealth] = {}
    rows = ConnectionHealth.objects.filter(connection_id__in=list(names), recorded_at__gte=since)
    for row in rows.order_by("connection_id", "-recorded_at"):
        latest.setdefault(row.connection_id, row)
    return latest


def _last_orders(names: Iterable[str], since: datetime) -> dict[str, float]:
    rows = ConnectionHealth.objects.filter(
        connection_id__in=list(names),
        recorded_at__gte=since,
        action=HealthAction.FAILOVER_ORDERED,
    ).values_list("connection_id", "recorded_at")
    orders: dict[str, float] = {}
    for name, at in rows:
        orders[name] = max(orders.get(name, 0.0), at.timestamp())
    return orders


def connection_health_check(*, thresholds: HealthThresholds | None = None) -> HealthCheckResult:
    """The periodic health check (Celery beat, every 5 s).

    Reads the workers' and connections' heartbeats, decides a verdict per connection
    (``monitoring.health``), records it (on a change, and every ``RECORD_EVERY`` otherwise),
    orders a failover of an unhealthy connection its worker still uses, releases the leases of
    a worker whose heartbeat stopped so the others take its connections now, and keeps the
    alerts true."""
    # feeds.runtime records through this module: import it when called, not at load.
    from feeds.runtime import hub_call
    from validation.runtime import session_calendar_build

    thresholds = thresholds or health_thresholds_get()
    assigned = _assigned_connections()

    async def read(access: HubAccess) -> _HubView:
        coordinator = access.coordinator
        connections = await coordinator.beats("connection")
        holders = await coordinator.holders([*sorted(assigned | set(connections)), PLANNER_LEASE])
        return _HubView(await coordinator.beats("worker"), connections, holders)

    view = hub_call(read)
    now = time.time()
    now_dt = timezone.now()
    market_open = session_calendar_build().expects_ticks(
        exchange="NSE", segment="CM", ts_ms=int(now * 1000)
    )
    names = sorted(assigned | set(view.connections))
    window = now_dt - timedelta(seconds=max(settings.MONITORING["RECORD_EVERY"] * 2, 600))
    previous_rows = _previous_records(names, window)
    orders = _last_orders(names, now_dt - timedelta(seconds=thresholds.order_cooldown))
    result = HealthCheckResult(workers=sorted(view.workers))

    # Workers whose heartbeat stopped while they still hold leases: release them, unless a
    # fresh connection heartbeat shows the worker is only slow.
    fresh_reporters = {
        str(beat.get("worker"))
        for beat in view.connections.values()
        if now - float(beat.get("at") or 0.0) <= thresholds.beat_stale
    }
    for lease, holder in view.holders.items():
        if holder not in view.workers and holder not in fresh_reporters:
            result.released.setdefault(holder, []).append(lease)

    accounts = _accounts()
    record_every = settings.MONITORING["RECORD_EVERY"]
    rows: list[ConnectionHealth] = []
    for name in names:
        beat = view.connections.get(name)
        prev_row = previous_rows.get(name)
        previous = None
        if prev_row is not None:
            previous = Previous(prev_row.reconnects, prev_row.errors_total, orders.get(name))
        if beat is None:
            holder = view.holders.get(name)
            if holder is None:
                verdict = Verdict(UNHEALTHY, "no heartbeat: no worker holds it")
            elif holder in view.workers:  # just opened: its first heartbeat is on the way
                verdict = Verdict(DEGRADED, f"no heartbeat yet from its holder {holder}")
            else:
                verdict = Verdict(UNHEALTHY, f"no heartbeat: its holder {holder} stopped")
            status: Mapping[str, Any] = {"name": name, "state": ConnectionState.DOWN}
            worker_id = holder or ""
        else:
            verdict = connection_verdict(
                beat=beat, previous=previous, now=now, market_open=market_open,
                thresholds=thresholds,
            )  # fmt: skip
            status, worker_id = beat, str(beat.get("worker", ""))
        result.verdicts[name] = verdict
        action = HealthAction.NONE
        if verdict.order and beat is not None and view.holders.get(name) == worker_id:
            action = HealthAction.FAILOVER_ORDERED
            result.ordered.append(name)
        elif any(name in leases for leases in result.released.values()):
            action = HealthAction.RELEASED
        row = _health_row(status, worker_id=worker_id, accounts=accounts, now=now_dt)
        if row is None:
            continue
        row.verdict, row.note, row.action = verdict.verdict, verdict.reason[:200], action
        due = (
            prev_row is None
            or action != HealthAction.NONE
            or (prev_row.verdict, prev_row.state) != (row.verdict, row.state)
            or (now_dt - prev_row.recorded_at).total_seconds() >= record_every
        )
        if due:
            rows.append(row)
    ConnectionHealth.objects.bulk_create(rows)
    result.recorded = len(rows)

    if result.ordered or result.released:
        hub_call(lambda access: _act(access, result))
    _health_alerts(result, view)
    return result


async def _act(access: HubAccess, result: HealthCheckResult) -> None:
    for name in result.ordered:
        reason = result.verdicts[name].reason
        await access.send_control(
            {"type": "pool.failover", "conn": name, "reason": reason, "worker": "health-check"}
        )
    for holder, leases in result.released.items():
        await access.coordinator.release(leases, owner=holder)
    if result.released:
        # The workers take the released connections now instead of at their next lease check.
        await access.send_control({"type": "pool.leases", "worker": "health-check"})


def _health_alerts(result: HealthCheckResult, view: _HubView) -> None:
    unhealthy = {n: v for n, v in result.verdicts.items() if v.verdict == UNHEALTHY}
    for name, verdict in unhealthy.items():
        beat = view.connections.get(name, {})
        action = "failover ordered" if name in result.ordered else "handled by its worker"
        alert_raise(
            kind="connection_unhealthy",
            subject=name,
            level=AlertLevel.ERROR,
            message=f"{verdict.reason}; {action}",
            details={"connection": name, "verdict": verdict.verdict,
                     "worker": str(beat.get("worker", "")), "symbols": beat.get("symbols", 0),
                     "ordered": name in result.ordered},
        )  # fmt: skip
    alerts_resolve(kind="connection_unhealthy", keep=unhealthy)
    for holder, leases in result.released.items():
        alert_raise(
            kind="worker_stopped",
            subject=holder,
            level=AlertLevel.ERROR,
            message=f"heartbeat stopped; released {len(leases)} lease(s) to the other workers",
            details={"worker": holder, "leases": sorted(leases)},
        )
    alerts_resolve(kind="worker_stopped", keep=result.released)
    left_out = PlacementIssue.objects.filter(
        kind=PlacementIssueKind.LEFT_OUT, instrument__enabled=True
    ).count()
    if left_out:
        alert_raise(
            kind="capacity_short",
            subject="pool",
            level=AlertLevel.WARNING,
            message=f"{left_out} enabled instrument(s) left out: the connections are full",
            details={"left_out": left_out},
        )
    else:
        alerts_resolve(kind="capacity_short")


# --- the performance monitor ----------------------------------------------------------------

# A window needs this many samples before its figure is judged or acted on.
MIN_DELIVERIES = 50
MIN_LOOKUPS = 20
# The tuning heartbeat outlives a few missed reports; without reports it lapses and every
# process goes back to its configured settings.
TUNING_TTL = 3600.0


@dataclass(frozen=True, slots=True)
class _PerfView:
    perf: dict[str, dict[str, Any]]
    connections: dict[str, dict[str, Any]]


def tuning_limits_get() -> TuningLimits:
    conf, delivery = settings.MONITORING, settings.DELIVERY
    return TuningLimits(
        latency_ms=conf["LATENCY_LIMIT_MS"],
        cache_efficiency=conf["CACHE_EFFICIENCY_MIN"],
        flush_default=delivery["FLUSH_INTERVAL"],
        fresh_default=delivery["FRESH_AGE"],
    )


def _rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def performance_report_run(*, limits: TuningLimits | None = None) -> PerformanceReport:
    """The performance monitor (Celery beat, every minute).

    Adds up every process's perf heartbeat since the previous report (latency histograms,
    ticks, cache lookups, validation, conflation), stores the window as a
    ``PerformanceReport``, judges the changes made last time, makes new ones when the
    latency or the cache efficiency is out of bounds (``monitoring.tuning``), records them as
    ``PerformanceAction`` rows, and publishes the tuning for every process to apply."""
    from feeds.runtime import hub_call

    limits = limits or tuning_limits_get()

    async def read(access: HubAccess) -> _PerfView:
        return _PerfView(
            perf=await access.coordinator.beats(PERF_KIND),
            connections=await access.coordinator.beats("connection"),
        )

    view = hub_call(read)
    previous = PerformanceReport.objects.first()
    window = PerfWindow.build(view.perf, previous.snapshots if previous else {})
    latency = window.receive.summary()
    figures = Figures(
        latency_mean_ms=latency["mean"] if window.receive.total >= MIN_DELIVERIES else None,
        cache_efficiency=window.cache_efficiency if window.lookups >= MIN_LOOKUPS else None,
    )
    now = timezone.now()
    tuning = dict(previous.tuning) if previous else {}
    unjudged = PerformanceAction.objects.filter(helped__isnull=True).exclude(kind=REVERT)
    pending = [
        Pending(a.pk, a.setting, a.before, a.after, a.metric_before,
                settling=previous is not None and a.report_id == previous.pk)
        for a in unjudged
    ]  # fmt: skip
    reverted_at = {
        a.setting: a.created_at.timestamp()
        for a in PerformanceAction.objects.filter(kind=REVERT).order_by("created_at")
    }
    decision = tuning_decide(
        figures=figures,
        tuning=tuning,
        pending=pending,
        reverted_at=reverted_at,
        now=now.timestamp(),
        limits=limits,
    )
    counted = connection_tick_counters(view.connections)
    counted_before = previous.connection_ticks if previous else {}
    ticks_by_connection = connection_tick_rates(
        counted, counted_before, held=previous.ticks_by_connection if previous else None
    )
    connection_ticks = connection_tick_base(counted, counted_before)
    with transaction.atomic():
        report = PerformanceReport.objects.create(
            created_at=now,
            window_seconds=round(window.seconds, 2),
            processes=window.processes,
            clients=window.clients,
            deliveries=window.receive.total,
            latency_mean_ms=_rounded(latency["mean"]),
            latency_p50_ms=_rounded(latency["p50"]),
            latency_p95_ms=_rounded(latency["p95"]),
            latency_p99_ms=_rounded(latency["p99"]),
            exchange_latency={p: h.summary() for p, h in sorted(window.exchange.items())},
            ticks_per_second=round(sum(window.tick_rates.values()), 1),
            ticks_by_provider={p: round(r, 1) for p, r in sorted(window.tick_rates.items())},
            ticks_by_connection={n: round(r, 1) for n, r in sorted(ticks_by_connection.items())},
            lookups=window.lookups,
            cache_efficiency=_rounded(window.cache_efficiency, 4),
            cache_hit_rates={k: _rounded(v, 4) for k, v in window.hit_rates().items()},
            validation={k: round(v, 2) for k, v in window.validation_rates.items()},
            conflation=window.conflation(),
            tuning=decision.tuning,
            snapshots={
                ident: {k: v for k, v in beat.items() if k != "process_metrics"}
                for ident, beat in view.perf.items()
            },
            connection_ticks=connection_ticks,
        )
        for judgement in decision.judgements:
            PerformanceAction.objects.filter(pk=judgement.ident).update(
                helped=judgement.helped, metric_after=judgement.metric_after, judged_at=now
            )
        for change in decision.changes:
            PerformanceAction.objects.create(
                created_at=now, kind=change.kind, reason=change.reason[:300],
                setting=change.setting, before=change.before, after=change.after,
                metric=change.metric, metric_before=change.metric_before, report=report,
            )  # fmt: skip
    for change in decision.changes:
        logger.warning("performance monitor: %s", change.reason,
                       extra={"action": change.kind, "setting": change.setting,
                              "before": change.before, "after": change.after})  # fmt: skip
    if decision.tuning != tuning or any(v is not None for v in decision.tuning.values()):
        # Published again at every report while anything is tuned, so it does not lapse.

        async def publish(access: HubAccess) -> None:
            await access.coordinator.beat(TUNING_KIND, TUNING_IDENT, decision.tuning,
                                          ttl=TUNING_TTL)  # fmt: skip

        hub_call(publish)
    _performance_alerts(decision.stuck)
    return report


def _performance_alerts(stuck: list[str]) -> None:
    if stuck:
        alert_raise(kind="performance", subject="hub", level=AlertLevel.WARNING,
                    message="; ".join(stuck), details={"figures": stuck})  # fmt: skip
    else:
        alerts_resolve(kind="performance")


# --- beat schedules -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    task: str
    every: int | None = None  # seconds; else ``daily_at``
    daily_at: tuple[int, int] | None = None  # (hour, minute), exchange time (IST)
    expire: int | None = None  # a run not started within this many seconds is dropped
    description: str = ""


# The hub's periodic tasks. Operators change intervals in the admin (Periodic tasks);
# ``schedules_ensure`` only creates what is missing and never undoes their edits.
SCHEDULES: tuple[Schedule, ...] = (
    Schedule("Health check", "monitoring.health_check", every=5, expire=5,
             description="Connection verdicts, failover orders, stopped workers released."),
    Schedule("Accuracy audit", "validation.accuracy_audit", every=60, expire=60,
             description="Cached values against fresh REST quotes (L3)."),
    Schedule("Performance report", "monitoring.performance_report", every=60, expire=60,
             description="Latency, throughput, cache and validation figures; the reactions."),
    Schedule("Retention", "monitoring.retention", daily_at=(2, 30),
             description="Prunes old health rows, outcomes, audits, reports and alerts."),
)  # fmt: skip


def schedules_ensure() -> list[str]:
    """Create the periodic tasks of ``SCHEDULES`` that do not exist yet (by name); the names
    created. Idempotent: run at every start."""
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    created = []
    for schedule in SCHEDULES:
        if PeriodicTask.objects.filter(name=schedule.name).exists():
            continue
        timing: dict[str, Any]
        if schedule.every is not None:
            interval, _ = IntervalSchedule.objects.get_or_create(
                every=schedule.every, period=IntervalSchedule.SECONDS
            )
            timing = {"interval": interval}
        else:
            assert schedule.daily_at is not None
            hour, minute = schedule.daily_at
            crontab, _ = CrontabSchedule.objects.get_or_create(
                minute=str(minute), hour=str(hour), day_of_week="*", day_of_month="*",
                month_of_year="*", timezone=settings.TIME_ZONE,
            )  # fmt: skip
            timing = {"crontab": crontab}
        PeriodicTask.objects.create(
            name=schedule.name,
            task=schedule.task,
            expire_seconds=schedule.expire,
            description=schedule.description,
            **timing,
        )
        created.append(schedule.name)
    return created


# --- retention ------------------------------------------------------------------------------


def records_prune(*, days: int | None = None) -> dict[str, int]:
    """Delete health rows, validation outcomes, audits and resolved alerts older than
    ``days`` (``MDHUB_RETENTION_DAYS``); the counts deleted, by kind."""
    from validation.models import AccuracyAudit, ValidationOutcome

    days = settings.MONITORING["RETENTION_DAYS"] if days is None else days
    cutoff = timezone.now() - timedelta(days=days)
    deleted = {
        "connection_health": ConnectionHealth.objects.filter(recorded_at__lt=cutoff).delete()[0],
        "validation_outcomes": ValidationOutcome.objects.filter(last_seen__lt=cutoff).delete()[0],
        "accuracy_audits": AccuracyAudit.objects.filter(started_at__lt=cutoff).delete()[0],
        "alerts": Alert.objects.filter(resolved_at__lt=cutoff).delete()[0],
        "performance_reports": PerformanceReport.objects.filter(created_at__lt=cutoff).delete()[0],
        "performance_actions": PerformanceAction.objects.filter(created_at__lt=cutoff).delete()[0],
    }
    logger.info("retention: deleted %s (older than %d days)", deleted, days)
    return deleted
