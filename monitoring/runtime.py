"""Each process's performance heartbeat, and the tuning it brings back.

Every hub process that delivers ticks or runs a feed worker registers a *section* (a
function returning its counters since start: the fan-out hub's ``delivery``, the worker's
``feeds``); one reporter task per process publishes them every ``MONITORING["PERF_BEAT"]``
seconds as a ``perf`` heartbeat, with the process's cache lookups and its CPU and memory. The
performance report task and the metrics endpoint read these heartbeats, so any process can
answer for all of them, on every machine.

On the same beat the reporter reads the monitor's ``tuning`` heartbeat and applies it here
(``feeds.tuning``), calling the sections' hooks (the worker widens its publisher's flush).

Heartbeat format (kind ``perf``, one per process, ident ``host:pid``)::

    {"process", "roles": [section names], "at": epoch s, "interval": s,
     "process_metrics": {"cpu_seconds_total", "resident_memory_bytes",
                         "virtual_memory_bytes", "open_fds", "start_time_seconds"},
     "delivery": FanoutHub.perf_snapshot(),
     "cache": {"hits": {layer: n}, "misses": {layer: n}, "stale": n, "missing": n},
     "feeds": {"worker", "ticks": {provider: n}, "publisher": {...}, "validation": {...}},
     "tuning": HubTuning.as_dict()}
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from prometheus_client import ProcessCollector

from feeds.selectors import cache_stats
from feeds.tuning import HubTuning, hub_tuning_get, hub_tuning_parse, hub_tuning_set

logger = logging.getLogger(__name__)

PERF_KIND = "perf"
TUNING_KIND = "tuning"
TUNING_IDENT = "hub"

PROCESS = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class _Section:
    snapshot: Callable[[], dict[str, Any]]
    on_tuning: Callable[[HubTuning], None] | None


_sections: dict[str, _Section] = {}
_reporter: asyncio.Task[None] | None = None
_process_metrics = ProcessCollector(registry=None)  # reads /proc/self; nothing registered


def perf_section_register(
    name: str,
    snapshot: Callable[[], dict[str, Any]],
    *,
    on_tuning: Callable[[HubTuning], None] | None = None,
) -> None:
    """Report ``snapshot()`` under ``name`` from now on, and start this process's reporter
    (on the running loop) if it is not running."""
    global _reporter
    _sections[name] = _Section(snapshot, on_tuning)
    if on_tuning is not None:
        on_tuning(hub_tuning_get())  # a section that starts late gets the tuning in force
    if _reporter is None or _reporter.done() or _reporter.get_loop().is_closed():
        _reporter = asyncio.get_running_loop().create_task(_report_forever(), name="perf beat")


def perf_section_unregister(name: str) -> None:
    """Stop reporting ``name``; the reporter stops with the last section."""
    global _reporter
    _sections.pop(name, None)
    if not _sections and _reporter is not None:
        if not _reporter.get_loop().is_closed():
            _reporter.get_loop().call_soon_threadsafe(_reporter.cancel)
        _reporter = None


def _process_figures() -> dict[str, float]:
    figures: dict[str, float] = {}
    for family in _process_metrics.collect():
        for sample in family.samples:
            figures[sample.name.removeprefix("process_")] = sample.value
    return figures


def perf_snapshot_build() -> dict[str, Any]:
    """This process's heartbeat (the format in the module docstring)."""
    stats = cache_stats()
    info: dict[str, Any] = {
        "process": PROCESS,
        "roles": sorted(_sections),
        "at": time.time(),
        "interval": settings.MONITORING["PERF_BEAT"],
        "process_metrics": _process_figures(),
        "cache": {
            "hits": dict(stats.hits),
            "misses": dict(stats.misses),
            "stale": stats.stale,
            "missing": stats.missing,
        },
        "tuning": hub_tuning_get().as_dict(),
    }
    for name, section in list(_sections.items()):
        try:
            info[name] = section.snapshot()
        except Exception:  # one broken section must not silence the others
            logger.exception("perf beat: section %s failed", name)
    return info


def tuning_apply(values: dict[str, Any] | None) -> bool:
    """Hold the tuning the monitor published and tell the sections; True when it changed."""
    tuning = hub_tuning_parse(values)
    if not hub_tuning_set(tuning):
        return False
    logger.info("performance tuning now %s", tuning.as_dict())
    for name, section in list(_sections.items()):
        if section.on_tuning is not None:
            try:
                section.on_tuning(tuning)
            except Exception:
                logger.exception("perf beat: applying the tuning to %s failed", name)
    return True


async def _report_forever() -> None:
    from feeds.runtime import hub_coordinator_build, memory_coordinator_is

    interval = settings.MONITORING["PERF_BEAT"]
    coordinator = hub_coordinator_build()
    try:
        while _sections:
            try:
                info = perf_snapshot_build()
                await coordinator.beat(PERF_KIND, PROCESS, info, ttl=3 * interval)
                tuning = await coordinator.beats(TUNING_KIND)
                tuning_apply(tuning.get(TUNING_IDENT))
            except Exception:  # Redis away: the next beat tries again
                logger.warning("perf beat failed", exc_info=True)
            await asyncio.sleep(interval)
    finally:
        if not memory_coordinator_is(coordinator):
            await coordinator.close()
