"""The settings the performance monitor may change while the hub runs, as this process holds
them.

The monitor (``monitoring.services.performance_report_run``) decides; it publishes the values
as the coordinator's ``tuning`` heartbeat; every process's perf reporter
(``monitoring.runtime``) reads that heartbeat and applies it here. ``None`` means the
setting's configured default. Values are clamped to bounds that keep the hub within its
latency goal whatever the monitor asks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

# The batch publisher's flush interval may be widened up to this (seconds).
FLUSH_INTERVAL_BOUNDS: Final = (0.001, 0.05)
# Standard and low-frequency instruments' snapshots may use values this old (seconds).
LOW_TIER_FRESH_AGE_BOUNDS: Final = (0.01, 10.0)
LOW_TIERS: Final = frozenset({"standard", "low_frequency"})


@dataclass(frozen=True, slots=True)
class HubTuning:
    flush_interval: float | None = None
    low_tier_fresh_age: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


def _bounded(value: Any, bounds: tuple[float, float]) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None  # absent or malformed: the default
    return min(max(float(value), bounds[0]), bounds[1])


def hub_tuning_parse(values: Mapping[str, Any] | None) -> HubTuning:
    """A tuning from the heartbeat's dict; unknown keys ignored, bad values -> default."""
    values = values or {}
    return HubTuning(
        flush_interval=_bounded(values.get("flush_interval"), FLUSH_INTERVAL_BOUNDS),
        low_tier_fresh_age=_bounded(values.get("low_tier_fresh_age"), LOW_TIER_FRESH_AGE_BOUNDS),
    )


_current = HubTuning()


def hub_tuning_get() -> HubTuning:
    """What this process applies now."""
    return _current


def hub_tuning_set(tuning: HubTuning) -> bool:
    """Hold ``tuning`` from now on; True when it changed."""
    global _current
    changed = tuning != _current
    _current = tuning
    return changed
