"""Prometheus metrics for the whole hub, built from every process's heartbeats.

The hub is several processes, possibly on several machines (Daphne, feed workers, Celery), so
prometheus-client's multiprocess mode (mmap files on one machine, a Counter object in every
process) does not fit. Every process already publishes heartbeats to the coordinator instead:
``perf`` (one per process, about every 2 s), ``worker`` and ``connection`` (feed workers).
``HubCollector`` turns the heartbeats of all processes into metric families at scrape time,
so whichever web process is scraped answers for the whole hub. Counters are the processes'
own cumulative counts: they restart from 0 with their process, which ``rate()`` handles, and
the ``process`` label ("host:pid") keeps the processes apart.

A heartbeat comes from another process and may be old or wrong: every field is checked on its
own (a bad one is left out), a beat that is not a JSON object is skipped and counted in
``mdhub_malformed_heartbeats``, a histogram with other buckets is left out. If the heartbeats
cannot be read at all, the scrape still answers, with ``mdhub_up 0``.

Series, besides the scraped process's own ``process_*`` and ``python_*``:

===============================================  =========  ======================================
series                                           type       labels: meaning
===============================================  =========  ======================================
mdhub_up                                         gauge      1 when the heartbeats could be read
mdhub_processes                                  gauge      processes with a perf heartbeat
mdhub_malformed_heartbeats                       gauge      kind: beats skipped by this scrape
mdhub_process_info                               gauge      process, roles, worker: always 1
mdhub_process_heartbeat_timestamp_seconds        gauge      process: its last perf heartbeat
mdhub_process_cpu_seconds_total                  counter    process: user + system CPU
mdhub_process_resident_memory_bytes              gauge      process
mdhub_process_virtual_memory_bytes               gauge      process
mdhub_process_open_fds                           gauge      process
mdhub_process_start_time_seconds                 gauge      process: epoch seconds
mdhub_delivery_latency_seconds                   histogram  process: hub receive -> sent
mdhub_exchange_latency_seconds                   histogram  process, provider: exchange ts -> sent
mdhub_clients                                    gauge      process: WebSocket clients
mdhub_client_users                               gauge      process: distinct users among them
mdhub_subscriptions                              gauge      process: their symbol subscriptions
mdhub_delivery_batches_total                     counter    process: tick batches received
mdhub_delivery_records_total                     counter    process: tick records received
mdhub_delivery_queued_updates_total              counter    process: updates queued to clients
mdhub_delivered_updates_total                    counter    process: updates sent to clients
mdhub_delivery_messages_total                    counter    process: WebSocket messages sent
mdhub_delivery_malformed_total                   counter    process: malformed batches, records
mdhub_slow_clients_closed_total                  counter    process: clients closed as too slow
mdhub_conflated_total                            counter    process, stage (publisher|client)
mdhub_cache_lookups_total                        counter    process, layer (l1..l4), result
                                                            (hit|miss)
mdhub_cache_stale_total                          counter    process: answered with a stale value
mdhub_cache_missing_total                        counter    process: no value in any layer
mdhub_ticks_total                                counter    process, provider: ticks received
mdhub_publisher_offered_total                    counter    process: ticks offered to publish
mdhub_publisher_batches_total                    counter    process: batches published
mdhub_publisher_published_total                  counter    process: records published
mdhub_publisher_send_failures_total              counter    process: batches not sent
mdhub_publisher_flush_interval_seconds           gauge      process: in force
mdhub_tuning_low_tier_fresh_age_seconds          gauge      process: in force
mdhub_validation_checked_total                   counter    process: ticks checked
mdhub_validation_outcomes_total                  counter    process, outcome (flagged|deferred|
                                                            dropped|late_verdict)
mdhub_validation_rechecks_total                  counter    process: REST re-checks
mdhub_workers                                    gauge      feed workers with a heartbeat
mdhub_worker_connections                         gauge      worker: connections it holds
mdhub_worker_planner                             gauge      worker: 1 for the pool planner
mdhub_connection_state                           gauge      C, state: 1 for the current one
mdhub_connection_available                       gauge      C: 0 when failed over by its worker
mdhub_connection_symbols                         gauge      C
mdhub_connection_symbol_cap                      gauge      C
mdhub_connection_messages_per_second             gauge      C: frames/s over the last 10 s
mdhub_connection_last_message_timestamp_seconds  gauge      C
mdhub_connection_heartbeat_timestamp_seconds     gauge      C
mdhub_connection_ticks_total                     counter    C
mdhub_connection_messages_total                  counter    C: frames
mdhub_connection_received_bytes_total            counter    C
mdhub_connection_connects_total                  counter    C: sessions that went live
mdhub_connection_reconnects_total                counter    C
mdhub_connection_restarts_total                  counter    C: ordered by the health check
mdhub_connection_errors_total                    counter    C, kind
mdhub_open_alerts                                gauge      kind, level: open alerts (0 once
                                                            resolved, while the kind is on record)
===============================================  =========  ======================================
C = connection, provider, worker (a broker connection such as fyers:primary:0 and the
feed worker holding it).

Ticks per second per connection or provider: ``rate(mdhub_connection_ticks_total[1m])``,
``sum by (provider) (rate(mdhub_ticks_total[1m]))``. Cache hit rate per layer:
``sum by (layer) (rate(mdhub_cache_lookups_total{result="hit"}[5m])) / sum by (layer)
(rate(mdhub_cache_lookups_total[5m]))``.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from django.db import DatabaseError
from django.db.models import Count, Q
from prometheus_client import (
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

from feeds.providers.base import ClientState
from monitoring.models import Alert
from monitoring.perf import BOUNDS_MS, LatencyHistogram

logger = logging.getLogger(__name__)

# Well inside Prometheus's default 10 s scrape timeout: a slow hub gives ``mdhub_up 0`` and
# the process metrics, not a failed scrape.
HUB_READ_TIMEOUT: Final = 3.0

# Every known state is exported, 0 or 1, so a state change never leaves a gap in a series.
CONNECTION_STATES: Final = tuple(s.value for s in ClientState)

# The histograms' ``le`` labels: the perf histograms' bounds in seconds, then +Inf.
_LE: Final = (*(floatToGoString(ms / 1000) for ms in BOUNDS_MS), "+Inf")

_CONN = ("connection", "provider", "worker")


@dataclass(frozen=True, slots=True)
class Series:
    family: type[Metric]
    help: str
    labels: tuple[str, ...] = ()


_G, _C, _H = GaugeMetricFamily, CounterMetricFamily, HistogramMetricFamily
_P = ("process",)

# Exposed name -> its family; the order of the exposition.
SERIES: Final[dict[str, Series]] = {
    "mdhub_up": Series(_G, "1 when the hub's heartbeats could be read, else 0."),
    "mdhub_processes": Series(_G, "Hub processes with a live perf heartbeat."),
    "mdhub_malformed_heartbeats": Series(
        _G, "Heartbeats skipped by this scrape as malformed.", ("kind",)
    ),
    "mdhub_process_info": Series(
        _G, "Always 1: a hub process, its roles, its feed worker.", (*_P, "roles", "worker")
    ),
    "mdhub_process_heartbeat_timestamp_seconds": Series(
        _G, "When the process last sent its perf heartbeat (epoch seconds).", _P
    ),
    "mdhub_process_cpu_seconds_total": Series(_C, "User and system CPU time of the process.", _P),
    "mdhub_process_resident_memory_bytes": Series(_G, "Resident memory of the process.", _P),
    "mdhub_process_virtual_memory_bytes": Series(_G, "Virtual memory of the process.", _P),
    "mdhub_process_open_fds": Series(_G, "Open file descriptors of the process.", _P),
    "mdhub_process_start_time_seconds": Series(_G, "Start time of the process (epoch s).", _P),
    "mdhub_delivery_latency_seconds": Series(
        _H, "Hub receive time to sent to the client, per update delivered.", _P
    ),
    "mdhub_exchange_latency_seconds": Series(
        _H, "Exchange timestamp to sent to the client, per update delivered.", (*_P, "provider")
    ),
    "mdhub_clients": Series(_G, "WebSocket clients connected.", _P),
    "mdhub_client_users": Series(_G, "Distinct users among the connected clients.", _P),
    "mdhub_subscriptions": Series(_G, "Symbol subscriptions of the connected clients.", _P),
    "mdhub_delivery_batches_total": Series(_C, "Tick batches received from feed workers.", _P),
    "mdhub_delivery_records_total": Series(_C, "Tick records received from feed workers.", _P),
    "mdhub_delivery_queued_updates_total": Series(_C, "Updates queued to client queues.", _P),
    "mdhub_delivered_updates_total": Series(_C, "Updates sent to clients.", _P),
    "mdhub_delivery_messages_total": Series(_C, "WebSocket update messages sent.", _P),
    "mdhub_delivery_malformed_total": Series(_C, "Malformed tick batches or records.", _P),
    "mdhub_slow_clients_closed_total": Series(_C, "Clients closed for staying too slow.", _P),
    "mdhub_conflated_total": Series(
        _C, "Updates replaced by a newer one before being sent.", (*_P, "stage")
    ),
    "mdhub_cache_lookups_total": Series(
        _C, "Cache lookups per layer and result (hit, miss).", (*_P, "layer", "result")
    ),
    "mdhub_cache_stale_total": Series(_C, "Lookups answered with a stale value.", _P),
    "mdhub_cache_missing_total": Series(_C, "Lookups with no value in any layer.", _P),
    "mdhub_ticks_total": Series(_C, "Ticks received from the providers.", (*_P, "provider")),
    "mdhub_publisher_offered_total": Series(_C, "Ticks offered to the batch publisher.", _P),
    "mdhub_publisher_batches_total": Series(_C, "Batches the publisher sent.", _P),
    "mdhub_publisher_published_total": Series(_C, "Records the publisher sent.", _P),
    "mdhub_publisher_send_failures_total": Series(_C, "Batches the publisher failed to send.", _P),
    "mdhub_publisher_flush_interval_seconds": Series(_G, "Publisher flush interval in force.", _P),
    "mdhub_tuning_low_tier_fresh_age_seconds": Series(
        _G, "Freshness age in force for low-tier symbols.", _P
    ),
    "mdhub_validation_checked_total": Series(_C, "Ticks checked by validation.", _P),
    "mdhub_validation_outcomes_total": Series(
        _C, "Validation outcomes other than a pass.", (*_P, "outcome")
    ),
    "mdhub_validation_rechecks_total": Series(_C, "REST re-checks by validation.", _P),
    "mdhub_workers": Series(_G, "Feed workers with a live heartbeat."),
    "mdhub_worker_connections": Series(_G, "Broker connections a worker holds.", ("worker",)),
    "mdhub_worker_planner": Series(_G, "1 for the worker that plans the pools.", ("worker",)),
    "mdhub_connection_state": Series(
        _G, "1 for the connection's current state, else 0.", (*_CONN, "state")
    ),
    "mdhub_connection_available": Series(_G, "0 when its worker failed it over.", _CONN),
    "mdhub_connection_symbols": Series(_G, "Symbols subscribed on the connection.", _CONN),
    "mdhub_connection_symbol_cap": Series(_G, "Symbols the connection may carry.", _CONN),
    "mdhub_connection_messages_per_second": Series(
        _G, "Frames per second over the last 10 s.", _CONN
    ),
    "mdhub_connection_last_message_timestamp_seconds": Series(
        _G, "When the connection last received a frame (epoch s).", _CONN
    ),
    "mdhub_connection_heartbeat_timestamp_seconds": Series(
        _G, "When the connection's heartbeat was written (epoch s).", _CONN
    ),
    "mdhub_connection_ticks_total": Series(_C, "Ticks received on the connection.", _CONN),
    "mdhub_connection_messages_total": Series(_C, "Frames received on the connection.", _CONN),
    "mdhub_connection_received_bytes_total": Series(_C, "Bytes received.", _CONN),
    "mdhub_connection_connects_total": Series(_C, "Sessions that went live.", _CONN),
    "mdhub_connection_reconnects_total": Series(_C, "Sessions after the first.", _CONN),
    "mdhub_connection_restarts_total": Series(_C, "Restarts ordered by the health check.", _CONN),
    "mdhub_connection_errors_total": Series(_C, "Errors per kind.", (*_CONN, "kind")),
    "mdhub_open_alerts": Series(_G, "Open alerts per kind and level.", ("kind", "level")),
}

# (perf section field, series) pairs read the same way: a number in, one series out.
_DELIVERY_FIELDS: Final = (
    ("clients", "mdhub_clients"),
    ("users", "mdhub_client_users"),
    ("subscriptions", "mdhub_subscriptions"),
    ("batches", "mdhub_delivery_batches_total"),
    ("records", "mdhub_delivery_records_total"),
    ("deliveries", "mdhub_delivery_queued_updates_total"),
    ("items_sent", "mdhub_delivered_updates_total"),
    ("messages_sent", "mdhub_delivery_messages_total"),
    ("malformed", "mdhub_delivery_malformed_total"),
    ("slow_closed", "mdhub_slow_clients_closed_total"),
)
_PROCESS_FIELDS: Final = (
    ("cpu_seconds_total", "mdhub_process_cpu_seconds_total"),
    ("resident_memory_bytes", "mdhub_process_resident_memory_bytes"),
    ("virtual_memory_bytes", "mdhub_process_virtual_memory_bytes"),
    ("open_fds", "mdhub_process_open_fds"),
    ("start_time_seconds", "mdhub_process_start_time_seconds"),
)
_PUBLISHER_FIELDS: Final = (
    ("offered", "mdhub_publisher_offered_total"),
    ("batches", "mdhub_publisher_batches_total"),
    ("published", "mdhub_publisher_published_total"),
    ("send_failures", "mdhub_publisher_send_failures_total"),
)
_VALIDATION_OUTCOMES: Final = (
    ("flagged", "flagged"),
    ("deferred", "deferred"),
    ("dropped", "dropped"),
    ("late_verdicts", "late_verdict"),
)
_CONNECTION_FIELDS: Final = (
    ("symbols", "mdhub_connection_symbols"),
    ("symbol_cap", "mdhub_connection_symbol_cap"),
    ("messages_per_second", "mdhub_connection_messages_per_second"),
    ("at", "mdhub_connection_heartbeat_timestamp_seconds"),
    ("ticks", "mdhub_connection_ticks_total"),
    ("frames", "mdhub_connection_messages_total"),
    ("bytes", "mdhub_connection_received_bytes_total"),
    ("connects", "mdhub_connection_connects_total"),
    ("reconnects", "mdhub_connection_reconnects_total"),
    ("restarts", "mdhub_connection_restarts_total"),
)


@dataclass(frozen=True, slots=True)
class HubReadings:
    """What one scrape reads: the heartbeats by kind (``ident -> beat``, unchecked) and the
    alert counts ``(kind, level, open)``."""

    up: bool
    perf: Mapping[str, Any] = field(default_factory=dict)
    connections: Mapping[str, Any] = field(default_factory=dict)
    workers: Mapping[str, Any] = field(default_factory=dict)
    alerts: Sequence[tuple[str, str, int]] = ()


# --- heartbeats -> samples (pure) -----------------------------------------------------------

# (series, label values, value); a histogram's value is (cumulative buckets, sum).
Sample = tuple[str, tuple[str, ...], Any]


def _number(value: object) -> float | None:
    """A finite, non-negative number from JSON, else None (every series here is >= 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def _histogram(snapshot: object) -> tuple[list[tuple[str, float]], float] | None:
    """Cumulative Prometheus buckets and the sum in seconds, from ``LatencyHistogram.snapshot()``;
    None for anything else (other buckets, negative counts, not a snapshot)."""
    if not isinstance(snapshot, Mapping):
        return None
    try:
        histogram = LatencyHistogram.from_snapshot(snapshot)
    except (ValueError, TypeError):
        return None
    if any(c < 0 for c in histogram.counts) or _number(histogram.sum_ms) is None:
        return None
    buckets, seen = [], 0
    for le, count in zip(_LE, histogram.counts, strict=True):
        seen += count
        buckets.append((le, float(seen)))
    return buckets, histogram.sum_ms / 1000


class _Samples:
    """The samples of one heartbeat, kept apart until the beat has been read to the end."""

    def __init__(self) -> None:
        self.items: list[Sample] = []

    def add(self, name: str, labels: tuple[str, ...], value: Any) -> None:
        if len(labels) != len(SERIES[name].labels):
            raise ValueError(f"{name}: labels {labels} do not match {SERIES[name].labels}")
        if value is not None:
            self.items.append((name, labels, value))

    def add_number(self, name: str, labels: tuple[str, ...], value: object) -> None:
        self.add(name, labels, _number(value))


def _perf_samples(out: _Samples, process: str, beat: Mapping[str, Any]) -> None:
    p = (process,)
    listed = beat.get("roles")
    roles = sorted({str(r) for r in listed}) if isinstance(listed, list) else []
    feeds = _section(beat, "feeds")
    worker = feeds.get("worker")
    out.add("mdhub_process_info", (process, ",".join(roles), str(worker or "")), 1.0)
    out.add_number("mdhub_process_heartbeat_timestamp_seconds", p, beat.get("at"))
    metrics = _section(beat, "process_metrics")
    for key, name in _PROCESS_FIELDS:
        out.add_number(name, p, metrics.get(key))

    delivery = _section(beat, "delivery")
    for key, name in _DELIVERY_FIELDS:
        out.add_number(name, p, delivery.get(key))
    out.add_number("mdhub_conflated_total", (process, "client"), delivery.get("conflated"))
    out.add("mdhub_delivery_latency_seconds", p, _histogram(delivery.get("latency_receive")))
    for provider, snapshot in sorted(_section(delivery, "latency_exchange").items()):
        labels = (process, str(provider))
        out.add("mdhub_exchange_latency_seconds", labels, _histogram(snapshot))

    cache = _section(beat, "cache")
    for result, key in (("hit", "hits"), ("miss", "misses")):
        for layer, count in sorted(_section(cache, key).items()):
            out.add_number("mdhub_cache_lookups_total", (process, str(layer), result), count)
    out.add_number("mdhub_cache_stale_total", p, cache.get("stale"))
    out.add_number("mdhub_cache_missing_total", p, cache.get("missing"))

    for provider, count in sorted(_section(feeds, "ticks").items()):
        out.add_number("mdhub_ticks_total", (process, str(provider)), count)
    publisher = _section(feeds, "publisher")
    for key, name in _PUBLISHER_FIELDS:
        out.add_number(name, p, publisher.get(key))
    out.add_number("mdhub_conflated_total", (process, "publisher"), publisher.get("conflated"))
    validation = _section(feeds, "validation")
    out.add_number("mdhub_validation_checked_total", p, validation.get("checked"))
    for key, outcome in _VALIDATION_OUTCOMES:
        out.add_number("mdhub_validation_outcomes_total", (process, outcome), validation.get(key))
    out.add_number("mdhub_validation_rechecks_total", p, validation.get("rechecks"))

    tuning = _section(beat, "tuning")
    # The running publisher's own interval when this process has one; else the setting.
    flush = _number(publisher.get("flush_interval"))
    if flush is None:
        flush = _number(tuning.get("flush_interval"))
    out.add("mdhub_publisher_flush_interval_seconds", p, flush)
    out.add_number("mdhub_tuning_low_tier_fresh_age_seconds", p, tuning.get("low_tier_fresh_age"))


def _connection_samples(out: _Samples, ident: str, beat: Mapping[str, Any]) -> None:
    # The heartbeat's ident is the connection's name, and unique: no series twice.
    name = ident
    provider = str(beat.get("provider") or name.partition(":")[0])
    labels = (name, provider, str(beat.get("worker") or ""))
    state = beat.get("state")
    if isinstance(state, str) and state:
        for known in dict.fromkeys((*CONNECTION_STATES, state)):
            out.add("mdhub_connection_state", (*labels, known), float(known == state))
    available = beat.get("available")
    if isinstance(available, bool):
        out.add("mdhub_connection_available", labels, float(available))
    for key, series in _CONNECTION_FIELDS:
        out.add_number(series, labels, beat.get(key))
    last_ns = beat.get("last_message_ns")
    if isinstance(last_ns, int) and not isinstance(last_ns, bool) and last_ns > 0:  # 0: none yet
        # int / int rounds once; through float(ns) first the seconds would be off by ~200 ns.
        out.add("mdhub_connection_last_message_timestamp_seconds", labels, last_ns / 10**9)
    for kind, count in sorted(_section(beat, "errors").items()):
        out.add_number("mdhub_connection_errors_total", (*labels, str(kind)), count)


def _worker_samples(out: _Samples, ident: str, beat: Mapping[str, Any]) -> None:
    worker = (ident,)  # the worker's id
    connections = beat.get("connections")
    if isinstance(connections, list):
        out.add("mdhub_worker_connections", worker, float(len(connections)))
    planner = beat.get("planner")
    if isinstance(planner, bool):
        out.add("mdhub_worker_planner", worker, float(planner))


_READERS: Final[tuple[tuple[str, str, Callable[[_Samples, str, Mapping[str, Any]], None]], ...]] = (
    ("perf", "perf", _perf_samples),
    ("connection", "connections", _connection_samples),
    ("worker", "workers", _worker_samples),
)


def hub_metric_families(readings: HubReadings) -> list[Metric]:
    """Every ``SERIES`` family (empty ones too, so each is described), filled from
    ``readings``. Pure: no I/O."""
    samples: list[Sample] = []
    read: Counter[str] = Counter()
    malformed: Counter[str] = Counter()
    for kind, attribute, reader in _READERS:
        beats = getattr(readings, attribute)
        for ident, beat in sorted(beats.items(), key=lambda item: str(item[0])):
            out = _Samples()
            try:
                if not isinstance(beat, Mapping):
                    raise TypeError(f"a heartbeat is a JSON object, not {type(beat).__name__}")
                reader(out, str(ident), beat)
            except Exception:  # one process's bad beat must not cost the others' series
                logger.debug("metrics: %s heartbeat %s skipped", kind, ident, exc_info=True)
                malformed[kind] += 1
                continue
            read[kind] += 1
            samples.extend(out.items)

    samples.append(("mdhub_up", (), float(readings.up)))
    samples.append(("mdhub_processes", (), float(read["perf"])))
    samples.append(("mdhub_workers", (), float(read["worker"])))
    for kind, _, _ in _READERS:
        samples.append(("mdhub_malformed_heartbeats", (kind,), float(malformed[kind])))
    for kind, level, count in readings.alerts:
        samples.append(("mdhub_open_alerts", (kind, level), float(count)))

    families = {
        name: spec.family(name, spec.help, labels=spec.labels) for name, spec in SERIES.items()
    }
    for name, labels, value in samples:
        family = families[name]
        if isinstance(family, HistogramMetricFamily):
            buckets, total = value
            family.add_metric(labels, buckets, total)
        else:
            family.add_metric(labels, value)
    return list(families.values())


class HubCollector:
    """A prometheus-client collector over the hub's heartbeats, read at every ``collect``."""

    def __init__(self, read: Callable[[], HubReadings]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        yield from hub_metric_families(self._read())


# --- reading (I/O) --------------------------------------------------------------------------


def _open_alert_counts() -> list[tuple[str, str, int]]:
    # Every kind and level on record, open or not, so a series drops to 0 when its alert
    # resolves instead of vanishing (retention prunes resolved alerts after a while).
    rows = (
        Alert.objects.values_list("kind", "level")
        .annotate(open_count=Count("id", filter=Q(resolved_at__isnull=True)))
        .order_by("kind", "level")
    )
    return [(kind, level, count) for kind, level, count in rows]


def hub_readings_get(*, timeout: float = HUB_READ_TIMEOUT) -> HubReadings:
    """The heartbeats of every hub process, from the coordinator, and the alert counts.
    Never raises for an unreachable hub: that is ``up=False``."""
    # feeds.runtime imports the monitoring services: import it when called, not at load.
    from feeds.runtime import HubAccess, hub_call

    async def read(access: HubAccess) -> tuple[dict[str, Any], ...]:
        coordinator = access.coordinator
        return (
            await coordinator.beats("perf"),
            await coordinator.beats("connection"),
            await coordinator.beats("worker"),
        )

    try:
        perf, connections, workers = hub_call(read, timeout=timeout)
        up = True
    except Exception as exc:  # Redis down, a timeout: say so in mdhub_up, answer anyway
        logger.warning("metrics: the hub's heartbeats could not be read (%s: %s)",
                       type(exc).__name__, exc)  # fmt: skip
        perf, connections, workers, up = {}, {}, {}, False
    try:
        alerts = _open_alert_counts()
    except DatabaseError:
        logger.warning("metrics: alert counts could not be read", exc_info=True)
        alerts = []
    return HubReadings(up=up, perf=perf, connections=connections, workers=workers, alerts=alerts)


def metrics_registry_build(
    *, read: Callable[[], HubReadings] = hub_readings_get
) -> CollectorRegistry:
    """A registry of its own (not prometheus-client's global one): this process's standard
    collectors plus the hub's."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(HubCollector(read))
    return registry


def metrics_render(*, read: Callable[[], HubReadings] = hub_readings_get) -> bytes:
    """The Prometheus text exposition of the whole hub."""
    return generate_latest(metrics_registry_build(read=read))
