"""Tier 1: constant-time checks inline on every tick, in the socket's read loop.

One ``Series`` per provider symbol holds what the checks need: the last exchange time and
cumulative volume, the last tick's fingerprint (duplicates), the last *good* price and a
running average of its moves (jumps). A tick that fails a price check never becomes the last
good price, so one bad print cannot drag the reference along.

Jumps: a move larger than ``max(floor * price, min_ticks * tick, n_sigma * mean move)`` is
flagged and remembered as pending. If the next tick confirms the new level (it lies within
the same bound of the pending price, not of the old one), the level is accepted: a genuine
10 % move is flagged once, on its first tick, never twice; tier 3 (and the REST re-check) may
clear that first flag later. A price exactly at a circuit limit is exempt: stocks do lock
there in one print, and the circuit check already bounds it.

Pre-open (09:00-09:15 on NSE/BSE cash): the indicative equilibrium price may sit anywhere in
the band and the book is not matched, so jumps and crossed books are not flagged; the last
pre-open price becomes the reference for the open.

No Django and no I/O: the worker calls ``check`` with each tick; budget a few microseconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from feeds.providers.ticks import Tick
from validation.checks import PRICE_CHECKS, Check, ValidationTier
from validation.sessions import Phase, SessionCalendar
from validation.ticksize import reference_tick, tick_grid

_NOT_POSITIVE = int(Check.NOT_POSITIVE)
_OFF_GRID = int(Check.OFF_TICK_GRID)
_CIRCUIT = int(Check.OUTSIDE_CIRCUIT)
_RANGE = int(Check.OUTSIDE_DAY_RANGE)
_CROSSED = int(Check.CROSSED_BOOK)
_TIME = int(Check.TIME_BACKWARDS)
_VOLUME = int(Check.VOLUME_BACKWARDS)
_DUPLICATE = int(Check.DUPLICATE)
_JUMP = int(Check.JUMP)
# What keeps a tick from moving the reference price: a wrong price, or a tick that is no news.
_NOT_NEWS = int(PRICE_CHECKS) | _TIME | _DUPLICATE | _VOLUME

_IST_MS = 19_800_000
_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    """What validation needs to know of an instrument (from ``feeds.models.Instrument``)."""

    key: str
    instrument_type: str = "EQ"  # EQ / INDEX / FUT / OPT
    exchange: str = "NSE"
    segment: str = "CM"
    tick_size: Decimal | None = None  # the master's: authoritative for the day
    tier: ValidationTier = ValidationTier.CROSS
    discrepancy_bps: float | None = None  # None: the configured default
    underlying_is_index: bool = False


@dataclass(frozen=True, slots=True)
class Tier1Config:
    # Smallest move flagged as a jump, as a share of the price, per instrument type. Options
    # are leveraged and move several per cent on an ordinary underlying tick.
    jump_floor: Mapping[str, float] = field(
        default_factory=lambda: {"INDEX": 0.015, "EQ": 0.03, "FUT": 0.03, "OPT": 0.06}
    )
    jump_min_ticks: int = 3  # never flag a move of this many ticks or fewer
    jump_n_sigma: float = 8.0  # times the running mean absolute move
    jump_alpha: float = 0.05  # weight of the newest move in that mean
    stale_after: Mapping[int, float] = field(
        default_factory=lambda: {ValidationTier.FAST: 30.0, ValidationTier.CROSS: 60.0,
                                 ValidationTier.DEEP: 30.0}
    )  # fmt: skip
    phase_every_ms: int = 1_000  # a series re-reads its session phase this often


class Series:
    """Tier-1 state of one provider symbol."""

    __slots__ = (
        "confirmed_jumps",
        "day",
        "ewma",
        "exchange",
        "flagged",
        "floor",
        "good",
        "grid",
        "key",
        "last_recv_ns",
        "last_ts",
        "last_volume",
        "pending",
        "phase",
        "phase_ts",
        "provider",
        "scale",
        "segment",
        "sig",
        "spec",
        "stale_since",
        "ticks",
    )  # fmt: skip

    def __init__(self, key: str, provider: str, spec: InstrumentSpec, scale: int) -> None:
        self.key = key
        self.provider = provider
        self.spec = spec
        self.scale = scale
        self.grid: int | None = None
        self.floor = 0.03
        self.exchange = spec.exchange
        self.segment = spec.segment
        self.last_ts = -1
        self.last_volume = -1
        self.sig: tuple | None = None
        self.good: int | None = None
        self.ewma = 0.0
        self.pending: int | None = None
        self.day = -1
        self.phase = Phase.OPEN
        self.phase_ts = -(10**15)
        self.last_recv_ns = 0
        self.ticks = 0
        self.flagged = 0
        self.confirmed_jumps = 0
        self.stale_since: int | None = None  # recv time of the last tick when reported stale


class Tier1:
    def __init__(
        self,
        *,
        specs: Mapping[str, InstrumentSpec] | None = None,
        calendar: SessionCalendar | None = None,
        config: Tier1Config | None = None,
    ) -> None:
        self.config = config or Tier1Config()
        self.calendar = calendar or SessionCalendar(always_open=True)
        self.specs: dict[str, InstrumentSpec] = dict(specs or {})
        self.series: dict[str, Series] = {}  # by the provider's own symbol: unique across them
        self.unchecked = 0  # ticks of symbols with no canonical key

    def set_specs(self, specs: Mapping[str, InstrumentSpec]) -> None:
        """New instrument facts (an admin edit, a reload): series pick them up at once."""
        self.specs = dict(specs)
        for symbol, series in list(self.series.items()):
            spec = self.specs.get(series.key)
            if spec is None:
                del self.series[symbol]  # no longer carried: bounded by what the pool carries
            elif spec != series.spec:
                series.spec = spec
                self._configure(series, None)

    def _configure(self, s: Series, reference: int | None) -> None:
        spec = s.spec
        s.exchange, s.segment = spec.exchange, spec.segment
        s.floor = self.config.jump_floor.get(spec.instrument_type, 0.03)
        tick_size = spec.tick_size
        if not tick_size and reference:
            # No master tick: the band of the reference price (the previous close).
            tick_size = reference_tick(
                master_tick=None,
                instrument_type=spec.instrument_type,
                reference_price=Decimal(reference).scaleb(-s.scale),
                underlying_is_index=spec.underlying_is_index,
            )
        # An index value is computed, not traded: it has no tick grid (whatever the masters
        # print for it).
        index = spec.instrument_type == "INDEX"
        s.grid = tick_grid(tick_size=tick_size, scale=s.scale) if tick_size and not index else None

    def _series(self, tick: Tick) -> Series:
        spec = self.specs.get(tick.instrument)
        if spec is None:
            spec = InstrumentSpec(key=tick.instrument)  # checked with defaults, not skipped
        s = Series(tick.instrument, str(tick.provider), spec, tick.scale)
        self._configure(s, tick.prev_close)
        self.series[tick.symbol] = s
        return s

    def check(self, tick: Tick) -> int:
        """Run every tier-1 check on ``tick``; the failed ones are or-ed into ``tick.flags``
        and returned (0: clean)."""
        if not tick.instrument:
            self.unchecked += 1
            return 0
        s = self.series.get(tick.symbol)
        if s is None or s.scale != tick.scale:
            s = self._series(tick)
        s.ticks += 1
        s.last_recv_ns = tick.recv_ns
        s.stale_since = None
        flags = 0
        ltp = tick.ltp
        ts = tick.exchange_ts
        if ts is None:
            ts = tick.recv_ns // 1_000_000

        # New trading day: times, volumes and fingerprints start over.
        day = (ts + _IST_MS) // _DAY_MS
        if day > s.day:
            if s.day != -1:
                s.last_ts, s.last_volume, s.sig, s.pending = -1, -1, None, None
            s.day = day
        if ts - s.phase_ts >= self.config.phase_every_ms or ts < s.phase_ts:
            s.phase = self.calendar.phase(exchange=s.exchange, segment=s.segment, ts_ms=ts)
            s.phase_ts = ts
        pre_open = s.phase is Phase.PRE_OPEN

        # Prices.
        if ltp <= 0:
            flags |= _NOT_POSITIVE
        grid = s.grid
        if grid is not None and ltp % grid:
            flags |= _OFF_GRID
        lower, upper = tick.lower_circuit, tick.upper_circuit
        at_circuit = False
        if lower and upper:
            if ltp < lower or ltp > upper:
                flags |= _CIRCUIT
            else:
                at_circuit = ltp in (lower, upper)
        low, high = tick.low, tick.high
        if low and high and (ltp < low or ltp > high):
            flags |= _RANGE
        bid, ask = tick.bid, tick.ask
        if bid and ask:
            if bid > ask and not pre_open:
                flags |= _CROSSED
            if grid is not None and (bid % grid or ask % grid):
                flags |= _OFF_GRID

        # Order and repeats.
        if ts < s.last_ts:
            flags |= _TIME
        volume = tick.volume
        if volume is not None and volume < s.last_volume:
            flags |= _VOLUME
        ltq = tick.ltq
        sig = (ltp, tick.exchange_ts, volume, ltq, bid, ask)
        # Only a fingerprint with a traded quantity in it tells a repeat from a new print
        # at an unchanged price: an index value often repeats itself genuinely.
        if sig == s.sig and (volume is not None or ltq is not None):
            flags |= _DUPLICATE
        s.sig = sig

        # Jumps against the last good price.
        good = s.good
        if not flags and good is not None and not pre_open and not at_circuit:
            config = self.config
            move = abs(ltp - good)
            floor_ticks = config.jump_min_ticks * (grid or 1)
            sigma = config.jump_n_sigma * s.ewma
            limit = max(s.floor * good, floor_ticks, sigma)
            if move > limit:
                pending = s.pending
                if pending is not None and abs(ltp - pending) <= max(
                    s.floor * pending, floor_ticks, sigma
                ):
                    s.confirmed_jumps += 1  # the second tick at the new level: accept it
                    s.pending = None
                    s.good = ltp
                else:
                    flags |= _JUMP
                    s.pending = ltp
            else:
                s.ewma += config.jump_alpha * (move - s.ewma)
                s.good = ltp
                s.pending = None
        elif not flags & _NOT_NEWS:
            s.good = ltp  # the first price, or a pre-open / at-circuit one
            s.pending = None

        if not flags & (_TIME | _DUPLICATE):
            s.last_ts = ts
        if volume is not None and not flags & (_VOLUME | _DUPLICATE):
            s.last_volume = volume
        if flags:
            s.flagged += 1
            tick.flags |= flags
        return flags

    def last_good(self, symbol: str) -> int | None:
        s = self.series.get(symbol)
        return None if s is None else s.good

    def stale(self, *, now_ns: int) -> Iterator[tuple[Series, float]]:
        """Series silent past their tier's bound while their market expects ticks, each once
        per silence (a new tick re-arms it), with the seconds of silence."""
        bounds = self.config.stale_after
        now_ms = now_ns // 1_000_000
        for s in self.series.values():
            if s.stale_since is not None or not s.last_recv_ns:
                continue
            silent = (now_ns - s.last_recv_ns) / 1e9
            if silent <= bounds.get(s.spec.tier, 60.0):
                continue
            if self.calendar.expects_ticks(exchange=s.exchange, segment=s.segment, ts_ms=now_ms):
                s.stale_since = s.last_recv_ns
                yield s, silent
