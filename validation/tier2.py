"""Tier 2: the two providers checked against each other, and each against its own clock.

Two halves, so that delivery never waits for a comparison:

* ``mark`` runs inline after tier 1 and only *reads* state: a tick from a provider that the
  comparison has found wrong for this instrument gets ``DISCREPANCY`` and the consensus price;
  a tick that took much longer than its provider usually takes to arrive gets
  ``PROVIDER_LAG``.
* ``process`` runs off the hot path: it aligns the two providers' last good prices by exchange
  time, measures the gap in ticks and basis points, decides which side wins and keeps the
  per-provider lag statistics.

Consensus, when the gap exceeds the threshold (1 % by default, tighter per instrument). Two
sources cannot out-vote each other, so the rule uses evidence, in this order:

1. a side whose recent prices failed tier-1 or tier-3 checks (within ``suspect_ms``) loses:
   its feed is misbehaving now;
2. a side that lags (its provider is late persistently, or its last tick is older than the
   other's by more than the alignment window) loses: its price is the older one;
3. the side that stayed continuous with the last price both agreed on wins: the one that
   moved away from the common history is the one that broke;
4. with no common history yet, the preferred provider wins (FYERS unless the accuracy tracker
   has escalated the symbol to the other one).

A REST quote (tier 3's re-check) is the third opinion when it is worth the request.

No Django and no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from feeds.providers.ticks import Tick, rescale
from validation.checks import PRICE_CHECKS, Check

_DISCREPANCY = int(Check.DISCREPANCY)
_LAG = int(Check.PROVIDER_LAG)
_BAD_PRICE = int(PRICE_CHECKS) & ~_DISCREPANCY
_HISTORY = 8  # recent prices kept per side to find the other's moment
_WHOLE_SECONDS = frozenset({"fyers"})  # providers that stamp exchange time in whole seconds


@dataclass(frozen=True, slots=True)
class Tier2Config:
    discrepancy_bps: float = 100.0  # the design's 1 %
    align_ms: int = 2_000  # prices further apart in exchange time are not compared
    late_ms: float = 1_200.0  # transit beyond the provider's usual by this much is late
    baseline_alpha: float = 0.01  # weight of a new on-time transit in the usual one
    lag_window: int = 200  # ticks per provider over which the late share is measured
    lag_enter: float = 0.2  # late share that marks a provider as lagging
    lag_leave: float = 0.05
    preferred: str = "fyers"
    suspect_ms: int = 5_000  # a side with a bad price this recent loses a disagreement


@dataclass(frozen=True, slots=True)
class Comparison:
    """One alignment of the two providers' prices for an instrument at one moment."""

    key: str
    provider: str  # whose tick triggered it
    agreed: bool
    fyers: int
    upstox: int
    scale: int
    gap_bps: float
    gap_ticks: float | None
    exchange_ts: int | None
    winner: str = ""  # when they disagree: the consensus side, the other, and why
    loser: str = ""
    reason: str = ""
    loser_tick: Tick | None = None  # the loser's tick when it is the earlier one (sent already)

    @property
    def consensus(self) -> int | None:
        if not self.winner:
            return None
        return self.fyers if self.winner == "fyers" else self.upstox


class _Side:
    __slots__ = ("coarse", "ltp", "recv_ns", "scale", "tick", "ts")

    def __init__(self, tick: Tick) -> None:
        self.ltp, self.scale, self.ts = tick.ltp, tick.scale, tick.exchange_ts
        self.recv_ns, self.tick = tick.recv_ns, tick
        self.coarse = tick.provider in _WHOLE_SECONDS


class _Pair:
    __slots__ = ("agreed", "agreements", "comparisons", "last_bad", "loser", "sides",
                 "winner_price")  # fmt: skip

    def __init__(self) -> None:
        self.last_bad: dict[str, int] = {}  # provider -> receipt time of its last bad price
        self.sides: dict[str, deque[_Side]] = {}  # recent good prices per provider
        self.agreed: tuple[int, int] | None = None  # (price, scale) both last agreed on
        self.loser: str | None = None  # the side found wrong, while they disagree
        self.winner_price: tuple[int, int] | None = None  # (price, scale) shown as consensus
        self.comparisons = 0
        self.agreements = 0


