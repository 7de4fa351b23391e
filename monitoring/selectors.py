"""Read-only queries for the monitoring pages."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db.models import (
    Case,
    Count,
    IntegerField,
    Q,
    Sum,
    Value,
    When,
)
from django.utils import timezone

from feeds.models import (
    Instrument,
    PlacementIssue,
    PlacementIssueKind,
    PoolAssignment,
    ProviderAccount,
    Tier,
    connection_id,
)
from feeds.pool.distribution import conn_from_name
from monitoring.health import errors_total
from monitoring.models import (
    Alert,
    ConnectionHealth,
    HealthVerdict,
    PerformanceAction,
    PerformanceReport,
)
from validation.models import AccuracyAudit, CheckName, SymbolValidation, ValidationOutcome
from validation.selectors import accuracy_target, agreement_annotate, agreement_below_target

if TYPE_CHECKING:
    from feeds.runtime import HubAccess

logger = logging.getLogger(__name__)

PLACEMENT_ISSUES_SHOWN = 50


@dataclass(frozen=True, slots=True)
class TierCount:
    tier: str
    label: str
    enabled: int
    total: int


@dataclass(frozen=True, slots=True)
class HubOverview:
    instruments: int
    enabled: int
    linked_both: int
    tiers: list[TierCount]
    accounts: list[ProviderAccount]
    assignments: int


def hub_overview_get() -> HubOverview:
    """Counts for the home page: instruments by tier, provider accounts, assignments."""
    totals = Instrument.objects.aggregate(
        instruments=Count("id"),
        enabled=Count("id", filter=Q(enabled=True)),
        linked_both=Count("id", filter=~Q(fyers_token="") & ~Q(upstox_key="")),
    )
    by_tier = {
        row["tier"]: row
        for row in Instrument.objects.values("tier").annotate(
            total=Count("id"), enabled=Count("id", filter=Q(enabled=True))
        )
    }
    tiers = [
        TierCount(
            tier=tier.value,
            label=tier.label,
            enabled=by_tier.get(tier.value, {}).get("enabled", 0),
            total=by_tier.get(tier.value, {}).get("total", 0),
        )
        for tier in Tier
    ]
    return HubOverview(
        instruments=totals["instruments"],
        enabled=totals["enabled"],
        linked_both=totals["linked_both"],
        tiers=tiers,
        accounts=list(ProviderAccount.objects.all()),
        assignments=PoolAssignment.objects.count(),
    )


@dataclass(frozen=True, slots=True)
class PlacementOverview:
    left_out: int
    one_provider: int
    total: int
    issues: list[PlacementIssue]  # the most important first, at most ``limit``


def placement_overview_get(*, limit: int = PLACEMENT_ISSUES_SHOWN) -> PlacementOverview:
    """Enabled instruments the pool leaves out or carries on one provider only.

    Most important first, as the pool ranks them: tier, then priority descending, then key.
    """
    issues = PlacementIssue.objects.filter(instrument__enabled=True)
    counts = issues.aggregate(
        left_out=Count("id", filter=Q(kind=PlacementIssueKind.LEFT_OUT)),
        one_provider=Count("id", filter=Q(kind=PlacementIssueKind.ONE_PROVIDER)),
    )
    tier_rank = Case(
        *(When(instrument__tier=tier.value, then=Value(rank)) for rank, tier in enumerate(Tier)),
        default=Value(len(Tier)),
        output_field=IntegerField(),
    )
    first = (
        issues.select_related("instrument")
        .annotate(tier_rank=tier_rank)
        .order_by("tier_rank", "-instrument__priority", "instrument__key")[:limit]
    )
    return PlacementOverview(
        left_out=counts["left_out"],
        one_provider=counts["one_provider"],
        total=counts["left_out"] + counts["one_provider"],
        issues=list(first),
    )


# --- the live monitoring page ---------------------------------------------------------------

# Every list the page gets is bounded: the state goes to each open page every few seconds.
MONITOR_CONNECTIONS_SHOWN = 500
MONITOR_WORKERS_SHOWN = 50
MONITOR_ALERTS_SHOWN = 20
MONITOR_RESOLVED_SHOWN = 10
MONITOR_AUDITS_SHOWN = 10
MONITOR_REPORTS_SHOWN = 60  # one hour of the performance monitor's one-a-minute reports
MONITOR_ACTIONS_SHOWN = 10
MONITOR_CHECKS_SHOWN = 10
# Reading the heartbeats must never hold the page (or the sync thread it runs on) for long:
# a hub that does not answer within this is shown as "no heartbeat".
HEARTBEAT_READ_TIMEOUT = 1.0
VALIDATION_RECENT = timedelta(hours=1)
VERDICT_WINDOW = timedelta(minutes=10)
NO_HEARTBEAT = "no_heartbeat"

_heartbeat_error = ""  # the last failure logged, so that an open page does not repeat it


@dataclass(frozen=True, slots=True)
class HubBeats:
    """The live heartbeats of the feed workers and their connections."""

    connections: dict[str, dict[str, Any]]
    workers: dict[str, dict[str, Any]]
    error: str = ""  # why they could not be read; "" when they were


def hub_beats_get(*, timeout: float = HEARTBEAT_READ_TIMEOUT) -> HubBeats:
    """The heartbeats from the coordinator (Redis, or this process's feed worker); empty, with
    the reason in ``error``, when the hub cannot be reached in ``timeout`` seconds."""
    global _heartbeat_error
    # feeds.runtime imports the monitoring services: import it when called, not at load.
    from feeds.runtime import hub_call

    async def read(access: HubAccess) -> HubBeats:
        coordinator = access.coordinator
        return HubBeats(await coordinator.beats("connection"), await coordinator.beats("worker"))

    try:
        beats = hub_call(read, timeout=timeout)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if error != _heartbeat_error:
            logger.warning("monitor: heartbeats unavailable (%s)", error)
        _heartbeat_error = error
        return HubBeats({}, {}, error=f"heartbeats unavailable ({error})")
    _heartbeat_error = ""
    return beats


def _finite(value: Any) -> float | None:
    """A float for JSON, or None: NaN and infinities are not JSON (JSON.parse refuses them)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _json_safe(value: Any, depth: int = 4) -> Any:
    """A JSON field as stored, with non-finite numbers nulled and the nesting bounded."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v, depth - 1) for k, v in value.items()} if depth else {}
    if isinstance(value, list | tuple):
        return [_json_safe(v, depth - 1) for v in value] if depth else []
    if isinstance(value, float):
        return _finite(value)
    return value


def _epoch(moment: datetime | None) -> float | None:
    return round(moment.timestamp(), 3) if moment is not None else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _age(now: float, epoch_seconds: float | None) -> float | None:
    return round(max(0.0, now - epoch_seconds), 3) if epoch_seconds else None


def _conn_sort_key(name: str) -> tuple[int, str, str, int, str]:
    try:
        conn = conn_from_name(name)
    except ValueError:
        return (1, "", "", 0, name)
    return (0, conn.provider, conn.account, conn.slot, name)


def _assigned_counts() -> dict[str, int]:
    rows = PoolAssignment.objects.values(
        "account__provider", "account__label", "connection_slot"
    ).annotate(symbols=Count("id"))
    return {
        connection_id(r["account__provider"], r["account__label"], r["connection_slot"]): r[
            "symbols"
        ]
        for r in rows
    }


def _latest_verdicts(names: list[str], *, now: datetime) -> dict[str, ConnectionHealth]:
    """The newest health-check verdict per connection within ``VERDICT_WINDOW`` (the workers'
    own rows carry none). The check records each connection at least every minute while it
    runs, so an older verdict is no verdict; the window also bounds the rows read."""
    rows = (
        ConnectionHealth.objects.exclude(verdict=HealthVerdict.UNKNOWN)
        .filter(connection_id__in=names, recorded_at__gte=now - VERDICT_WINDOW)
        .only("connection_id", "recorded_at", "verdict", "note")
        .order_by("connection_id", "-recorded_at")
    )
    latest: dict[str, ConnectionHealth] = {}
    for row in rows:
        latest.setdefault(row.connection_id, row)
    return latest


def _connection_row(
    name: str,
    beat: Mapping[str, Any] | None,
    *,
    verdict: ConnectionHealth | None,
    assigned: int,
    accounts: Mapping[tuple[str, str], ProviderAccount],
    now: float,
) -> dict[str, Any]:
    try:
        conn = conn_from_name(name)
        provider, label, slot = conn.provider, conn.account, conn.slot
    except ValueError:
        provider, label, slot = str((beat or {}).get("provider", "")), "", None
    account = accounts.get((provider, label))
    cap = account.max_symbols_per_connection if account is not None else 0
    row: dict[str, Any] = {
        "name": name,
        "provider": provider,
        "account": label,
        "slot": slot,
        "state": NO_HEARTBEAT,
        "reason": "no heartbeat from any feed worker",
        "available": None,
        "symbols": assigned,
        "assigned": assigned,
        "symbol_cap": cap,
        "messages_per_second": None,
        "ticks": None,
        "errors": None,
        "reconnects": None,
        "restarts": None,
        "worker": "",
        "last_message_age": None,
        "beat_age": None,
        "verdict": verdict.verdict if verdict is not None else HealthVerdict.UNKNOWN.value,
        "verdict_note": verdict.note if verdict is not None else "",
        "verdict_at": _epoch(verdict.recorded_at) if verdict is not None else None,
    }
    if beat is not None:
        last_ns = beat.get("last_message_ns")
        row.update(
            state=str(beat.get("state", "")),
            reason=str(beat.get("reason", "")),
            available=bool(beat.get("available", True)),
            symbols=_int(beat.get("symbols")),
            symbol_cap=_int(beat.get("symbol_cap")) or cap,
            messages_per_second=_finite(beat.get("messages_per_second")),
            ticks=_int(beat.get("ticks")),
            errors=errors_total(beat),
            reconnects=_int(beat.get("reconnects")),
            restarts=_int(beat.get("restarts")),
            worker=str(beat.get("worker", "")),
            last_message_age=_age(now, last_ns / 1e9 if _int(last_ns) else None),
            beat_age=_age(now, _finite(beat.get("at"))),
        )
    return row


def _pool_rows(
    accounts: Iterable[ProviderAccount], connections: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    pools = []
    for account in accounts:
        key = (account.provider, account.label)
        mine = [c for c in connections if (c["provider"], c["account"]) == key]
        beating = [c for c in mine if c["state"] != NO_HEARTBEAT]
        capacity = account.max_connections * account.max_symbols_per_connection
        symbols = sum(c["symbols"] for c in mine)
        pools.append(
            {
                "provider": account.provider,
                "account": account.label,
                "enabled": account.enabled,
                "connections_open": sum(1 for c in beating if c["state"] != "closed"),
                "connections_live": sum(1 for c in beating if c["state"] == "live"),
                "max_connections": account.max_connections,
                "symbol_cap": account.max_symbols_per_connection,
                "symbols": symbols,
                "assigned": sum(c["assigned"] for c in mine),
                "capacity": capacity,
                "utilisation": round(symbols / capacity, 4) if capacity else None,
            }
        )
    return pools


def _worker_rows(workers: Mapping[str, Mapping[str, Any]], now: float) -> list[dict[str, Any]]:
    rows = []
    for ident in sorted(workers)[:MONITOR_WORKERS_SHOWN]:
        beat = workers[ident]
        held = beat.get("connections")
        rows.append(
            {
                "worker": str(beat.get("worker") or ident),
                "pid": _int(beat.get("pid")) or None,
                "planner": bool(beat.get("planner")),
                "connections": len(held) if isinstance(held, list) else 0,
                "ticks": _int(beat.get("ticks")),
                "uptime": _finite(beat.get("uptime")),
                "beat_age": _age(now, _finite(beat.get("at"))),
            }
        )
    return rows


def _alert_row(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.pk,
        "kind": alert.kind,
        "subject": alert.subject,
        "level": alert.level,
        "message": alert.message,
        "opened_at": _epoch(alert.opened_at),
        "last_seen_at": _epoch(alert.last_seen_at),
        "resolved_at": _epoch(alert.resolved_at),
    }


def _alerts() -> dict[str, Any]:
    open_alerts = Alert.objects.filter(resolved_at__isnull=True)
    resolved = Alert.objects.filter(resolved_at__isnull=False).order_by("-resolved_at")
    return {
        "open_count": open_alerts.count(),
        "open": [_alert_row(a) for a in open_alerts.order_by("-opened_at")[:MONITOR_ALERTS_SHOWN]],
        "resolved": [_alert_row(a) for a in resolved[:MONITOR_RESOLVED_SHOWN]],
    }


def _audits() -> list[dict[str, Any]]:
    return [
        {
            "id": audit.pk,
            "started_at": _epoch(audit.started_at),
            "finished_at": _epoch(audit.finished_at),
            "provider": audit.provider,
            "sampled": audit.sampled,
            "matched": audit.matched,
            "mismatched": audit.mismatched,
            "unavailable": audit.unavailable,
            "accuracy": float(audit.accuracy) if audit.accuracy is not None else None,
        }
        for audit in AccuracyAudit.objects.defer("mismatches")[:MONITOR_AUDITS_SHOWN]
    ]


def _validation(*, now: datetime, live: Mapping[str, Any] | None) -> dict[str, Any]:
    totals = SymbolValidation.objects.aggregate(
        symbols=Count("id"),
        ticks=Sum("ticks"),
        flagged=Sum("flagged"),
        comparisons=Sum("comparisons"),
        agreements=Sum("agreements"),
        escalated=Count("id", filter=Q(escalated=True)),
    )
    ticks, flagged = totals["ticks"] or 0, totals["flagged"] or 0
    comparisons, agreements = totals["comparisons"] or 0, totals["agreements"] or 0
    below = agreement_below_target(agreement_annotate(SymbolValidation.objects.all())).count()
    recent = (
        ValidationOutcome.objects.filter(first_seen__gte=now - VALIDATION_RECENT)
        .values("check_name")
        .annotate(incidents=Count("id"), ticks=Sum("occurrences"))
        .order_by("-incidents", "check_name")[:MONITOR_CHECKS_SHOWN]
    )
    labels = dict(CheckName.choices)
    return {
        "symbols": totals["symbols"],
        "ticks": ticks,
        "flagged": flagged,
        "flag_rate": round(flagged / ticks, 6) if ticks else None,
        "comparisons": comparisons,
        "agreement": round(agreements / comparisons, 6) if comparisons else None,
        "target": accuracy_target(),
        "escalated": totals["escalated"],
        "below_target": below,
        "recent_window": VALIDATION_RECENT.total_seconds(),
        "recent": [
            {
                "check": r["check_name"],
                "label": labels.get(r["check_name"], r["check_name"]),
                "incidents": r["incidents"],
                "ticks": r["ticks"] or 0,
            }
            for r in recent
        ],
        # The performance monitor's figures of its last window (rates, and recall when the
        # reports carry it), as reported.
        "live": _json_safe(live) if live else {},
    }


_REPORT_FIELDS = (
    "created_at", "window_seconds", "clients", "deliveries", "latency_mean_ms", "latency_p50_ms",
    "latency_p95_ms", "latency_p99_ms", "exchange_latency", "ticks_per_second",
    "ticks_by_provider", "ticks_by_connection", "lookups", "cache_efficiency",
    "cache_hit_rates", "validation", "conflation",
)  # fmt: skip


def _performance(now: float) -> tuple[dict[str, Any], Mapping[str, Any] | None]:
    rows = list(
        PerformanceReport.objects.order_by("-created_at").values(*_REPORT_FIELDS)[
            :MONITOR_REPORTS_SHOWN
        ]
    )
    rows.reverse()  # oldest first, as a chart draws them
    latency = [
        {
            "t": _epoch(r["created_at"]),
            "mean": _finite(r["latency_mean_ms"]),
            "p50": _finite(r["latency_p50_ms"]),
            "p95": _finite(r["latency_p95_ms"]),
            "p99": _finite(r["latency_p99_ms"]),
        }
        for r in rows
    ]
    ticks = [{"t": _epoch(r["created_at"]), "v": _finite(r["ticks_per_second"])} for r in rows]
    latest = None
    if rows:
        last = rows[-1]
        created = _epoch(last["created_at"])
        latest = {
            "created_at": created,
            "age": _age(now, created),
            "window_seconds": _finite(last["window_seconds"]),
            "clients": last["clients"],
            "deliveries": last["deliveries"],
            "latency": latency[-1],
            "exchange_latency": _json_safe(last["exchange_latency"]),
            "ticks_per_second": _finite(last["ticks_per_second"]),
            "ticks_by_provider": _json_safe(last["ticks_by_provider"]),
            "lookups": last["lookups"],
            "cache_efficiency": _finite(last["cache_efficiency"]),
            "cache_hit_rates": _json_safe(last["cache_hit_rates"]),
            "conflation": _json_safe(last["conflation"]),
        }
    validation = rows[-1]["validation"] if rows else None
    return {"latency": latency, "ticks": ticks, "latest": latest}, validation


def _actions() -> list[dict[str, Any]]:
    fields = ("id", "created_at", "kind", "reason", "setting", "before", "after", "metric",
              "metric_before", "metric_after", "helped", "judged_at")  # fmt: skip
    rows = PerformanceAction.objects.order_by("-created_at").values(*fields)
    return [
        {
            **{k: _finite(v) if isinstance(v, float) else v for k, v in row.items()},
            "created_at": _epoch(row["created_at"]),
            "judged_at": _epoch(row["judged_at"]),
        }
        for row in rows[:MONITOR_ACTIONS_SHOWN]
    ]


def monitor_state_get(*, beats: HubBeats | None = None) -> dict[str, Any]:
    """Everything the live monitoring page shows, as JSON-able data (times in epoch seconds,
    ages in seconds, rates as shares 0..1), every list bounded.

    ``beats``: heartbeats already read; by default they are read here, and a hub that cannot
    be reached leaves the connections as the database knows them, in state "no_heartbeat"."""
    beats = beats if beats is not None else hub_beats_get()
    now_dt = timezone.now()
    now = now_dt.timestamp()
    accounts_list = list(ProviderAccount.objects.all())
    accounts = {(a.provider, a.label): a for a in accounts_list}
    assigned = _assigned_counts()
    names = sorted(set(beats.connections) | set(assigned), key=_conn_sort_key)
    names = names[:MONITOR_CONNECTIONS_SHOWN]
    verdicts = _latest_verdicts(names, now=now_dt)
    connections = [
        _connection_row(
            name,
            beats.connections.get(name),
            verdict=verdicts.get(name),
            assigned=assigned.get(name, 0),
            accounts=accounts,
            now=now,
        )
        for name in names
    ]
    performance, live_validation = _performance(now)
    return {
        "generated_at": round(now, 3),
        "heartbeats": {"ok": not beats.error, "error": beats.error},
        "connections": connections,
        "pools": _pool_rows(accounts_list, connections),
        "workers": _worker_rows(beats.workers, now),
        "alerts": _alerts(),
        "audits": _audits(),
        "validation": _validation(now=now_dt, live=live_validation),
        "performance": performance,
        "actions": _actions(),
    }
