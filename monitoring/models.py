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