class _Transit:
    """One provider's usual exchange-to-receipt time and its recent late share."""

    __slots__ = ("baseline", "lagging", "late", "recent")

    def __init__(self, window: int) -> None:
        self.baseline: float | None = None
        self.recent: deque[bool] = deque(maxlen=window)
        self.late = 0
        self.lagging = False


class Tier2:
    def __init__(
        self,
        *,
        config: Tier2Config | None = None,
        threshold_bps: Callable[[str], float | None] = lambda key: None,
        preferred: Callable[[str], str | None] = lambda key: None,
        grid: Callable[[str, int], int | None] = lambda key, scale: None,
    ) -> None:
        self.config = config or Tier2Config()
        self.threshold_bps = threshold_bps  # per-instrument override, or None
        self.preferred = preferred  # per-instrument better provider (escalation), or None
        self.grid = grid  # the instrument's tick at a scale, for gaps in ticks
        self.pairs: dict[str, _Pair] = {}
        self.transit: dict[str, _Transit] = {}
        self.agreements = 0
        self.comparisons = 0

    # --- inline --------------------------------------------------------------------------

    def mark(self, tick: Tick) -> int:
        """Flags from tier 2's current verdicts, set on ``tick`` before it is published."""
        flags = 0
        transit = self.transit.get(tick.provider)
        if transit is not None and tick.exchange_ts is not None:
            baseline = transit.baseline
            delay = tick.recv_ns / 1e6 - tick.exchange_ts
            if baseline is not None and delay - baseline > self.config.late_ms:
                flags |= _LAG
        pair = self.pairs.get(tick.instrument)
        if pair is not None and pair.loser == tick.provider and pair.winner_price is not None:
            flags |= _DISCREPANCY
            price, scale = pair.winner_price
            tick.consensus = price if scale == tick.scale else _rescaled(price, scale, tick.scale)
        if flags:
            tick.flags |= flags
        return flags

    # --- off the hot path ----------------------------------------------------------------

    def observe_transit(self, tick: Tick) -> bool:
        """Update the provider's transit statistics with ``tick``; True if it was late."""
        if tick.exchange_ts is None:
            return False
        config = self.config
        transit = self.transit.get(tick.provider)
        if transit is None:
            transit = self.transit[tick.provider] = _Transit(config.lag_window)
        delay = tick.recv_ns / 1e6 - tick.exchange_ts
        baseline = transit.baseline
        late = baseline is not None and delay - baseline > config.late_ms
        if baseline is None:
            transit.baseline = delay
        elif not late:
            transit.baseline = baseline + config.baseline_alpha * (delay - baseline)
        recent = transit.recent
        if len(recent) == recent.maxlen and recent[0]:
            transit.late -= 1
        recent.append(late)
        transit.late += late
        share = transit.late / len(recent)
        if transit.lagging:
            transit.lagging = share > config.lag_leave
        elif len(recent) >= 20:
            transit.lagging = share >= config.lag_enter
        return late

    def lagging(self, provider: str) -> bool:
        transit = self.transit.get(provider)
        return transit is not None and transit.lagging

    def process(self, tick: Tick) -> Comparison | None:
        """Compare ``tick`` with the other provider's price at the same exchange time (to the
        coarser side's resolution: FYERS stamps whole seconds). Without a price for that
        moment from the other side yet, the comparison waits: its tick will find this one."""
        if not tick.instrument or tick.exchange_ts is None:
            return None
        pair = self.pairs.get(tick.instrument)
        if pair is None:
            pair = self.pairs[tick.instrument] = _Pair()
        provider = str(tick.provider)
        if tick.flags & _BAD_PRICE:
            # Judged already by tier 1 or 3: it does not move our view, but it is evidence.
            pair.last_bad[provider] = tick.recv_ns
            return None
        side = _Side(tick)
        history = pair.sides.get(provider)
        if history is None:
            history = pair.sides[provider] = deque(maxlen=_HISTORY)
        history.append(side)
        other = next((h for name, h in pair.sides.items() if name != provider), None)
        if not other:
            return None
        match = _same_moment(side, other)
        if match is None:
            return None
        scale = max(side.scale, match.scale)
        a, b = _at(side, scale), _at(match, scale)
        low = min(a, b)
        if low <= 0:
            return None
        gap = abs(a - b)
        gap_bps = gap * 10_000 / low
        threshold = self.threshold_bps(tick.instrument) or self.config.discrepancy_bps
        pair.comparisons += 1
        self.comparisons += 1
        other_name = next(name for name in pair.sides if name != provider)
        by_name = {provider: a, other_name: b}
        grid = self.grid(tick.instrument, scale)
        fields = {
            "key": tick.instrument,
            "provider": provider,
            "fyers": by_name.get("fyers", 0),
            "upstox": by_name.get("upstox", 0),
            "scale": scale,
            "gap_bps": round(gap_bps, 2),
            "gap_ticks": round(gap / grid, 1) if grid else None,
            "exchange_ts": tick.exchange_ts,
        }
        if gap_bps <= threshold:
            pair.agreements += 1
            self.agreements += 1
            pair.agreed = ((a + b) // 2, scale)
            pair.loser = pair.winner_price = None
            return Comparison(agreed=True, **fields)
        winner, reason = self._consensus(pair, tick.instrument, {provider: side, other_name: match})
        won = side if winner == provider else match
        loser = other_name if winner == provider else provider
        pair.loser, pair.winner_price = loser, (won.ltp, won.scale)
        earlier = match.tick if loser == other_name else None
        return Comparison(
            agreed=False, winner=winner, loser=loser, reason=reason, loser_tick=earlier, **fields
        )

    def _consensus(self, pair: _Pair, key: str, sides: dict[str, _Side]) -> tuple[str, str]:
        """The winning provider of two disagreeing sides, and why (module docstring)."""
        (p_name, p), (q_name, q) = sides.items()
        now, recent = max(p.recv_ns, q.recv_ns), self.config.suspect_ms * 1_000_000
        p_bad = now - pair.last_bad.get(p_name, -recent) < recent
        q_bad = now - pair.last_bad.get(q_name, -recent) < recent
        if p_bad != q_bad:
            return (q_name if p_bad else p_name), "the other side failed checks just now"
        p_lag, q_lag = self.lagging(p_name), self.lagging(q_name)
        if p_lag != q_lag:
            return (q_name if p_lag else p_name), "the other provider lags"
        if pair.agreed is not None:
            agreed, scale = pair.agreed
            da, db = abs(_at(p, scale) - agreed), abs(_at(q, scale) - agreed)
            if da != db:
                return (p_name if da < db else q_name), "continuous with the agreed price"
        preferred = self.preferred(key) or self.config.preferred
        return (preferred if preferred in sides else p_name), "preferred provider"

    def forget(self, keys: Mapping[str, object] | set[str]) -> None:
        for key in list(self.pairs):
            if key not in keys:
                del self.pairs[key]

    def agreement(self, key: str) -> tuple[int, int]:
        pair = self.pairs.get(key)
        return (0, 0) if pair is None else (pair.agreements, pair.comparisons)


def _rescaled(price: int, from_scale: int, to_scale: int) -> int:
    try:
        return rescale(price, from_scale, to_scale)
    except ValueError:  # more decimals than the target scale: round, this is for display
        return round(price / 10 ** (from_scale - to_scale))


def _same_moment(side: _Side, other: deque[_Side]) -> _Side | None:
    """The other side's price stamped in the same moment as ``side``: the same millisecond,
    or, when either side stamps whole seconds, the one of that second received closest in
    time (a second holds several prints; the nearest is the same trade most often)."""
    ts = side.ts
    assert ts is not None
    best: _Side | None = None
    for candidate in reversed(other):
        theirs = candidate.ts
        if theirs is None:
            continue
        if theirs == ts:
            return candidate
        if (side.coarse or candidate.coarse) and theirs // 1000 == ts // 1000:
            if best is None or abs(candidate.recv_ns - side.recv_ns) < abs(
                best.recv_ns - side.recv_ns
            ):
                best = candidate
        elif theirs < ts - 1000:
            break  # older than any match could be
    return best


def _at(side: _Side, scale: int) -> int:
    return side.ltp if side.scale == scale else _rescaled(side.ltp, side.scale, scale)
