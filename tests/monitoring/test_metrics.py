"""The Prometheus endpoint: heartbeats to series (pure), who may scrape, and a scrape of a
live hub (simulators on real sockets, the real feed worker and its heartbeats)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

import monitoring.metrics
from feeds.runtime import HubAccess, feed_worker_running, hub_call
from monitoring.metrics import SERIES, HubReadings, hub_readings_get, metrics_registry_build
from monitoring.models import Alert
from monitoring.perf import BOUNDS_MS, LatencyHistogram
from monitoring.runtime import PROCESS
from tests.conftest import free_port
from tests.feeds.live import enable, live_worker_config, until

TOKEN = "s3cret-metrics-token"
URL = "/metrics"


def histogram(values: list[float]) -> LatencyHistogram:
    h = LatencyHistogram()
    h.observe_many(values)
    return h


def perf_beat(**changes: Any) -> dict[str, Any]:
    """A perf heartbeat in the documented shape, every section present."""
    beat: dict[str, Any] = {
        "process": "web-1:101",
        "roles": ["feeds", "delivery"],
        "at": 1_700_000_000.5,
        "interval": 2.0,
        "process_metrics": {"cpu_seconds_total": 12.5, "resident_memory_bytes": 50_000_000,
                            "virtual_memory_bytes": 900_000_000, "open_fds": 31,
                            "start_time_seconds": 1_699_999_000.0},
        "delivery": {"clients": 3, "users": 2, "subscriptions": 40, "batches": 900,
                     "records": 18_000, "deliveries": 5_000, "messages_sent": 700,
                     "items_sent": 4_200, "conflated": 800, "slow_closed": 1, "malformed": 2,
                     "latency_receive": histogram([3, 4, 120]).snapshot(),
                     "latency_exchange": {"fyers": histogram([30]).snapshot(),
                                          "upstox": histogram([60, 70]).snapshot()}},
        "cache": {"hits": {"l1": 90, "l2": 7, "l3": 2, "l4": 1},
                  "misses": {"l1": 10, "l2": 3, "l3": 1, "l4": 0}, "stale": 4, "missing": 5},
        "feeds": {"worker": "w-a", "ticks": {"fyers": 1_000, "upstox": 400},
                  "publisher": {"offered": 1_400, "conflated": 100, "batches": 50,
                                "published": 1_300, "send_failures": 0, "flush_interval": 0.01},
                  "validation": {"checked": 1_400, "flagged": 6, "deferred": 3, "dropped": 1,
                                 "late_verdicts": 2, "rechecks": 9}},
        "tuning": {"flush_interval": 0.02, "low_tier_fresh_age": 0.5},
    }  # fmt: skip
    beat.update(changes)
    return beat


CONNECTION = {
    "name": "fyers:primary:0", "provider": "fyers", "state": "live", "reason": "subscribed",
    "symbols": 6, "symbol_cap": 200, "messages_per_second": 12.5, "ticks": 900, "frames": 300,
    "bytes": 45_000, "errors": {"silent": 2, "auth": 1}, "connects": 3, "reconnects": 2,
    "restarts": 1, "available": True, "worker": "w-a", "at": 1_700_000_001.0,
    "last_message_ns": 1_700_000_000_250_000_000, "market_open": True,
}  # fmt: skip


def registry_for(readings: HubReadings) -> Any:
    return metrics_registry_build(read=lambda: readings)


def value(registry: Any, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


# --- heartbeats -> series -------------------------------------------------------------------


def test_heartbeats_become_the_documented_series() -> None:
    readings = HubReadings(
        up=True,
        perf={"web-1:101": perf_beat()},
        connections={"fyers:primary:0": CONNECTION},
        workers={"w-a": {"worker": "w-a", "pid": 7, "planner": True,
                         "connections": ["fyers:primary:0", "upstox:primary:0"]}},
        alerts=[("connection_unhealthy", "error", 2), ("worker_stopped", "warning", 0)],
    )  # fmt: skip
    r = registry_for(readings)
    p = {"process": "web-1:101"}
    c = {"connection": "fyers:primary:0", "provider": "fyers", "worker": "w-a"}

    assert value(r, "mdhub_up") == 1
    assert value(r, "mdhub_processes") == 1 and value(r, "mdhub_workers") == 1
    assert value(r, "mdhub_process_info", roles="delivery,feeds", worker="w-a", **p) == 1
    assert value(r, "mdhub_process_cpu_seconds_total", **p) == 12.5
    assert value(r, "mdhub_process_resident_memory_bytes", **p) == 50_000_000
    assert value(r, "mdhub_process_open_fds", **p) == 31
    assert value(r, "mdhub_process_start_time_seconds", **p) == 1_699_999_000.0
    assert value(r, "mdhub_process_heartbeat_timestamp_seconds", **p) == 1_700_000_000.5

    assert value(r, "mdhub_clients", **p) == 3
    assert value(r, "mdhub_client_users", **p) == 2
    assert value(r, "mdhub_subscriptions", **p) == 40
    assert value(r, "mdhub_delivered_updates_total", **p) == 4_200
    assert value(r, "mdhub_delivery_queued_updates_total", **p) == 5_000
    assert value(r, "mdhub_slow_clients_closed_total", **p) == 1
    assert value(r, "mdhub_conflated_total", stage="client", **p) == 800
    assert value(r, "mdhub_conflated_total", stage="publisher", **p) == 100
    assert value(r, "mdhub_delivery_latency_seconds_count", **p) == 3
    assert value(r, "mdhub_exchange_latency_seconds_count", provider="upstox", **p) == 2
    assert value(r, "mdhub_exchange_latency_seconds_sum", provider="upstox", **p) == 0.13

    assert value(r, "mdhub_cache_lookups_total", layer="l1", result="hit", **p) == 90
    assert value(r, "mdhub_cache_lookups_total", layer="l2", result="miss", **p) == 3
    assert value(r, "mdhub_cache_stale_total", **p) == 4
    assert value(r, "mdhub_cache_missing_total", **p) == 5

    assert value(r, "mdhub_ticks_total", provider="fyers", **p) == 1_000
    assert value(r, "mdhub_ticks_total", provider="upstox", **p) == 400
    assert value(r, "mdhub_publisher_published_total", **p) == 1_300
    # The running publisher's interval wins over the setting in the tuning section.
    assert value(r, "mdhub_publisher_flush_interval_seconds", **p) == 0.01
    assert value(r, "mdhub_tuning_low_tier_fresh_age_seconds", **p) == 0.5
    assert value(r, "mdhub_validation_checked_total", **p) == 1_400
    assert value(r, "mdhub_validation_outcomes_total", outcome="flagged", **p) == 6
    assert value(r, "mdhub_validation_outcomes_total", outcome="late_verdict", **p) == 2
    assert value(r, "mdhub_validation_rechecks_total", **p) == 9

    assert value(r, "mdhub_connection_state", state="live", **c) == 1
    assert value(r, "mdhub_connection_state", state="down", **c) == 0  # every state, 0 or 1
    assert value(r, "mdhub_connection_available", **c) == 1
    assert value(r, "mdhub_connection_symbols", **c) == 6
    assert value(r, "mdhub_connection_symbol_cap", **c) == 200
    assert value(r, "mdhub_connection_messages_per_second", **c) == 12.5
    assert value(r, "mdhub_connection_ticks_total", **c) == 900
    assert value(r, "mdhub_connection_reconnects_total", **c) == 2
    assert value(r, "mdhub_connection_errors_total", kind="silent", **c) == 2
    assert value(r, "mdhub_connection_last_message_timestamp_seconds", **c) == 1_700_000_000.25

    assert value(r, "mdhub_worker_connections", worker="w-a") == 2
    assert value(r, "mdhub_worker_planner", worker="w-a") == 1
    assert value(r, "mdhub_open_alerts", kind="connection_unhealthy", level="error") == 2
    assert value(r, "mdhub_open_alerts", kind="worker_stopped", level="warning") == 0
    # The scraped process's own standard series come along.
    assert value(r, "python_info", **_python_info(r)) == 1


def _python_info(registry: Any) -> dict[str, str]:
    for family in registry.collect():
        if family.name == "python_info":
            return dict(family.samples[0].labels)
    raise AssertionError("no python_info")


def test_latency_buckets_are_cumulative_in_seconds() -> None:
    # On a bound (0.5, 80) counts in that bucket; past the last bound goes to +Inf.
    filled = histogram([0.2, 0.5, 0.7, 80, 80.01, 6_000])
    beat = perf_beat(delivery={"latency_receive": filled.snapshot()})
    r = registry_for(HubReadings(up=True, perf={"web-1:101": beat}))
    p = {"process": "web-1:101"}

    def bucket(le: str) -> float | None:
        return value(r, "mdhub_delivery_latency_seconds_bucket", le=le, **p)

    assert (bucket("0.0005"), bucket("0.001"), bucket("0.08"), bucket("0.09")) == (2, 3, 4, 5)
    assert bucket("5.0") == 5 and bucket("+Inf") == 6
    for i, bound in enumerate(BOUNDS_MS):  # every bucket against the histogram filled above
        assert bucket(str(bound / 1000)) == sum(filled.counts[: i + 1])
    assert value(r, "mdhub_delivery_latency_seconds_count", **p) == 6
    assert value(r, "mdhub_delivery_latency_seconds_sum", **p) == pytest.approx(
        filled.sum_ms / 1000
    )


def test_a_malformed_beat_is_skipped_and_bad_fields_are_left_out() -> None:
    bad_fields = perf_beat(
        process_metrics={"cpu_seconds_total": "lots", "open_fds": -3,
                         "resident_memory_bytes": float("nan"), "virtual_memory_bytes": True,
                         "start_time_seconds": 1_699_999_000.0},
        delivery={"clients": 4, "latency_receive": {"counts": [1, 2, 3], "sum_ms": 5.0},
                  "latency_exchange": {"fyers": "nope", "upstox": histogram([9]).snapshot()}},
        cache={"hits": ["l1", 3], "misses": {"l1": None}, "stale": 1},
        roles="feeds",
    )  # fmt: skip
    readings = HubReadings(
        up=True,
        perf={"good:1": perf_beat(), "bad:2": bad_fields, "junk:3": "not a heartbeat"},
        connections={"fyers:primary:0": CONNECTION, "upstox:primary:0": ["a", "list"]},
        workers={"w-a": None},
    )
    r = registry_for(readings)
    bad = {"process": "bad:2"}

    assert value(r, "mdhub_malformed_heartbeats", kind="perf") == 1
    assert value(r, "mdhub_malformed_heartbeats", kind="connection") == 1
    assert value(r, "mdhub_malformed_heartbeats", kind="worker") == 1
    assert value(r, "mdhub_processes") == 2 and value(r, "mdhub_workers") == 0
    assert value(r, "mdhub_clients", process="junk:3") is None
    # The good process is whole; the bad one keeps its good fields only.
    assert value(r, "mdhub_ticks_total", process="good:1", provider="fyers") == 1_000
    assert value(r, "mdhub_process_start_time_seconds", **bad) == 1_699_999_000.0
    for name in ("cpu_seconds_total", "open_fds", "resident_memory_bytes", "virtual_memory_bytes"):
        assert value(r, f"mdhub_process_{name}", **bad) is None
    assert value(r, "mdhub_clients", **bad) == 4
    assert value(r, "mdhub_delivery_latency_seconds_count", **bad) is None  # 3 buckets: skipped
    assert value(r, "mdhub_exchange_latency_seconds_count", provider="fyers", **bad) is None
    assert value(r, "mdhub_exchange_latency_seconds_count", provider="upstox", **bad) == 1
    assert value(r, "mdhub_cache_lookups_total", layer="l1", result="miss", **bad) is None
    assert value(r, "mdhub_cache_stale_total", **bad) == 1
    assert value(r, "mdhub_process_info", roles="", worker="w-a", **bad) == 1
    assert value(r, "mdhub_connection_symbols", connection="fyers:primary:0", provider="fyers",
                 worker="w-a") == 6  # fmt: skip


def test_every_series_is_documented_and_described_even_without_data() -> None:
    doc = monitoring.metrics.__doc__ or ""
    text = _render(HubReadings(up=False))
    for name in SERIES:
        assert f"\n{name} " in doc, f"{name} missing from the module's table"
        assert f"# HELP {name} " in text, f"{name} not described"
    assert "\nmdhub_up 0.0\n" in text


def _render(readings: HubReadings) -> str:
    return monitoring.metrics.metrics_render(read=lambda: readings).decode()


# --- the endpoint ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_anonymous_requests_are_refused_with_a_challenge(client) -> None:
    response = client.get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "mdhub_" not in response.text


@pytest.mark.django_db
def test_a_logged_in_user_who_is_not_staff_is_forbidden(client, django_user_model) -> None:
    client.force_login(django_user_model.objects.create_user(username="viewer", password="x"))
    assert client.get(URL).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("configured", [TOKEN, ""])
def test_a_wrong_token_is_forbidden(client, settings, configured: str) -> None:
    settings.MONITORING = {**settings.MONITORING, "METRICS_TOKEN": configured}
    assert client.get(URL, HTTP_AUTHORIZATION="Bearer guess").status_code == 403
    # Token access is off by default: the empty token never matches an empty setting.
    assert client.get(URL, HTTP_AUTHORIZATION="Bearer ").status_code == 403


@pytest.mark.django_db
def test_staff_get_every_documented_series(admin_client) -> None:
    now = timezone.now()
    Alert.objects.create(kind="connection_unhealthy", subject="fyers:primary:0", level="error",
                         message="down", opened_at=now, last_seen_at=now)  # fmt: skip
    response = admin_client.get(reverse("monitoring:metrics"))
    assert response.status_code == 200
    assert response["Content-Type"] == CONTENT_TYPE_LATEST
    assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]
    samples = parse(response.text)
    for name in SERIES:
        assert f"# HELP {name} " in response.text
    assert samples[("mdhub_up", ())] == 1
    assert samples[("mdhub_open_alerts", (("kind", "connection_unhealthy"), ("level", "error")))]
    # This process's own standard series.
    assert any(name == "process_cpu_seconds_total" for name, _ in samples)
    assert any(name == "python_gc_objects_collected_total" for name, _ in samples)


@pytest.mark.django_db
def test_the_configured_bearer_token_is_let_in(client, settings) -> None:
    settings.MONITORING = {**settings.MONITORING, "METRICS_TOKEN": TOKEN}
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert "# TYPE mdhub_delivery_latency_seconds histogram" in response.text
    assert client.get(URL, HTTP_AUTHORIZATION=f"bearer {TOKEN}").status_code == 200


@pytest.mark.django_db
def test_an_unreachable_hub_gives_up_0_and_the_process_metrics(admin_client, settings) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    started = time.monotonic()
    response = admin_client.get(URL)
    assert response.status_code == 200
    assert time.monotonic() - started < monitoring.metrics.HUB_READ_TIMEOUT + 2
    samples = parse(response.text)
    assert samples[("mdhub_up", ())] == 0
    assert any(name == "process_resident_memory_bytes" for name, _ in samples)


@pytest.mark.django_db
def test_a_heartbeat_written_through_hub_call_is_read_back() -> None:
    """The coordinator of this mode (in memory on a loop of its own, or Redis), no worker."""
    ident = "metrics-test:1"

    def write(ttl: float) -> None:
        def work(access: HubAccess) -> Any:
            return access.coordinator.beat("perf", ident, perf_beat(process=ident), ttl=ttl)

        hub_call(work)

    write(30)
    try:
        readings = hub_readings_get()
        assert readings.up and ident in readings.perf
        r = registry_for(readings)
        assert value(r, "mdhub_ticks_total", process=ident, provider="upstox") == 400
    finally:
        write(0.001)


# --- a live hub -----------------------------------------------------------------------------


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def find(samples: Mapping[tuple[str, Any], float], name: str, **labels: str) -> list[float]:
    """The values of ``name`` whose labels include ``labels``."""
    found = []
    for (n, have), v in samples.items():
        if n == name and labels.items() <= dict(have).items():
            found.append(v)
    return found


def top(samples: Mapping[tuple[str, Any], float], name: str, **labels: str) -> float:
    return max(find(samples, name, **labels), default=0.0)


@pytest.mark.django_db(transaction=True)
async def test_a_live_hub_shows_its_connections_and_perf_heartbeats(sims, client, settings) -> None:
    settings.MONITORING = {**settings.MONITORING, "METRICS_TOKEN": TOKEN}
    keys = await enable(6, tier="high_frequency")  # on FYERS connection 0
    scrape = sync_to_async(client.get)  # off the loop: hub_call runs its work on this loop
    async with feed_worker_running(config=live_worker_config("metrics")) as worker:
        await until(lambda: all(worker.latest.get(k, "fyers") for k in keys), 15, "ticking")
        conn = {"connection": "fyers:primary:0", "provider": "fyers", "worker": worker.id}
        deadline = time.monotonic() + 15
        while True:
            response = await scrape(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
            assert response.status_code == 200
            s = parse(response.text)
            ready = (
                find(s, "mdhub_connection_state", state="live", **conn) == [1.0]
                and top(s, "mdhub_connection_symbols", **conn) >= len(keys)
                and top(s, "mdhub_ticks_total", process=PROCESS, provider="fyers") > 0
            )
            if ready:
                break
            assert time.monotonic() < deadline, f"not seen live: {response.text[-3000:]}"
            await asyncio.sleep(0.2)

    assert s[("mdhub_up", ())] == 1
    assert s[("mdhub_workers", ())] >= 1
    assert find(s, "mdhub_connection_state", state="down", **conn) == [0.0]
    assert top(s, "mdhub_connection_ticks_total", **conn) > 0
    assert top(s, "mdhub_worker_connections", worker=worker.id) >= 1
    assert find(s, "mdhub_process_info", process=PROCESS, worker=worker.id) == [1.0]
    assert top(s, "mdhub_validation_checked_total", process=PROCESS) > 0
    assert top(s, "mdhub_process_resident_memory_bytes", process=PROCESS) > 0
