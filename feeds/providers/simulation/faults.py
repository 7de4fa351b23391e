"""Labelled fault injection for the simulators.

Data faults change what one provider sends for a tick (a copy of the shared quote; the
market itself is untouched). Connection faults are carried out by each simulator's server
(close, stall, reject auth, expire token, exceed a cap). Every injected fault is recorded
as a ``FaultLabel``: the ground truth that validation is scored against.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from feeds.providers.simulation.market import Quote


class DataFault(StrEnum):
    SPIKE = "spike"  # price jumps 5-20 % for one tick
    DECIMAL_SHIFT = "decimal_shift"  # price x10 or /10
    ZERO = "zero"
    NEGATIVE = "negative"
    OFF_GRID = "off_grid"  # price between two ticks
    OUT_OF_BAND = "out_of_band"  # beyond the circuit limits / day range
    CROSSED = "crossed"  # bid above ask
    STALE_REPEAT = "stale_repeat"  # the previous tick again, unchanged
    OUT_OF_ORDER = "out_of_order"  # exchange time earlier than the previous tick's
    DUPLICATE = "duplicate"  # the same tick sent twice
    FALLING_VOLUME = "falling_volume"  # cumulative volume goes down
    DIVERGENCE = "divergence"  # this provider's prices offset while the rule lasts
    LAG = "lag"  # this provider's ticks arrive late


class ConnectionFault(StrEnum):
    CLOSE_CLEAN = "close_clean"
    CLOSE_UNCLEAN = "close_unclean"
    STALL = "stall"  # socket open, nothing sent
    MUTE = "mute"  # socket open and answering pings, but no data (a feed that quietly stopped)
    REJECT_AUTH = "reject_auth"
    EXPIRE_TOKEN = "expire_token"
    EXCEED_CAP = "exceed_cap"


@dataclass(frozen=True, slots=True)
class FaultLabel:
    id: int
    kind: str
    provider: str
    key: str  # canonical instrument key ("" for connection faults)
    seq: int  # the market's tick number for that instrument
    at_ns: int
    exchange_ts: int | None = None  # as sent
    true_ltp: int | None = None
    sent_ltp: int | None = None
    detail: str = ""


@dataclass(slots=True)
class FaultRule:
    """Inject ``kind`` into matching ticks: each with probability ``rate``, or the next
    ``count`` ones; for at most ``seconds`` when given (divergence and lag use it)."""

    kind: DataFault
    provider: str = "*"  # "fyers", "upstox" or "*"
    keys: frozenset[str] | None = None  # None: any instrument
    rate: float = 0.0
    count: int | None = None
    magnitude: float | None = None  # spike/divergence fraction, lag seconds
    seconds: float | None = None
    id: int = 0
    expires_at: float | None = None

    def matches(self, provider: str, key: str, now: float) -> bool:
        if self.expires_at is not None and now >= self.expires_at:
            return False
        if self.count is not None and self.count <= 0:
            return False
        return self.provider in ("*", provider) and (self.keys is None or key in self.keys)


@dataclass(slots=True)
class Emission:
    """What a simulator should send for one tick, and when (``due`` epoch seconds)."""

    quote: Quote
    label: FaultLabel | None = None
    due: float = 0.0


@dataclass(slots=True)
class _Delayed:
    due: float
    order: int
    emission: Emission = field(compare=False)

    def __lt__(self, other: _Delayed) -> bool:
        return (self.due, self.order) < (other.due, other.order)


class FaultInjector:
    """Applies fault rules to each provider's stream and keeps the labels (bounded)."""

    MAX_DELAYED = 50_000  # lagged ticks held at once; beyond it they go out on time

    def __init__(
        self,
        *,
        seed: int = 0,
        log_limit: int = 200_000,
        sink: Callable[[FaultLabel], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rng = random.Random(f"faults:{seed}")
        self.rules: list[FaultRule] = []
        self.labels: deque[FaultLabel] = deque(maxlen=log_limit)
        self.counts: dict[str, int] = {}
        self._sink = sink
        self._clock = clock
        self._ids = itertools.count(1)
        self._last: dict[tuple[str, str], Quote] = {}  # last sent copy, for repeats
        self._delayed: list[_Delayed] = []
        self._order = itertools.count()

    # --- rules ---------------------------------------------------------------------------

    def add(self, rule: FaultRule) -> FaultRule:
        rule.id = next(self._ids)
        if rule.seconds is not None:
            rule.expires_at = self._clock() + rule.seconds
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    @property
    def active(self) -> bool:
        return bool(self.rules)

    def record(self, kind: str, provider: str, *, key: str = "", detail: str = "") -> FaultLabel:
        """Record a fault the server carried out itself (connection faults)."""
        label = FaultLabel(
            id=next(self._ids),
            kind=kind,
            provider=provider,
            key=key,
            seq=0,
            at_ns=time.time_ns(),
            detail=detail,
        )
        self._keep(label)
        return label

    # --- the stream ----------------------------------------------------------------------

    def apply(self, provider: str, quote: Quote) -> list[Emission]:
        """Emissions for one tick of ``quote`` on ``provider``: usually [the quote itself]."""
        if not self.rules:
            return [Emission(quote)]
        now = self._clock()
        self.rules = [r for r in self.rules if r.expires_at is None or now < r.expires_at]
        for rule in self.rules:
            if not rule.matches(provider, quote.key, now):
                continue
            if rule.count is None and self.rng.random() >= rule.rate:
                continue
            emissions = self._inject(rule, provider, quote, now)
            if emissions is None:  # not applicable to this instrument right now
                continue
            if rule.count is not None:
                rule.count -= 1
            self._remember(provider, quote)
            return emissions
        self._remember(provider, quote)
        return [Emission(quote)]

    def due(self, now: float | None = None) -> list[Emission]:
        """Lagged emissions whose time has come."""
        now = self._clock() if now is None else now
        ready = []
        while self._delayed and self._delayed[0].due <= now:
            ready.append(heapq.heappop(self._delayed).emission)
        return ready

    def _remember(self, provider: str, quote: Quote) -> None:
        if any(r.kind in (DataFault.STALE_REPEAT, DataFault.OUT_OF_ORDER) for r in self.rules):
            self._last[(provider, quote.key)] = replace(quote)

    def _inject(
        self, rule: FaultRule, provider: str, quote: Quote, now: float
    ) -> list[Emission] | None:
        kind, rng, inst = rule.kind, self.rng, quote.instrument
        bad = replace(quote)
        tick = inst.tick
        detail = ""
        match kind:
            case DataFault.SPIKE:
                size = rule.magnitude or rng.uniform(0.05, 0.2)
                sign = rng.choice((-1, 1))
                bad.ltp = max(tick, round(quote.ltp * (1 + sign * size) / tick) * tick)
                detail = f"{sign * size:+.1%}"
            case DataFault.DECIMAL_SHIFT:
                if rng.random() < 0.5:
                    bad.ltp, detail = quote.ltp * 10, "x10"
                else:
                    bad.ltp, detail = max(tick, quote.ltp // 10 // tick * tick), "/10"
            case DataFault.ZERO:
                bad.ltp = 0
            case DataFault.NEGATIVE:
                bad.ltp = -quote.ltp
            case DataFault.OFF_GRID:
                if tick < 2 or inst.is_index:
                    # A 1-unit grid has no in-between; an index is computed, it has no grid.
                    return None
                bad.ltp = quote.ltp + tick // 2
            case DataFault.OUT_OF_BAND:
                limit = quote.upper_circuit if quote.upper_circuit is not None else quote.high
                bad.ltp = limit + max(tick, round(limit * 0.03 / tick) * tick)
                bad.high = max(quote.high, quote.ltp)  # the day range does not admit it
            case DataFault.CROSSED:
                if inst.is_index:
                    return None
                bad.bid = quote.ask + tick * rng.randint(1, 3)
            case DataFault.STALE_REPEAT:
                previous = self._last.get((provider, quote.key))
                if previous is None:
                    return None
                bad = replace(previous)
                detail = f"repeat of seq {previous.seq}"
            case DataFault.OUT_OF_ORDER:
                previous = self._last.get((provider, quote.key))
                if previous is None:
                    return None
                back = rng.randint(1_000, 5_000)
                bad.exchange_ts = bad.ltt = previous.exchange_ts - back
                detail = f"-{back} ms"
            case DataFault.DUPLICATE:
                label = self._label(kind, provider, quote, quote, now, "sent twice")
                return [Emission(quote), Emission(replace(quote), label)]
            case DataFault.FALLING_VOLUME:
                if inst.is_index or quote.volume < 2:
                    return None
                bad.volume = quote.volume // 2
                detail = f"volume {quote.volume} -> {bad.volume}"
            case DataFault.DIVERGENCE:
                # A provider quoting off the market consistently: last, book and day range
                # all offset, so only another source can tell.
                size = rule.magnitude or 0.02

                def moved(price: int) -> int:
                    return max(tick, round(price * (1 + size) / tick) * tick)

                bad.ltp = moved(quote.ltp)
                bad.high, bad.low = moved(quote.high), moved(quote.low)
                if quote.bid and quote.ask:
                    bad.bid, bad.ask = moved(quote.bid), moved(quote.ask)
                detail = f"{size:+.1%}"
            case DataFault.LAG:
                delay = rule.magnitude or 2.0
                label = self._label(kind, provider, quote, quote, now, f"{delay:g} s late")
                if len(self._delayed) >= self.MAX_DELAYED:
                    return None
                emission = Emission(replace(quote), label, due=now + delay)
                heapq.heappush(self._delayed, _Delayed(emission.due, next(self._order), emission))
                return []
        label = self._label(kind, provider, quote, bad, now, detail)
        return [Emission(bad, label)]

    def _label(
        self, kind: str, provider: str, true: Quote, sent: Quote, now: float, detail: str
    ) -> FaultLabel:
        label = FaultLabel(
            id=next(self._ids),
            kind=str(kind),
            provider=provider,
            key=true.key,
            seq=true.seq,
            at_ns=int(now * 1e9),
            exchange_ts=sent.exchange_ts,
            true_ltp=true.ltp,
            sent_ltp=sent.ltp,
            detail=detail,
        )
        self._keep(label)
        return label

    def _keep(self, label: FaultLabel) -> None:
        self.labels.append(label)
        self.counts[label.kind] = self.counts.get(label.kind, 0) + 1
        if self._sink is not None:
            self._sink(label)

    def labels_for(self, kinds: Iterable[str] | None = None) -> list[FaultLabel]:
        wanted = None if kinds is None else set(kinds)
        return [label for label in self.labels if wanted is None or label.kind in wanted]
