"""Connection health history, written by the feed workers and the health-check task."""

from __future__ import annotations

from django.db import models

from feeds.models import ProviderAccount


class ConnectionState(models.TextChoices):
    """What the connection itself reports."""

    CONNECTING = "connecting", "Connecting"
    LIVE = "live", "Live"
    DEGRADED = "degraded", "Degraded"
    DOWN = "down", "Down"


class HealthVerdict(models.TextChoices):
    """What the health check concludes from the heartbeats."""

    HEALTHY = "healthy", "Healthy"
    DEGRADED = "degraded", "Degraded"
    UNHEALTHY = "unhealthy", "Unhealthy"
    UNKNOWN = "unknown", "Unknown (no verdict yet)"


class HealthAction(models.TextChoices):
    """What the health check did about a connection."""

    NONE = "", "None"
    FAILOVER_ORDERED = "failover_ordered", "Failover ordered"
    RELEASED = "released", "Released (its worker stopped)"


class ConnectionHealth(models.Model):
    connection_id = models.CharField(max_length=100, help_text="provider:account:slot")
    account = models.ForeignKey(
        ProviderAccount, on_delete=models.SET_NULL, null=True, related_name="health_records"
    )
    worker_id = models.CharField(max_length=100, blank=True)
    recorded_at = models.DateTimeField(db_index=True)

    state = models.CharField(max_length=12, choices=ConnectionState.choices)
    verdict = models.CharField(
        max_length=12, choices=HealthVerdict.choices, default=HealthVerdict.UNKNOWN
    )
    symbols = models.PositiveIntegerField(default=0)
    symbol_cap = models.PositiveIntegerField(default=0)
    messages_per_second = models.FloatField(default=0.0)
    messages_total = models.PositiveBigIntegerField(default=0)
    errors_total = models.PositiveBigIntegerField(default=0)
    reconnects = models.PositiveIntegerField(default=0)
    last_message_at = models.DateTimeField(null=True, blank=True)
    last_pong_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    note = models.CharField(
        max_length=200, blank=True, help_text="Why the verdict was reached, or what was done."
    )
    action = models.CharField(
        max_length=20, choices=HealthAction.choices, blank=True, default=HealthAction.NONE
    )

    class Meta:
        ordering = ["-recorded_at"]
        verbose_name_plural = "connection health"
        indexes = [models.Index(fields=["connection_id", "-recorded_at"])]

    def __str__(self) -> str:
        return f"{self.connection_id} {self.state}/{self.verdict} @ {self.recorded_at:%H:%M:%S}"


class AlertLevel(models.TextChoices):
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"


class Alert(models.Model):
    """One episode of a condition operators should see (an unhealthy connection, a stopped
    worker, high latency): opened when the condition is first seen, kept while it lasts,
    resolved when it clears. Never a row per check."""

    kind = models.CharField(max_length=40, db_index=True)
    subject = models.CharField(max_length=200, help_text="The connection, worker or part.")
    level = models.CharField(max_length=8, choices=AlertLevel.choices)
    message = models.CharField(max_length=500)
    details = models.JSONField(default=dict, blank=True)
    opened_at = models.DateTimeField(db_index=True)
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "subject"],
                condition=models.Q(resolved_at__isnull=True),
                name="alert_one_open_per_subject",
            )
        ]

    def __str__(self) -> str:
        return f"{self.level} {self.kind} {self.subject}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class PerformanceReport(models.Model):
    """One window of the performance monitor (the ``monitoring.performance_report`` task, every
    minute): latency, throughput, cache and validation figures of every process, added up."""

    created_at = models.DateTimeField(db_index=True)
    window_seconds = models.FloatField(help_text="The span the figures cover.")
    processes = models.PositiveIntegerField(default=0, help_text="Processes that reported.")
    clients = models.PositiveIntegerField(default=0, help_text="WebSocket clients connected.")

    # Receive time -> sent to the client, over every update delivered in the window.
    deliveries = models.PositiveBigIntegerField(default=0)
    latency_mean_ms = models.FloatField(null=True, blank=True)
    latency_p50_ms = models.FloatField(null=True, blank=True)
    latency_p95_ms = models.FloatField(null=True, blank=True)
    latency_p99_ms = models.FloatField(null=True, blank=True)
    # Exchange time -> sent, per provider: {provider: {count, mean, p50, p95, p99}}.
    exchange_latency = models.JSONField(default=dict, blank=True)

    ticks_per_second = models.FloatField(default=0.0)
    ticks_by_provider = models.JSONField(default=dict, blank=True, help_text="provider -> /s")
    ticks_by_connection = models.JSONField(default=dict, blank=True, help_text="connection -> /s")

    lookups = models.PositiveBigIntegerField(default=0, help_text="Snapshot lookups.")
    cache_efficiency = models.FloatField(
        null=True, blank=True, help_text="Share of lookups answered from memory (L1 or L2)."
    )
    cache_hit_rates = models.JSONField(default=dict, blank=True, help_text="layer -> rate")

    validation = models.JSONField(default=dict, blank=True, help_text="checked, flagged, ... /s")
    conflation = models.JSONField(default=dict, blank=True)
    tuning = models.JSONField(default=dict, blank=True, help_text="Settings in force after it.")
    # Each process's cumulative counters as reported, and each connection's tick count and
    # heartbeat time: the next window starts from these.
    snapshots = models.JSONField(default=dict, blank=True)
    connection_ticks = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"performance {self.created_at:%Y-%m-%d %H:%M:%S}"


class PerformanceAction(models.Model):
    """What the monitor changed, why, and, one report later, whether it helped (a change that
    did not help is reverted, and the revert is an action of its own)."""

    created_at = models.DateTimeField(db_index=True)
    kind = models.CharField(max_length=40)
    reason = models.CharField(max_length=300)
    setting = models.CharField(max_length=60)
    before = models.FloatField()
    after = models.FloatField()
    metric = models.CharField(max_length=40, help_text="What it is meant to improve.")
    metric_before = models.FloatField(null=True, blank=True)
    metric_after = models.FloatField(null=True, blank=True)
    helped = models.BooleanField(null=True, blank=True, help_text="Empty until judged.")
    judged_at = models.DateTimeField(null=True, blank=True)
    report = models.ForeignKey(
        PerformanceReport, on_delete=models.SET_NULL, null=True, related_name="actions"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} {self.setting} {self.before:g} -> {self.after:g}"
