"""One seeded market that both simulators quote.

Prices move as random walks on each instrument's tick grid, inside its circuit limits;
derivatives follow their underlying (futures at a small basis, options at intrinsic plus a
time value), so a chain moves together. Instruments tick as Poisson processes at a
configurable rate, with occasional bursts on a random subset. Everything is an integer at
the instrument's scale; a ``Quote`` is the current state of one instrument.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from feeds.providers.simulation.universe import SimInstrument, underlying_key
from feeds.providers.ticks import DepthLevel, ProviderName, Tick

SESSION_SECONDS = 22_500  # 09:15-15:30 IST

# Typical levels, so the samples look familiar; anything else gets a seeded price.
INDEX_LEVELS = {
    "NSE:NIFTY50": 24_000,
    "NSE:NIFTYBANK": 52_000,
    "NSE:NIFTYFINSERVICE": 23_000,
    "NSE:INDIAVIX": 14,
    "NSE:NIFTYIT": 38_000,
    "NSE:NIFTYNEXT50": 68_000,
    "NSE:NIFTYMIDCAP50": 16_000,
    "NSE:NIFTYAUTO": 23_000,
    "NSE:NIFTYPHARMA": 22_000,
    "NSE:NIFTYFMCG": 56_000,
    "NSE:NIFTYMETAL": 9_000,
    "BSE:SENSEX": 80_000,
    "BSE:BANKEX": 60_000,
    "BSE:BSE100": 25_000,
}


@dataclass(slots=True)
class Quote:
    """Current state of one instrument; prices are integers at ``instrument.scale``."""

    instrument: SimInstrument
    seq: int
    ltp: int
    prev_close: int
    open: int
    high: int
    low: int
    exchange_ts: int  # epoch ms
    ltt: int  # epoch ms
    ltq: int = 0
    volume: int = 0
    turnover: int = 0  # sum of price * qty, for the average traded price
    bid: int = 0
    ask: int = 0
    bid_qty: int = 0
    ask_qty: int = 0
    total_buy_qty: int = 0
    total_sell_qty: int = 0
    oi: int | None = None
    lower_circuit: int | None = None
    upper_circuit: int | None = None

    @property
    def key(self) -> str:
        return self.instrument.key

    @property
    def atp(self) -> int:
        return self.turnover // self.volume if self.volume else self.ltp

    def depth(self, levels: int) -> tuple[tuple[DepthLevel, ...], tuple[DepthLevel, ...]]:
        """Order-book levels around the best bid/ask, deterministic in (seq, level)."""
        if self.instrument.is_index:
            return (), ()
        tick, lot, seq = self.instrument.tick, self.instrument.lot_size, self.seq
        bids = tuple(
            DepthLevel(
                self.bid - i * tick,
                self.bid_qty if i == 0 else lot * (1 + (seq * 31 + i * 17) % 50),
                1 + (seq + i * 7) % 12,
            )
            for i in range(levels)
        )
        asks = tuple(
            DepthLevel(
                self.ask + i * tick,
                self.ask_qty if i == 0 else lot * (1 + (seq * 29 + i * 13) % 50),
                1 + (seq + i * 5) % 12,
            )
            for i in range(levels)
        )
        return bids, asks

    def to_tick(
        self, provider: ProviderName, symbol: str, *, recv_ns: int = 0, depth: int = 0
    ) -> Tick:
        """The tick a provider would send for this state (depth levels when asked)."""
        inst = self.instrument
        tick = Tick(
            provider=provider,
            symbol=symbol,
            ltp=self.ltp,
            scale=inst.scale,
            recv_ns=recv_ns,
            instrument=inst.key,
            exchange_ts=self.exchange_ts,
            open=self.open,
            high=self.high,
            low=self.low,
            prev_close=self.prev_close,
        )
        if inst.is_index:
            return tick
        tick.ltt, tick.ltq, tick.volume, tick.atp = self.ltt, self.ltq, self.volume, self.atp
        tick.bid, tick.ask, tick.bid_qty, tick.ask_qty = (
            self.bid,
            self.ask,
            self.bid_qty,
            self.ask_qty,
        )
        tick.total_buy_qty, tick.total_sell_qty = self.total_buy_qty, self.total_sell_qty
        tick.oi = self.oi
        tick.lower_circuit, tick.upper_circuit = self.lower_circuit, self.upper_circuit
        if depth:
            tick.bids, tick.asks = self.depth(depth)
        return tick


class MarketModel:
    """Seeded prices for a set of instruments; ``step()`` advances them to ``now``."""

    def __init__(
        self,
        instruments: Iterable[SimInstrument],
        *,
        seed: int = 0,
        ticks_per_second: float = 1.0,
        rates: Mapping[str, float] | None = None,
        daily_volatility: float = 0.02,
        burst_every: float = 30.0,
        burst_seconds: float = 2.0,
        burst_factor: float = 5.0,
        burst_share: float = 0.1,
        market_open: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.clock = clock
        self.market_open = market_open
        self.daily_volatility = daily_volatility
        self.burst_every, self.burst_seconds = burst_every, burst_seconds
        self.burst_factor, self.burst_share = burst_factor, burst_share
        self._burst_until = 0.0
        self._burst: list[Quote] = []
        self.quotes: dict[str, Quote] = {}
        self.rates: dict[str, float] = {}
        now = clock()
        ordered = sorted(instruments, key=lambda i: (i.instrument_type in ("FUT", "OPT"), i.key))
        for inst in ordered:  # underlyings first, so derivatives can price off them
            self.quotes[inst.key] = self._initial_quote(inst, now)
            self.rates[inst.key] = (rates or {}).get(inst.key, ticks_per_second)
        self._by_rate: dict[float, list[Quote]] = {}
        for key, quote in self.quotes.items():
            self._by_rate.setdefault(self.rates[key], []).append(quote)
        self._last_step = now
        self.ticks_total = 0

    # --- state ---------------------------------------------------------------------------

    def quote(self, key: str) -> Quote:
        return self.quotes[key]

    def set_rate(self, key: str, ticks_per_second: float) -> None:
        old = self.rates[key]
        quote = self.quotes[key]
        self._by_rate[old].remove(quote)
        if not self._by_rate[old]:
            del self._by_rate[old]
        self.rates[key] = ticks_per_second
        self._by_rate.setdefault(ticks_per_second, []).append(quote)

    # --- time ----------------------------------------------------------------------------

    def step(self, now: float | None = None) -> list[Quote]:
        """Advance to ``now``; return the quotes that ticked (each once, in tick order)."""
        now = self.clock() if now is None else now
        dt = max(0.0, min(now - self._last_step, 5.0))  # a stalled caller does not flood
        self._last_step = now
        if not self.market_open or dt == 0:
            return []
        chosen: dict[str, Quote] = {}
        for rate, quotes in self._by_rate.items():
            for quote in self._sample(quotes, rate * dt):
                chosen[quote.key] = quote
        if now >= self._burst_until and self.rng.random() < dt / self.burst_every:
            count = max(1, int(len(self.quotes) * self.burst_share))
            self._burst = self.rng.sample(list(self.quotes.values()), count)
            self._burst_until = now + self.burst_seconds
        if now < self._burst_until and self._burst:
            mean_rate = sum(self.rates[q.key] for q in self._burst) / len(self._burst)
            for quote in self._sample(self._burst, mean_rate * (self.burst_factor - 1) * dt):
                chosen[quote.key] = quote
        ts = int(now * 1000)
        for quote in chosen.values():
            self._trade(quote, ts)
        self.ticks_total += len(chosen)
        return list(chosen.values())

    def _sample(self, quotes: list[Quote], per_quote: float) -> list[Quote]:
        if not quotes or per_quote <= 0:
            return []
        count = min(len(quotes), self._poisson(per_quote * len(quotes)))
        return self.rng.sample(quotes, count)

    def _poisson(self, mean: float) -> int:
        if mean > 30:
            return max(0, round(self.rng.gauss(mean, math.sqrt(mean))))
        limit, product, count = math.exp(-mean), self.rng.random(), 0
        while product > limit:
            product *= self.rng.random()
            count += 1
        return count

    # --- price dynamics ------------------------------------------------------------------

    def _initial_quote(self, inst: SimInstrument, now: float) -> Quote:
        rng = random.Random(f"{self.seed}:{inst.key}")
        scale_factor = 10**inst.scale
        tick = inst.tick
        if inst.is_index:
            base = INDEX_LEVELS.get(inst.key, rng.choice([5_000, 10_000, 20_000])) * scale_factor
        elif inst.instrument_type in ("FUT", "OPT"):
            base = self._theoretical(inst, rng) or rng.randint(50, 500) * scale_factor
        else:
            # NSE's tick table: 1 paisa below ₹250, 5 paise above (the masters say which).
            low, high = (20, 249) if inst.tick_size < Decimal("0.05") else (250, 5_000)
            base = int(math.exp(rng.uniform(math.log(low), math.log(high))) * scale_factor)
        prev_close = max(tick, base // tick * tick)
        ltp = self._on_grid(inst, prev_close * (1 + rng.uniform(-0.01, 0.01)))
        ts = int(now * 1000)
        quote = Quote(
            instrument=inst,
            seq=0,
            ltp=ltp,
            prev_close=prev_close,
            open=ltp,
            high=ltp,
            low=ltp,
            exchange_ts=ts,
            ltt=ts,
        )
        if inst.instrument_type == "EQ":
            band = rng.choice([0.05, 0.1, 0.2])
            quote.lower_circuit = self._on_grid(inst, prev_close * (1 - band))
            quote.upper_circuit = self._on_grid(inst, prev_close * (1 + band))
        elif inst.instrument_type == "FUT":
            quote.lower_circuit = self._on_grid(inst, prev_close * 0.9)
            quote.upper_circuit = self._on_grid(inst, prev_close * 1.1)
        if inst.instrument_type in ("FUT", "OPT"):
            quote.oi = inst.lot_size * rng.randint(1_000, 60_000)
        self._quote_book(quote, rng)
        return quote

    def _theoretical(self, inst: SimInstrument, rng: random.Random) -> int | None:
        """A derivative's fair price from its underlying's current price, if listed."""
        underlying = self.quotes.get(underlying_key(inst))
        if underlying is None:
            return None
        spot = underlying.ltp * 10**inst.scale // 10**underlying.instrument.scale
        if inst.instrument_type == "FUT":
            return int(spot * 1.004)
        strike = int((inst.strike or Decimal(0)).scaleb(inst.scale))
        intrinsic = max(0, spot - strike) if inst.option_type == "CE" else max(0, strike - spot)
        width = spot * 0.03
        time_value = spot * 0.008 * math.exp(-(((spot - strike) / width) ** 2)) + 5 * inst.tick
        return int(intrinsic + time_value * (1 + rng.uniform(-0.02, 0.02)))

    def _on_grid(self, inst: SimInstrument, price: float) -> int:
        tick = inst.tick
        return max(tick, round(price / tick) * tick)

    def _trade(self, quote: Quote, ts: int) -> None:
        inst = quote.instrument
        rng = self.rng
        if inst.instrument_type in ("FUT", "OPT"):
            fair = self._theoretical(inst, rng)
            price = self._on_grid(inst, fair) if fair is not None else self._walk(quote)
        else:
            price = self._walk(quote)
        if quote.lower_circuit is not None and quote.upper_circuit is not None:
            price = min(max(price, quote.lower_circuit), quote.upper_circuit)
        quote.seq += 1
        quote.ltp = price
        quote.high = max(quote.high, price)
        quote.low = min(quote.low, price)
        quote.exchange_ts = quote.ltt = ts
        if not inst.is_index:
            qty = inst.lot_size * rng.choice((1, 1, 1, 2, 3, 5, 10, 25))
            quote.ltq = qty
            quote.volume += qty
            quote.turnover += price * qty
            if quote.oi is not None and rng.random() < 0.3:
                quote.oi = max(inst.lot_size, quote.oi + inst.lot_size * rng.randint(-20, 20))
            self._quote_book(quote, rng)

    def _walk(self, quote: Quote) -> int:
        inst = quote.instrument
        per_tick = self.daily_volatility / math.sqrt(
            max(1.0, self.rates.get(inst.key, 1.0)) * SESSION_SECONDS
        )
        sigma = max(0.6, quote.ltp * per_tick / inst.tick)
        return max(inst.tick, quote.ltp + round(self.rng.gauss(0, sigma)) * inst.tick)

    def _quote_book(self, quote: Quote, rng: random.Random) -> None:
        """Best bid/ask around the last price: never crossed, sometimes locked at ltp."""
        inst = quote.instrument
        if inst.is_index:
            return
        tick, lot = inst.tick, inst.lot_size
        quote.bid = max(tick, quote.ltp - tick * rng.choice((0, 1, 1, 2)))
        quote.ask = max(quote.bid + tick, quote.ltp + tick * rng.choice((0, 1, 1, 2)))
        quote.bid_qty = lot * rng.randint(1, 200)
        quote.ask_qty = lot * rng.randint(1, 200)
        quote.total_buy_qty = quote.bid_qty * rng.randint(20, 80)
        quote.total_sell_qty = quote.ask_qty * rng.randint(20, 80)
