"""The performance monitor's reactions: pure rules (no Django, no I/O).

At each report the monitor first judges the changes it made two reports before (the window
right after a change is its settling time: the processes apply it within a heartbeat, and a
backlog built before it drains; it is reported, not judged). A change *helped* when the
figure it aimed at improved by at least ``improvement`` (10 %) or is within its limit now.
A change that did not help is reverted (the revert is recorded too) and that setting is left
alone for ``retry_after``. Then, for each figure out of bounds:

- **latency**: the average receive -> delivery latency above ``latency_ms`` (80 ms): widen
  the feed workers' flush interval (x4, at most ``flush_max``). Fewer, larger batches mean
  fewer channel-layer messages for every web process to take in; a process that spends too
  long per batch stops falling behind.
- **cache**: fewer than ``cache_efficiency`` (70 %) of snapshot lookups answered from memory:
  let the standard and low-frequency tiers' snapshots take in-memory values up to
  ``fresh_steps`` old instead of calling the provider's REST API (their ticks are seconds
  apart; the critical and high-frequency tiers keep the strict freshness).

A figure with too few samples in the window (``None``) is not judged and nothing is changed
for it. A setting already at its last step is reported as ``stuck`` (the caller raises an
alert): the monitor has nothing left to try.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

FLUSH_INTERVAL: Final = "flush_interval"
LOW_TIER_FRESH_AGE: Final = "low_tier_fresh_age"

LATENCY: Final = "latency_mean_ms"
CACHE_EFFICIENCY: Final = "cache_efficiency"

METRIC_OF: Final = {FLUSH_INTERVAL: LATENCY, LOW_TIER_FRESH_AGE: CACHE_EFFICIENCY}

WIDEN_FLUSH: Final = "widen_flush"
LENGTHEN_FRESHNESS: Final = "lengthen_low_tier_freshness"
REVERT: Final = "revert"


@dataclass(frozen=True, slots=True)
class TuningLimits:
    latency_ms: float = 80.0
    cache_efficiency: float = 0.70
    flush_default: float = 0.005  # the configured FLUSH_INTERVAL
    flush_max: float = 0.04
    fresh_default: float = 0.1  # the configured FRESH_AGE
    fresh_steps: tuple[float, ...] = (2.0, 5.0)
    improvement: float = 0.10
    retry_after: float = 600.0


@dataclass(frozen=True, slots=True)
class Figures:
    """A report's figures; None where the window had too few samples to judge."""

    latency_mean_ms: float | None = None
    cache_efficiency: float | None = None

    def get(self, metric: str) -> float | None:
        return self.latency_mean_ms if metric == LATENCY else self.cache_efficiency


@dataclass(frozen=True, slots=True)
class Pending:
    """A change not judged yet; ``settling`` while the window since it is its first."""

    ident: int
    setting: str
    before: float
    after: float
    metric_before: float | None
    settling: bool = False


@dataclass(frozen=True, slots=True)
class Judgement:
    ident: int
    helped: bool
    metric_after: float


@dataclass(frozen=True, slots=True)
class Change:
    kind: str
    setting: str
    before: float
    after: float
    metric: str
    metric_before: float | None
    reason: str


@dataclass(slots=True)
class Decision:
    judgements: list[Judgement] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    tuning: dict[str, float | None] = field(default_factory=dict)
    stuck: list[str] = field(default_factory=list)  # figures out of bounds, nothing to try


def _within(metric: str, value: float, limits: TuningLimits) -> bool:
    if metric == LATENCY:
        return value <= limits.latency_ms
    return value >= limits.cache_efficiency


def _improved(metric: str, before: float | None, after: float, limits: TuningLimits) -> bool:
    if before is None:
        return False
    if metric == LATENCY:
        return after <= before * (1 - limits.improvement)
    return after >= before * (1 + limits.improvement) and after > before


def _show(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f} ms" if metric == LATENCY else f"{value:.0%}"


def tuning_decide(
    *,
    figures: Figures,
    tuning: Mapping[str, float | None],
    pending: Sequence[Pending],
    reverted_at: Mapping[str, float],
    now: float,
    limits: TuningLimits | None = None,
) -> Decision:
    """Judge ``pending``, then react to ``figures``. ``tuning`` holds the values in force
    (None: the default); ``reverted_at`` when each setting was last reverted (epoch s)."""
    limits = limits or TuningLimits()
    defaults = {FLUSH_INTERVAL: limits.flush_default, LOW_TIER_FRESH_AGE: limits.fresh_default}
    decision = Decision(tuning={s: tuning.get(s) for s in defaults})
    busy: set[str] = set()  # settings not to touch again in this report

    def current(setting: str) -> float:
        value = decision.tuning.get(setting)
        return defaults[setting] if value is None else value

    def change(kind: str, setting: str, after: float, metric_before: float | None,
               reason: str) -> None:  # fmt: skip
        before = current(setting)
        decision.changes.append(
            Change(kind, setting, before, after, METRIC_OF[setting], metric_before, reason)
        )
        decision.tuning[setting] = None if after == defaults[setting] else after
        busy.add(setting)

    for step in pending:
        metric = METRIC_OF.get(step.setting)
        value = None if metric is None else figures.get(metric)
        if step.settling or metric is None or value is None:
            busy.add(step.setting)  # not judged yet: wait for a settled window with samples
            continue
        helped = _improved(metric, step.metric_before, value, limits) or _within(
            metric, value, limits
        )
        decision.judgements.append(Judgement(step.ident, helped, value))
        if not helped:
            was, now_ = _show(metric, step.metric_before), _show(metric, value)
            reason = f"{step.setting} {step.after:g} did not help: {was} before, {now_} after"
            change(REVERT, step.setting, step.before, value, reason)

    def may_change(setting: str) -> bool:
        last = reverted_at.get(setting)
        return setting not in busy and (last is None or now - last >= limits.retry_after)

    latency = figures.latency_mean_ms
    if latency is not None and latency > limits.latency_ms and may_change(FLUSH_INTERVAL):
        flush = current(FLUSH_INTERVAL)
        if flush >= limits.flush_max:
            decision.stuck.append(
                f"average latency {latency:.0f} ms with the flush interval at its "
                f"{limits.flush_max * 1000:g} ms bound"
            )
        else:
            wider = min(limits.flush_max, flush * 4)
            change(WIDEN_FLUSH, FLUSH_INTERVAL, wider, latency,
                   f"average latency {latency:.0f} ms above {limits.latency_ms:g} ms: flush "
                   f"every {wider * 1000:g} ms instead of {flush * 1000:g} ms")  # fmt: skip

    efficiency = figures.cache_efficiency
    if (
        efficiency is not None
        and efficiency < limits.cache_efficiency
        and may_change(LOW_TIER_FRESH_AGE)
    ):
        fresh = current(LOW_TIER_FRESH_AGE)
        longer = next((s for s in limits.fresh_steps if s > fresh), None)
        if longer is None:
            decision.stuck.append(
                f"cache efficiency {efficiency:.0%} with low-tier freshness at its "
                f"{fresh:g} s bound"
            )
        else:
            change(LENGTHEN_FRESHNESS, LOW_TIER_FRESH_AGE, longer, efficiency,
                   f"cache efficiency {efficiency:.0%} below {limits.cache_efficiency:.0%}: "
                   f"standard and low-frequency snapshots may use values {longer:g} s old "
                   f"(was {fresh:g} s)")  # fmt: skip
    return decision
