"""The live monitoring page: its state (``monitor_state_get``) from the database and from the
heartbeats in the coordinator of the mode under test (in memory, or Redis), the page's access
rules, and its WebSocket (``/ws/v1/monitor/``) through the full ASGI application."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from feeds.models import DataMode, PoolAssignment, ProviderAccount
from feeds.runtime import hub_call
from mdproject.asgi import application
from monitoring import consumers
from monitoring.models import (
    Alert,
    AlertLevel,
    ConnectionHealth,
    PerformanceAction,
    PerformanceReport,
)
from monitoring.selectors import MONITOR_ALERTS_SHOWN, NO_HEARTBEAT, monitor_state_get
from tests.feeds.factories import instrument_make
from tests.feeds.test_market_api import answer
from validation.models import AccuracyAudit, SymbolValidation, ValidationOutcome

PATH = "/ws/v1/monitor/"
# An account of its own: in the Redis pass other tests' heartbeats may still be live.
LABEL = f"mon{uuid.uuid4().hex[:6]}"
LIVE = f"fyers:{LABEL}:0"  # reporting through the coordinator
SILENT = f"fyers:{LABEL}:1"  # assigned in the database, no heartbeat


def _beat(name: str, *, state: str = "live", symbols: int = 3, ticks: int = 120) -> dict[str, Any]:
    """A connection heartbeat as ``FeedWorker.connection_statuses`` writes it."""
    now = time.time()
    return {
        "name": name, "provider": "fyers", "state": state, "reason": "subscribed",
        "symbols": symbols, "symbol_cap": 200, "market_open": True, "frames": 40,
        "ticks": ticks, "bytes": 4096, "errors": {"decode": 1}, "connects": 2,
        "reconnects": 1, "restarts": 0, "last_message_ns": time.time_ns() - 250_000_000,
        "last_pong_ns": time.time_ns(), "live_since_ns": time.time_ns(),
        "messages_per_second": 4.5, "last_error": "", "available": True,
        "worker": "feeds-test", "at": now,
    }  # fmt: skip


def _write_beats(beats: dict[str, dict[str, Any]], *, ttl: float) -> None:
    async def write(access) -> None:
        for name, info in beats.items():
            await access.coordinator.beat("connection", name, info, ttl=ttl)
        await access.coordinator.beat(
            "worker", "feeds-test",
            {"worker": "feeds-test", "pid": 4242, "planner": True, "connections": list(beats),
             "ticks": 999, "uptime": 12.5, "at": time.time()},
            ttl=ttl,
        )  # fmt: skip

    hub_call(write)


@pytest.fixture
def heartbeats() -> Iterator[None]:
    """One live connection heartbeat and its worker's, in the mode's real coordinator."""
    _write_beats({LIVE: _beat(LIVE)}, ttl=60)
    yield
    _write_beats({LIVE: {}}, ttl=0.001)  # gone, as a worker removes a connection's beat


@pytest.fixture(autouse=True)
def _fresh_state_cache() -> Iterator[None]:
    consumers.state_cache.clear()  # no state computed on another test's database
    yield
    consumers.state_cache.clear()


def _account() -> ProviderAccount:
    return ProviderAccount.objects.create(
        provider="fyers", label=LABEL, max_connections=2, max_symbols_per_connection=200,
        token_env="FYERS_ACCESS_TOKEN",
    )  # fmt: skip


def _assign(account: ProviderAccount, slot: int, count: int) -> None:
    for _ in range(count):
        PoolAssignment.objects.create(
            instrument=instrument_make(enabled=True), account=account, connection_slot=slot,
            data_mode=DataMode.QUOTE, reason="tier_rule", since=timezone.now(),
        )  # fmt: skip


def _health(name: str, verdict: str, seconds_ago: float, note: str = "") -> None:
    ConnectionHealth.objects.create(
        connection_id=name, recorded_at=timezone.now() - timedelta(seconds=seconds_ago),
        state="live", verdict=verdict, note=note,
    )  # fmt: skip


def _alert(kind: str, subject: str, minutes_ago: float, *, resolved: bool = False) -> Alert:
    opened = timezone.now() - timedelta(minutes=minutes_ago)
    return Alert.objects.create(
        kind=kind, subject=subject, level=AlertLevel.ERROR, message=f"{subject} is unwell",
        opened_at=opened, last_seen_at=opened,
        resolved_at=opened + timedelta(seconds=30) if resolved else None,
    )  # fmt: skip


def _reports() -> None:
    start = timezone.now() - timedelta(minutes=3)
    for i, p99 in enumerate([40.0, None, 55.0]):
        PerformanceReport.objects.create(
            created_at=start + timedelta(minutes=i), window_seconds=60.0, clients=3 + i,
            latency_mean_ms=5.0 + i, latency_p50_ms=4.0 + i, latency_p95_ms=20.0 + i,
            latency_p99_ms=p99, ticks_per_second=100.0 * (i + 1), lookups=50,
            cache_efficiency=0.9, cache_hit_rates={"l1": 0.8, "l2": 0.1, "l3": None, "l4": 0.0},
            exchange_latency={"fyers": {"count": 10, "mean": 30.0, "p50": 28.0, "p95": 60.0,
                                        "p99": 90.0}},
            validation={"checked_per_second": 100.0, "flagged_per_second": 0.5},
        )  # fmt: skip


# --- the state ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_state_joins_heartbeats_health_verdicts_pools_and_records(heartbeats):
    account = _account()
    _assign(account, 0, 2)
    _assign(account, 1, 4)
    _health(LIVE, "healthy", 120)
    _health(LIVE, "degraded", 10, note="reconnected since the previous check")
    _health(LIVE, "unknown", 1)  # the worker's own record: no verdict, not shown as one
    _health(SILENT, "unhealthy", 20 * 60)  # the check stopped long ago: no verdict now
    old = _alert("connection_unhealthy", SILENT, 10)
    new = _alert("worker_stopped", "feeds-9", 2)
    done = _alert("connection_unhealthy", LIVE, 30, resolved=True)
    _reports()
    PerformanceAction.objects.create(
        created_at=timezone.now(), kind="flush_interval", reason="latency above 80 ms",
        setting="FLUSH_INTERVAL", before=5.0, after=2.0, metric="latency_mean_ms",
        metric_before=95.0,
    )  # fmt: skip
    AccuracyAudit.objects.create(
        started_at=timezone.now(), provider="fyers", sampled=10, matched=9, mismatched=1
    )
    checked = instrument_make(enabled=True)
    SymbolValidation.objects.create(
        instrument=checked, ticks=1000, flagged=5, comparisons=200, agreements=190
    )
    now = timezone.now()
    ValidationOutcome.objects.create(
        instrument=checked, check_name="jump", tier=1, severity="warning", decision="flagged",
        first_seen=now, last_seen=now, occurrences=3,
    )  # fmt: skip

    state = monitor_state_get()
    json.dumps(state, allow_nan=False)  # what the page parses: strict JSON

    assert state["heartbeats"] == {"ok": True, "error": ""}
    conns = {c["name"]: c for c in state["connections"]}
    live = conns[LIVE]
    assert live["state"] == "live" and live["available"] is True
    assert (live["symbols"], live["symbol_cap"], live["assigned"]) == (3, 200, 2)
    assert (live["ticks"], live["reconnects"], live["errors"]) == (120, 1, 1)
    assert live["messages_per_second"] == 4.5 and live["worker"] == "feeds-test"
    assert 0.2 <= live["last_message_age"] < 10 and live["beat_age"] < 10
    assert live["verdict"] == "degraded" and "reconnected" in live["verdict_note"]
    silent = conns[SILENT]
    assert silent["state"] == NO_HEARTBEAT and silent["verdict"] == "unknown"
    assert (silent["symbols"], silent["symbol_cap"], silent["ticks"]) == (4, 200, None)
    assert [c["name"] for c in state["connections"]].index(LIVE) < [
        c["name"] for c in state["connections"]
    ].index(SILENT)

    pool = next(p for p in state["pools"] if p["account"] == LABEL)
    assert (pool["connections_live"], pool["connections_open"], pool["max_connections"]) == (
        1, 1, 2,
    )  # fmt: skip
    assert (pool["symbols"], pool["assigned"], pool["capacity"]) == (7, 6, 400)
    assert pool["utilisation"] == round(7 / 400, 4)
    worker = next(w for w in state["workers"] if w["worker"] == "feeds-test")
    assert worker["planner"] and worker["pid"] == 4242 and worker["connections"] == 1

    assert [a["id"] for a in state["alerts"]["open"]] == [new.pk, old.pk]  # newest first
    assert state["alerts"]["open_count"] == 2
    assert [a["id"] for a in state["alerts"]["resolved"]] == [done.pk]

    latency = state["performance"]["latency"]
    assert [p["p50"] for p in latency] == [4.0, 5.0, 6.0]  # oldest first, as charted
    assert [p["p99"] for p in latency] == [40.0, None, 55.0]
    latest = state["performance"]["latest"]
    assert latest["ticks_per_second"] == 300.0 and latest["clients"] == 5
    assert latest["cache_hit_rates"] == {"l1": 0.8, "l2": 0.1, "l3": None, "l4": 0.0}
    assert latest["exchange_latency"]["fyers"]["p95"] == 60.0
    assert [a["kind"] for a in state["actions"]] == ["flush_interval"]
    assert state["actions"][0]["helped"] is None

    assert state["audits"][0]["accuracy"] == 90.0 and state["audits"][0]["sampled"] == 10
    validation = state["validation"]
    assert (validation["ticks"], validation["flagged"], validation["flag_rate"]) == (
        1000, 5, 0.005,
    )  # fmt: skip
    assert validation["agreement"] == 0.95 and validation["below_target"] == 1
    assert validation["recent"] == [
        {"check": "jump", "label": "Jump against the last good price", "incidents": 1, "ticks": 3}
    ]
    assert validation["live"] == {"checked_per_second": 100.0, "flagged_per_second": 0.5}


@pytest.mark.django_db
def test_lists_are_bounded_newest_first():
    for i in range(MONITOR_ALERTS_SHOWN + 5):
        _alert("connection_unhealthy", f"fyers:{LABEL}:{i}", minutes_ago=i)
    state = monitor_state_get()
    opened = [a["opened_at"] for a in state["alerts"]["open"]]
    assert len(opened) == MONITOR_ALERTS_SHOWN and opened == sorted(opened, reverse=True)
    assert state["alerts"]["open_count"] == MONITOR_ALERTS_SHOWN + 5


@pytest.mark.django_db
def test_a_hub_that_does_not_answer_leaves_the_database_view(monkeypatch):
    _assign(_account(), 1, 2)

    def unreachable(work, *, timeout: float = 10.0):
        raise TimeoutError()

    monkeypatch.setattr("feeds.runtime.hub_call", unreachable)
    state = monitor_state_get()
    assert state["heartbeats"]["ok"] is False
    assert "TimeoutError" in state["heartbeats"]["error"]
    silent = next(c for c in state["connections"] if c["name"] == SILENT)
    assert silent["state"] == NO_HEARTBEAT and silent["symbols"] == 2
    assert state["workers"] == []


# --- the page -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_page_sends_anonymous_users_to_log_in_and_refuses_non_staff(client):
    url = reverse("monitoring:monitor")
    page = client.get(url)
    assert page.status_code == 302 and page["Location"].startswith(reverse("login"))

    client.force_login(User.objects.create_user("trader", password="pw"))
    assert client.get(url).status_code == 403
    assert 'href="/monitor/"' not in client.get(reverse("monitoring:home")).text


@pytest.mark.django_db
def test_staff_get_the_page_with_the_first_state_and_a_nav_link(client, heartbeats):
    _assign(_account(), 0, 1)
    _alert("connection_unhealthy", LIVE, 1)
    client.force_login(User.objects.create_user("ops", password="pw", is_staff=True))
    page = client.get(reverse("monitoring:monitor"))
    assert page.status_code == 200
    html = page.text
    assert 'href="/monitor/">Monitoring</a>' in html
    assert 'data-testid="alert-banner"' in html and 'id="latency-chart"' in html
    state = json.loads(html.split('<script id="monitor-state" type="application/json">')[1]
                       .split("</script>")[0])  # fmt: skip
    assert next(c for c in state["connections"] if c["name"] == LIVE)["state"] == "live"
    assert state["alerts"]["open"][0]["subject"] == LIVE
    config = json.loads(html.split('<script id="page-config" type="application/json">')[1]
                        .split("</script>")[0])  # fmt: skip
    assert config == {"socketPath": PATH, "interval": 2.0}


# --- the socket -----------------------------------------------------------------------------


def _session_headers(**user_fields: Any) -> list[tuple[bytes, bytes]]:
    headers = [(b"origin", b"http://localhost:8000")]
    if user_fields:
        user = User.objects.create_user(password="pw", **user_fields)
        browser = Client()
        browser.force_login(user)
        session = browser.cookies[django_settings.SESSION_COOKIE_NAME].value
        headers.append((b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={session}".encode()))
    return headers


async def _closed_with(socket: WebsocketCommunicator, within: float = 5.0) -> tuple[int, list]:
    """The close code, and the messages before it."""
    messages = []
    async with asyncio.timeout(within):
        while True:
            output = await socket.receive_output(timeout=within)
            if output["type"] == "websocket.close":
                return output["code"], messages
            messages.append(json.loads(output["text"]))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("user", "code"), [({}, 4001), ({"username": "trader"}, 4003)], ids=["anonymous", "not-staff"]
)
async def test_socket_closes_anonymous_and_non_staff_with_a_reason(user, code):
    headers = await sync_to_async(_session_headers)(**user)
    socket = WebsocketCommunicator(application, PATH, headers=headers)
    ok, _ = await socket.connect(timeout=5)
    assert ok  # accepted, so that the page learns why it is closed
    closed, before = await _closed_with(socket)
    assert closed == code
    assert [m["type"] for m in before] == ["closing"] and before[0]["code"] == code
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_socket_pushes_the_state_to_staff_and_survives_bad_requests(heartbeats, settings):
    settings.MONITORING = {**settings.MONITORING, "PAGE_INTERVAL": 0.5}
    await sync_to_async(lambda: _assign(_account(), 0, 2))()
    headers = await sync_to_async(_session_headers)(username="ops", is_staff=True)
    socket = WebsocketCommunicator(application, PATH, headers=headers)
    ok, _ = await socket.connect(timeout=5)
    assert ok
    try:
        first = await answer(socket, "state")
        conn = next(c for c in first["connections"] if c["name"] == LIVE)
        assert conn["state"] == "live" and conn["assigned"] == 2

        for bad in ("{not json", "[1, 2]", '"text"'):
            await socket.send_to(text_data=bad)
            error = await answer(socket, "error")
            assert error["code"] == "malformed_request"
        await socket.send_to(bytes_data=b"\x00\x01")
        assert (await answer(socket, "error"))["code"] == "malformed_request"
        await socket.send_json_to({"action": "dance", "id": 7})
        unknown = await answer(socket, "error")
        assert unknown["code"] == "unknown_action" and unknown["id"] == 7
        await socket.send_json_to({"action": "ping", "id": 8})
        assert (await answer(socket, "pong"))["id"] == 8

        # Still pushing, with what changed since: a newer heartbeat of the connection.
        await sync_to_async(_write_beats)({LIVE: _beat(LIVE, state="down", ticks=150)}, ttl=60)
        deadline = time.monotonic() + 5
        while True:
            state = await answer(socket, "state")
            conn = next(c for c in state["connections"] if c["name"] == LIVE)
            if conn["state"] == "down":
                break
            assert time.monotonic() < deadline, "no pushed state shows the change"
        assert conn["ticks"] == 150 and state["generated_at"] > first["generated_at"]
    finally:
        await socket.disconnect()
