"""Operator-facing setup and the health records the feed workers write."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from feeds.models import ProviderAccount
from feeds.pool.distribution import conn_from_name
from monitoring.models import ConnectionHealth, ConnectionState


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


def connection_health_record(*, statuses: Iterable[Mapping[str, Any]], worker_id: str) -> int:
    """Store one ``ConnectionHealth`` row per connection status a feed worker reports
    (``FeedClient.status()`` plus the worker's ``available``); returns how many.

    The worker's own view goes in ``note``; the verdict is left to the health check."""
    accounts = {(a.provider, a.label): a for a in ProviderAccount.objects.all()}
    now = timezone.now()
    rows = []
    for status in statuses:
        state = str(status.get("state", ""))
        if state not in ConnectionState.values:
            continue  # closed on purpose: nothing to watch
        name = str(status.get("name", ""))
        try:
            conn = conn_from_name(name)
        except ValueError:
            continue  # not a pool connection
        errors = status.get("errors") or {}
        available = status.get("available", True)
        reason = str(status.get("reason", ""))
        rows.append(
            ConnectionHealth(
                connection_id=name,
                account=accounts.get((conn.provider, conn.account)),
                worker_id=worker_id,
                recorded_at=now,
                state=state,
                symbols=int(status.get("symbols", 0)),
                symbol_cap=int(status.get("symbol_cap", 0)),
                messages_per_second=float(status.get("messages_per_second", 0.0)),
                messages_total=int(status.get("frames", 0)),
                errors_total=sum(errors.values()) if isinstance(errors, dict) else 0,
                reconnects=int(status.get("reconnects", 0)),
                last_message_at=_from_ns(status.get("last_message_ns")),
                last_pong_at=_from_ns(status.get("last_pong_ns")),
                last_error=str(status.get("last_error", ""))[:2000],
                note=(f"worker: {'in use' if available else 'failed over'} ({reason})")[:200],
            )
        )
    ConnectionHealth.objects.bulk_create(rows)
    return len(rows)
