"""The validator: tier 1 inline, tiers 2-3 behind a bounded queue, the tracker fed by both.

``Validator.__call__`` is the feed worker's ``validate`` hook. It runs tier 1 and tier 2's
inline marks on each tick (the flags go out with the tick) and queues the tick for the
deferred stage; it never waits for anything. The deferred stage (``run``, a task on the
worker's loop) works in slices of ``slice_seconds`` and, while behind, takes at most
``deferred_share`` of the loop's time, so a slow deep check costs the socket reads at most
one slice at a time; if it stays behind, the oldest queued ticks are dropped and counted,
never the delivery.

Which tiers run is chosen per symbol: high-frequency symbols tier 1 only, critical ones all
three, the others tiers 1-2 (``InstrumentSpec.tier``); an escalation raises a symbol to the
deep tier. Verdicts that arrive after a tick went out (tier 3's filters, a REST re-check)
are counted and recorded, and if the tick is still the latest of its symbol it is published
again with its flags, so clients see the verdict without waiting for the next tick.

No Django and no I/O of its own: the REST re-check and the re-publish are handed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from feeds.providers.ticks import Tick
from validation.accuracy import AccuracyTracker, Escalation
from validation.checks import Check, ValidationTier
from validation.ticksize import tick_grid
from validation.tier1 import InstrumentSpec, Series, Tier1
from validation.tier2 import Comparison, Tier2
from validation.tier3 import MadFilter, TrimmedFilter

logger = logging.getLogger(__name__)

_SINGLE = tuple(Check)
_MAX_CHUNK = 64  # deferred ticks between two reads of the clock
_DEEP_RECHECK = int(Check.JUMP | Check.OUTLIER_TRIMMED | Check.OUTLIER_MAD)

# The REST re-check: canonical keys in, the REST last price per key out as (value, scale).
Recheck = Callable[[list[str]], Awaitable[dict[str, tuple[int, int]]]]


@dataclass(frozen=True, slots=True)
class ValidatorConfig:
    max_pending: int = 200_000  # ticks queued for the deferred stage; beyond it, oldest go
    slice_seconds: float = 0.002  # longest the deferred stage holds the loop at once
    # Most of the loop's time the deferred stage may take while behind: after a slice it
    # sleeps in proportion, so the socket reads, the publisher and a hub in the same process
    # always get the rest. Behind for good, it sheds the oldest ticks instead.
    deferred_share: float = 0.5
    sweep_interval: float = 1.0  # incidents closed, stale symbols and escalations found
    recheck_per_second: float = 2.0  # REST re-checks (the providers' REST budgets are small)
    recheck_queue: int = 256
    # Cross-source thresholds per instrument type where the 1 % default does not fit: option
    # prices move several per cent between two providers' prints of one second.
    discrepancy_bps_by_type: Mapping[str, float] = field(default_factory=lambda: {"OPT": 300.0})


@dataclass(slots=True)
class ValidatorStats:
    inline: int = 0
    flagged: int = 0  # ticks flagged inline (tiers 1 and 2)
    inline_ns: int = 0  # time spent inline (tier 1 and tier 2's marks)
    deferred: int = 0
    deferred_ns: int = 0
    dropped: int = 0  # queued ticks dropped because the deferred stage fell behind
    late_verdicts: int = 0  # flags added after the tick went out
    republished: int = 0
    rechecks: int = 0
    recheck_confirmed: int = 0  # the REST quote said the flagged price was real
    recheck_failed: int = 0
    recheck_skipped: int = 0  # queue full


class _Deep:
    """Tier-3 state of one provider symbol."""

    __slots__ = ("mad", "trimmed")

    def __init__(self, grid: int, price: int) -> None:
        # The granularity term: three ticks, but never under 20 bps of the price, so a
        # window that sat still (std ~ 0) does not call an ordinary move an outlier.
        ticks = max(3.0, 0.002 * price / grid)
        self.trimmed = TrimmedFilter(tick=grid, granularity_ticks=ticks)
        self.mad: MadFilter[Tick] = MadFilter(tick=grid)


class Validator:
    def __init__(
        self,
        *,
        tier1: Tier1 | None = None,
        tier2: Tier2 | None = None,
        tracker: AccuracyTracker | None = None,
        config: ValidatorConfig | None = None,
        recheck: Recheck | None = None,
        republish: Callable[[list[Tick]], None] | None = None,
        latest: Callable[[str, str], Tick | None] | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config or ValidatorConfig()
        self.tier1 = tier1 or Tier1()
        self.tracker = tracker or AccuracyTracker()
        self.overrides: dict[str, Escalation] = {}
        self.tier2 = tier2 or Tier2()
        self.tier2.preferred = self._preferred
        self.tier2.threshold_bps = self._threshold
        self.tier2.grid = self._grid
        self._specs: dict[str, InstrumentSpec] = dict(self.tier1.specs)
        self._grids: dict[tuple[str, int], int | None] = {}
        self.recheck = recheck
        self.republish = republish
        self.latest = latest
        self.clock = clock
        self.stats = ValidatorStats()
        self.pending: deque[Tick] = deque()
        self.deep: dict[str, _Deep] = {}
        self.escalations: deque[Escalation] = deque(maxlen=1_000)  # for the glue to record
        self._rechecks: dict[str, Tick] = {}  # by key: one pending re-check per instrument
        self._wake = asyncio.Event()
        self._last_sweep = 0
        self._chunk = 8  # grows to _MAX_CHUNK while ticks are cheap

    # --- configuration -------------------------------------------------------------------

    def set_specs(self, specs: dict[str, InstrumentSpec]) -> None:
        self.tier1.set_specs(specs)
        self._specs = dict(specs)
        self._grids.clear()
        carried = set(specs)
        self.tier2.forget(carried)
        self.tracker.forget(carried)
        symbols = set(self.tier1.series)
        for symbol in [s for s in self.deep if s not in symbols]:
            del self.deep[symbol]

    def escalate(self, escalation: Escalation) -> None:
        self.overrides[escalation.key] = escalation

    def escalations_sync(self, recorded: list[Escalation]) -> None:
        """Follow the escalations as stored: one an operator cleared is dropped, and the
        symbol's agreement is measured afresh (else it would escalate again at once)."""
        keep = {e.key for e in recorded} | {e.key for e in self.escalations}  # not stored yet
        for key in [k for k in self.overrides if k not in keep]:
            del self.overrides[key]
            self.tracker.escalation_cleared(key)

    def _preferred(self, key: str) -> str | None:
        escalation = self.overrides.get(key)
        return escalation.preferred if escalation else None

    def _threshold(self, key: str) -> float | None:
        spec = self._specs.get(key)
        if spec is None:
            return None
        if spec.discrepancy_bps is not None:
            return spec.discrepancy_bps
        return self.config.discrepancy_bps_by_type.get(spec.instrument_type)

    def _grid(self, key: str, scale: int) -> int | None:
        grid = self._grids.get((key, scale), 0)
        if grid == 0:
            spec = self._specs.get(key)
            size = spec.tick_size if spec is not None else None
            grid = self._grids[(key, scale)] = (
                tick_grid(tick_size=size, scale=scale) if size else None
            )
        return grid

    def tier_of(self, series: Series) -> ValidationTier:
        if series.key in self.overrides:
            return ValidationTier.DEEP
        return series.spec.tier

    # --- inline: the worker's hook -------------------------------------------------------

    def __call__(self, ticks: list[Tick]) -> None:
        start = time.perf_counter_ns()
        check, mark = self.tier1.check, self.tier2.mark
        flagged = 0
        for tick in ticks:
            check(tick)
            mark(tick)
            if tick.flags:
                flagged += 1
        pending = self.pending
        pending.extend(ticks)
        excess = len(pending) - self.config.max_pending
        if excess > 0:
            for _ in range(excess):
                pending.popleft()
            self.stats.dropped += excess
        stats = self.stats
        stats.inline += len(ticks)
        stats.flagged += flagged
        stats.inline_ns += time.perf_counter_ns() - start
        self._wake.set()

    # --- deferred ------------------------------------------------------------------------

    def process(self, *, budget: float | None = None) -> int:
        """Run the deferred stage on queued ticks for at most ``budget`` seconds (all of them
        when None); returns how many were processed."""
        start = time.perf_counter_ns()
        deadline = None if budget is None else start + int(budget * 1e9)
        pending, done = self.pending, 0
        while pending:
            # The clock is read once per chunk (reading it costs as much as a cheap tick); the
            # chunk shrinks when ticks are slow, so a slice ends close to its budget.
            chunk = min(self._chunk, len(pending))
            chunk_start = time.perf_counter_ns()
            for _ in range(chunk):
                self._deferred(pending.popleft())
            done += chunk
            now = time.perf_counter_ns()
            per_tick = (now - chunk_start) / chunk
            self._chunk = max(
                1, min(_MAX_CHUNK, int(self.config.slice_seconds * 1e9 / 4 / per_tick))
            )
            if deadline is not None and now >= deadline:
                break
        self.stats.deferred_ns += time.perf_counter_ns() - start
        return done

    def _deferred(self, tick: Tick) -> None:
        self.stats.deferred += 1
        series = self.tier1.series.get(tick.symbol)
        if series is None:
            return  # unmapped: tier 1 counted it
        tier = self.tier_of(series)
        before = tick.flags
        if tier >= ValidationTier.DEEP and series.grid:
            self._deep_checks(series, tick)
        late = self.tier2.observe_transit(tick)
        if tier >= ValidationTier.CROSS:
            if late:
                tick.flags |= Check.PROVIDER_LAG
            comparison = self.tier2.process(tick)
            if comparison is not None:
                self.tracker.compared(
                    comparison.key, agreed=comparison.agreed, loser=comparison.loser
                )
                if not comparison.agreed:
                    self._discrepancy(comparison, tick)
        added = tick.flags & ~before
        if added:
            self.stats.late_verdicts += 1
        self.tracker.ticks_seen(tick.instrument, tick.flags)
        if tick.flags:
            self._incidents(series, tick, tick.flags)
        if tier >= ValidationTier.DEEP and tick.flags & _DEEP_RECHECK:
            self._queue_recheck(tick)
        if added:
            self._republish(tick)

    def _discrepancy(self, comparison: Comparison, tick: Tick) -> None:
        if comparison.loser == tick.provider:
            tick.flags |= Check.DISCREPANCY
            tick.consensus = comparison.consensus
        elif (earlier := comparison.loser_tick) is not None:
            # The other side's tick of that moment went out before this one arrived: its
            # verdict is a late one.
            series = self.tier1.series.get(earlier.symbol)
            if series is not None and not earlier.flags & Check.DISCREPANCY:
                earlier.consensus = comparison.consensus
                self._late_flag(series, earlier, Check.DISCREPANCY, reference=0, incident=False)
        self.tracker.incident(
            key=comparison.key,
            provider="",
            check=Check.DISCREPANCY,
            at_ns=tick.recv_ns,
            decision=f"consensus_{comparison.winner}",
            exchange_ts=comparison.exchange_ts,
            scale=comparison.scale,
            fyers=comparison.fyers,
            upstox=comparison.upstox,
            consensus=comparison.consensus,
            gap_bps=comparison.gap_bps,
            detail={"reason": comparison.reason, "gap_ticks": comparison.gap_ticks,
                    "loser": comparison.loser},
        )  # fmt: skip

    def _deep_checks(self, series: Series, tick: Tick) -> None:
        deep = self.deep.get(tick.symbol)
        if deep is None:
            reference = series.good if series.good is not None else tick.ltp
            deep = self.deep[tick.symbol] = _Deep(series.grid or 1, max(1, reference))
        if tick.flags & (Check.NOT_POSITIVE | Check.DUPLICATE | Check.TIME_BACKWARDS):
            return  # already known bad, or no news: keep it out of the windows
        verdict = deep.trimmed.check(tick.ltp)
        if verdict is not None and verdict.outlier:
            tick.flags |= Check.OUTLIER_TRIMMED
        for late in deep.mad.push(tick.ltp, tick):
            if late.outlier:
                self._late_flag(series, late.token, Check.OUTLIER_MAD, reference=late.median_before)

    def _late_flag(
        self, series: Series, tick: Tick, check: Check, *, reference: float, incident: bool = True
    ) -> None:
        """A verdict on a tick processed earlier: count it, record it, republish if latest."""
        if tick.flags & check:
            return
        before = tick.flags
        tick.flags |= check
        self.stats.late_verdicts += 1
        self.tracker.flag_added(tick.instrument, before=before, check=check)
        if incident:
            self._incidents(series, tick, int(check), reference=round(reference))
        self._republish(tick)

    def _incidents(
        self, series: Series, tick: Tick, flags: int, *, reference: int | None = None
    ) -> None:
        for check in _SINGLE:
            if flags & check and check is not Check.DISCREPANCY:
                self.tracker.incident(
                    key=tick.instrument,
                    provider=series.provider,
                    check=check,
                    at_ns=tick.recv_ns,
                    exchange_ts=tick.exchange_ts,
                    scale=tick.scale,
                    observed=tick.ltp,
                    reference=reference if reference is not None else series.good,
                )

    def _republish(self, tick: Tick) -> None:
        if self.republish is None or self.latest is None:
            return
        if self.latest(tick.instrument, tick.provider) is tick:
            self.stats.republished += 1
            self.republish([tick])

    # --- REST re-checks ------------------------------------------------------------------

    def _queue_recheck(self, tick: Tick) -> None:
        if self.recheck is None:
            return
        if tick.instrument in self._rechecks or len(self._rechecks) < self.config.recheck_queue:
            self._rechecks[tick.instrument] = tick
        else:
            self.stats.recheck_skipped += 1

    async def recheck_once(self) -> int:
        """Re-check queued flagged prices against REST quotes, within the budget per call."""
        if self.recheck is None or not self._rechecks:
            return 0
        count = max(1, int(self.config.recheck_per_second))
        keys = list(self._rechecks)[:count]
        ticks = [self._rechecks.pop(k) for k in keys]
        try:
            quotes = await self.recheck(keys)
        except Exception:
            self.stats.recheck_failed += len(keys)
            logger.warning("validation: REST re-check of %d symbols failed", len(keys),
                           exc_info=True)  # fmt: skip
            return 0
        for tick in ticks:
            quote = quotes.get(tick.instrument)
            series = self.tier1.series.get(tick.symbol)
            if quote is None or series is None:
                continue
            self.stats.rechecks += 1
            self._recheck_verdict(series, tick, *quote)
        return len(ticks)

    def _recheck_verdict(self, series: Series, tick: Tick, value: int, scale: int) -> None:
        if scale != tick.scale:
            value = round(value * 10 ** (tick.scale - scale))
        good = series.good if series.good is not None else value
        # Closer to the flagged price than to the last good one: the flag was wrong.
        if abs(value - tick.ltp) < abs(value - good):
            self.stats.recheck_confirmed += 1
            self.tracker.incident(
                key=tick.instrument, provider=series.provider, check=Check.REST_RECHECK,
                at_ns=self.clock(), decision="confirmed", exchange_ts=tick.exchange_ts,
                scale=tick.scale, observed=tick.ltp, reference=value,
                detail={"flags": tick.flags, "verdict": "REST confirms the flagged price"},
            )  # fmt: skip
            series.good, series.pending = tick.ltp, None  # the new level is real
        else:
            self._late_flag(series, tick, Check.REST_RECHECK, reference=value)

    # --- sweeps --------------------------------------------------------------------------

    def sweep(self, *, now_ns: int | None = None) -> list[Escalation]:
        now_ns = self.clock() if now_ns is None else now_ns
        for series, silent in self.tier1.stale(now_ns=now_ns):
            self.tracker.incident(
                key=series.key, provider=series.provider, check=Check.STALE, at_ns=now_ns,
                scale=series.scale, observed=series.good,
                detail={"silent_seconds": round(silent, 1)},
            )  # fmt: skip
        escalations = self.tracker.sweep(now_ns=now_ns)
        for escalation in escalations:
            self.escalate(escalation)
            self.escalations.append(escalation)
            logger.warning("validation: %s escalated: %s", escalation.key, escalation.reason)
        return escalations

    def flush(self) -> None:
        """Everything decided now: the queue processed, late filters judged, incidents
        closed (a stop, or the end of a benchmark)."""
        self.process()
        for symbol, deep in self.deep.items():
            series = self.tier1.series.get(symbol)
            for late in deep.mad.flush():
                if late.outlier and series is not None:
                    self._late_flag(series, late.token, Check.OUTLIER_MAD,
                                    reference=late.median_before)  # fmt: skip
        self.tracker.sweep(now_ns=self.clock(), close_all=True)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """The deferred stage, REST re-checks and sweeps, until ``stop`` or cancelled."""
        stop = stop or asyncio.Event()
        recheck = asyncio.create_task(self._recheck_loop())
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.config.sweep_interval)
                self._wake.clear()
                share = self.config.deferred_share
                while self.pending and not stop.is_set():
                    started = time.perf_counter()
                    self.process(budget=self.config.slice_seconds)
                    spent = time.perf_counter() - started
                    # The socket reads go first; a stage that is behind takes at most its share.
                    await asyncio.sleep(spent * (1 - share) / share if self.pending else 0)
                now = self.clock()
                if now - self._last_sweep >= self.config.sweep_interval * 1e9:
                    self._last_sweep = now
                    self.sweep(now_ns=now)
        finally:
            recheck.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recheck

    async def _recheck_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.recheck_once()
            except Exception:
                logger.exception("validation: re-check loop failed")
