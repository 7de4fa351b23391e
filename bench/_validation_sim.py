"""The simulated market of ``validation_accuracy.py``: universe, wire pipes and fault plan.

* ``choose_universe``: instruments from the shipped sample masters (no database), all carried
  by both providers, with a tick rate each.
* ``FyersPipe`` / ``UpstoxPipe``: one provider's server encoding and client decoding, in
  process, without sockets. FYERS: ``sf``/``if`` topics in full mode (the hub's default
  ``quote`` data mode), ``U`` packets from ``server_codec.values_from_tick`` in frames of at
  most 500 packets, decoded by ``FyersDecoder``. Upstox: ``full`` feeds from
  ``server_codec.feed_message`` in one ``FeedResponse`` per step, decoded by
  ``UpstoxDecoder``. Both mirror the simulators' ``on_step``; the one difference is that an
  Upstox frame never carries one key twice (a protobuf map keeps only the last entry, so the
  simulator would silently merge a duplicate, or a released lagged tick, with the fresh
  one): a repeated key starts a new frame, as a real resend would.
* ``FaultPlan``: the labelled fault rules, 1/13 of the fault rate per kind.
"""

from __future__ import annotations

import gc
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from feeds.providers.fyers import server_codec as fyers_sc
from feeds.providers.fyers.codec import FyersDecoder
from feeds.providers.fyers.simulator import PACKETS_PER_FRAME
from feeds.providers.fyers.symbols import segment_of, topic_for
from feeds.providers.simulation.faults import DataFault, Emission, FaultInjector, FaultRule
from feeds.providers.simulation.market import MarketModel
from feeds.providers.simulation.run import universe_from_masters
from feeds.providers.simulation.universe import SimInstrument, underlying_key
from feeds.providers.ticks import ProviderName, Tick
from feeds.providers.upstox import server_codec as upstox_sc
from feeds.providers.upstox.codec import UpstoxDecoder

Frames = list[tuple[bytes, list[Emission]]]  # each frame with the emissions it carries
STEP_NS = 50_000_000  # the simulators' market clock: one step every 50 ms

# Ticks per second per instrument: indices about once a second as NSE computes them, front
# derivatives busier, equities from illiquid to busy (weights of the choices below).
INDEX_RATE, FUT_RATE, OPT_RATE = 1.0, 2.0, 1.0
EQ_RATES = (0.25, 0.5, 1.0, 2.0, 4.0)
EQ_WEIGHTS = (0.20, 0.25, 0.30, 0.15, 0.10)
OPTION_SHARE = 0.15  # of the instruments, at most the sample's 268 options


class VirtualClock:
    """Integer nanoseconds; ``clock()`` gives epoch seconds (``MarketModel``,
    ``FaultInjector``), ``ns()`` the receipt time (decoders, validator)."""

    __slots__ = ("now_ns",)

    def __init__(self, start_ns: int) -> None:
        self.now_ns = start_ns

    def __call__(self) -> float:
        return self.now_ns / 1e9

    def ns(self) -> int:
        return self.now_ns

    def advance(self, ns: int = STEP_NS) -> None:
        self.now_ns += ns


class GcTimer:
    """Time the garbage collector takes, so that a timed section can report its own work
    apart from the collections that happened to start inside it (they are triggered by
    whoever allocates at the moment, mostly the decoders, and pay for every live object)."""

    def __init__(self) -> None:
        self.ns = 0
        self.collections = [0, 0, 0]
        self._start = 0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter_ns()
        else:
            self.ns += time.perf_counter_ns() - self._start
            self.collections[info["generation"]] += 1

    def close(self) -> None:
        gc.callbacks.remove(self._callback)


# --- universe -------------------------------------------------------------------------------


def _carried_by_both(inst: SimInstrument) -> bool:
    return bool(inst.fyers_symbol and inst.fytoken and segment_of(inst.fytoken) and inst.upstox_key)


def choose_universe(total: int, seed: int) -> tuple[list[SimInstrument], dict[str, float]]:
    """``total`` instruments listed by both providers: every index and future, options up
    to ``OPTION_SHARE``, equities for the rest (derivatives' underlyings always among them);
    and a seeded tick rate per instrument."""
    rng = random.Random(f"universe:{seed}")
    linked = sorted(filter(_carried_by_both, universe_from_masters()), key=lambda i: i.key)
    by_type: dict[str, list[SimInstrument]] = {}
    for inst in linked:
        by_type.setdefault(inst.instrument_type, []).append(inst)
    indices, futures = by_type.get("INDEX", []), by_type.get("FUT", [])
    options = by_type.get("OPT", [])
    options = sorted(rng.sample(options, min(len(options), int(total * OPTION_SHARE))),
                     key=lambda i: i.key)  # fmt: skip
    equities = by_type.get("EQ", [])
    underlyings = {underlying_key(i) for i in futures + options}
    must = [e for e in equities if e.key in underlyings]
    rest = [e for e in equities if e.key not in underlyings]
    room = max(0, total - len(indices) - len(futures) - len(options) - len(must))
    chosen_eq = sorted(must + rng.sample(rest, min(room, len(rest))), key=lambda i: i.key)
    universe = indices + chosen_eq + futures + options
    rates: dict[str, float] = {}
    for inst in universe:
        if inst.instrument_type == "INDEX":
            rates[inst.key] = INDEX_RATE
        elif inst.instrument_type == "FUT":
            rates[inst.key] = FUT_RATE
        elif inst.instrument_type == "OPT":
            rates[inst.key] = OPT_RATE
        else:
            rates[inst.key] = rng.choices(EQ_RATES, EQ_WEIGHTS)[0]
    return universe, rates


def describe_universe(universe: Sequence[SimInstrument], rates: dict[str, float]) -> str:
    kinds = Counter(i.instrument_type for i in universe)
    per_second = Counter()
    for inst in universe:
        per_second[inst.instrument_type] += rates[inst.key]
    grids = Counter(f"{inst.tick_size}" for inst in universe if inst.instrument_type == "EQ")
    eq_rates = Counter(rates[i.key] for i in universe if i.instrument_type == "EQ")
    parts = [f"{kinds[t]} {t} ({per_second[t]:.0f} ticks/s)" for t in ("INDEX", "EQ", "FUT", "OPT")]
    return (
        f"{len(universe)} instruments, all carried by both providers: {', '.join(parts)}; "
        f"{sum(rates.values()):.0f} ticks/s in all before bursts. Equity tick sizes: "
        + ", ".join(f"{n} at {g}" for g, n in sorted(grids.items()))
        + "; equity rates (ticks/s: count): "
        + ", ".join(f"{r:g}: {n}" for r, n in sorted(eq_rates.items()))
    )


# --- the wire -------------------------------------------------------------------------------


class Pipe:
    """One provider: emissions -> the server's frames -> the client's decoder -> Ticks."""

    provider: ProviderName
    name: str

    def __init__(
        self, universe: Sequence[SimInstrument], recv_clock: Callable[[], int], gc_timer: GcTimer
    ) -> None:
        self.key_of: dict[str, str] = {}  # the provider's symbol -> canonical key
        self.gc_timer = gc_timer
        self.decode_ns = 0  # client-side: decoder.feed plus the symbol -> key mapping
        self.decode_gc_ns = 0  # garbage collections that ran inside it
        self.ticks = 0
        self.frames = 0
        self.undeliverable = 0  # emissions the server could not encode (int32 overflow)

    def symbol(self, inst: SimInstrument) -> str:
        raise NotImplementedError

    def snapshot(self, model: MarketModel, now_ms: int) -> Frames:
        raise NotImplementedError

    def encode(self, emissions: Iterable[Emission], now_ms: int) -> Frames:
        """Frames, each with the emissions it carries (in order); emissions that cannot be
        encoded are counted in ``undeliverable`` and returned nowhere."""
        raise NotImplementedError

    def _feed(self, frame: bytes) -> list[Tick]:
        raise NotImplementedError

    def decode(self, frame: bytes) -> list[Tick]:
        """The client's work on one frame, timed: decode, then name each tick's instrument
        (what ``FeedClient._deliver`` does before the worker's hook)."""
        gc_before = self.gc_timer.ns
        start = time.perf_counter_ns()
        ticks = self._feed(frame)
        key_of, name = self.key_of, self.name
        for tick in ticks:
            tick.instrument = key_of.get(tick.symbol, "")
            tick.connection = name
        self.decode_ns += time.perf_counter_ns() - start
        self.decode_gc_ns += self.gc_timer.ns - gc_before
        self.ticks += len(ticks)
        self.frames += 1
        return ticks


class FyersPipe(Pipe):
    provider = ProviderName.FYERS
    name = "fyers:bench"

    def __init__(
        self, universe: Sequence[SimInstrument], recv_clock: Callable[[], int], gc_timer: GcTimer
    ) -> None:
        super().__init__(universe, recv_clock, gc_timer)
        self.decoder = FyersDecoder(recv_clock=recv_clock)
        self.topics: dict[str, tuple[int, str, str]] = {}  # key -> (topic id, topic, kind)
        expected = {}
        for topic_id, inst in enumerate(universe, start=1):
            topic = topic_for(symbol=inst.fyers_symbol, fytoken=inst.fytoken, kind="SymbolUpdate")
            self.topics[inst.key] = (topic_id, topic, topic[:2])
            self.key_of[inst.fyers_symbol] = inst.key
            expected[topic] = inst.fyers_symbol
        self.decoder.expect(expected)  # the client subscribes before the snapshots arrive
        self.message = 0

    def symbol(self, inst: SimInstrument) -> str:
        return inst.fyers_symbol

    def _frames(self, packets: list[bytes], groups: list[Emission]) -> Frames:
        out = []
        for start in range(0, len(packets), PACKETS_PER_FRAME):
            self.message += 1
            frame = fyers_sc.encode_data_frame(
                self.message, packets[start : start + PACKETS_PER_FRAME]
            )
            out.append((frame, groups[start : start + PACKETS_PER_FRAME]))
        return out

    def snapshot(self, model: MarketModel, now_ms: int) -> Frames:
        packets, sent = [], []
        for key, (topic_id, topic, kind) in self.topics.items():
            quote = model.quote(key)
            inst = quote.instrument
            tick = quote.to_tick(self.provider, inst.fyers_symbol)
            values = fyers_sc.values_from_tick(tick, kind)
            packets.append(
                fyers_sc.snapshot_packet(topic_id, topic, values, precision=tick.scale,
                                         exchange=inst.exchange, token=inst.fytoken[10:])
            )  # fmt: skip
            sent.append(Emission(quote))
        return self._frames(packets, sent)

    def encode(self, emissions: Iterable[Emission], now_ms: int) -> Frames:
        packets, sent = [], []
        for emission in emissions:
            quote = emission.quote
            topic_id, _, kind = self.topics[quote.key]
            tick = quote.to_tick(self.provider, quote.instrument.fyers_symbol)
            try:
                values = fyers_sc.values_from_tick(tick, kind)
            except ValueError:  # the simulator skips what int32 cannot carry
                self.undeliverable += 1
                continue
            packets.append(fyers_sc.update_packet(topic_id, values))
            sent.append(emission)
        return self._frames(packets, sent)

    def _feed(self, frame: bytes) -> list[Tick]:
        ticks: list[Tick] = []
        for event in self.decoder.feed(frame):
            ticks.extend(getattr(event, "ticks", ()))
        return ticks


class UpstoxPipe(Pipe):
    provider = ProviderName.UPSTOX
    name = "upstox:bench"
    MODE = "full"  # the hub's "quote" data mode

    def __init__(
        self, universe: Sequence[SimInstrument], recv_clock: Callable[[], int], gc_timer: GcTimer
    ) -> None:
        super().__init__(universe, recv_clock, gc_timer)
        self.decoder = UpstoxDecoder(recv_clock=recv_clock)
        self.index_keys = {i.upstox_key for i in universe if i.is_index}
        for inst in universe:
            self.key_of[inst.upstox_key] = inst.key

    def symbol(self, inst: SimInstrument) -> str:
        return inst.upstox_key

    def _frame(self, entries: list[tuple[str, object]], now_ms: int) -> bytes:
        return upstox_sc.encode_feed_messages(feeds=entries, kind="live", current_ts=now_ms)  # type: ignore[arg-type]

    def snapshot(self, model: MarketModel, now_ms: int) -> Frames:
        quotes = [model.quote(inst_key) for inst_key in self.key_of.values()]
        return self.encode([Emission(q) for q in quotes], now_ms)

    def encode(self, emissions: Iterable[Emission], now_ms: int) -> Frames:
        out: Frames = []
        entries: list[tuple[str, object]] = []
        group: list[Emission] = []
        keys: set[str] = set()
        for emission in emissions:
            quote = emission.quote
            key = quote.instrument.upstox_key
            if key in keys:  # a map carries a key once: this one goes in the next frame
                out.append((self._frame(entries, now_ms), group))
                entries, group, keys = [], [], set()
            tick = quote.to_tick(self.provider, key, depth=5)
            feed = upstox_sc.feed_message(
                tick, self.MODE, index=key in self.index_keys, current_ts=now_ms
            )
            entries.append((key, feed))
            group.append(emission)
            keys.add(key)
        if entries:
            out.append((self._frame(entries, now_ms), group))
        return out

    def _feed(self, frame: bytes) -> list[Tick]:
        ticks: list[Tick] = []
        for event in self.decoder.feed(frame):
            ticks.extend(getattr(event, "ticks", ()))
        return ticks


# --- faults ---------------------------------------------------------------------------------

PER_TICK_KINDS = (
    DataFault.SPIKE, DataFault.DECIMAL_SHIFT, DataFault.ZERO, DataFault.NEGATIVE,
    DataFault.OFF_GRID, DataFault.OUT_OF_BAND, DataFault.CROSSED, DataFault.STALE_REPEAT,
    DataFault.OUT_OF_ORDER, DataFault.DUPLICATE, DataFault.FALLING_VOLUME,
)  # fmt: skip
WINDOW_KINDS = (DataFault.DIVERGENCE, DataFault.LAG)
ALL_KINDS = PER_TICK_KINDS + WINDOW_KINDS

WINDOW_KEYS = 3  # instruments per divergence / lag window
WINDOW_SECONDS = (5.0, 15.0)
WINDOWS_AT_ONCE = 2  # per kind
DIVERGENCE_SIZE = (0.02, 0.05)  # either sign: beyond the 1 % threshold, inside a day's range
LAG_SECONDS = (2.0, 5.0)
MAX_LAG = LAG_SECONDS[1]


def _applicable(kind: DataFault, inst: SimInstrument) -> bool:
    """Where the injector can apply ``kind`` (it skips the rest without a label)."""
    if kind is DataFault.OFF_GRID:
        return not inst.is_index and inst.tick >= 2
    if kind in (DataFault.CROSSED, DataFault.FALLING_VOLUME):
        return not inst.is_index
    return True


class FaultPlan:
    """Per-tick rules at ``rate / 13`` of the ticks each (scaled up to the share of ticks an
    inapplicable kind can reach), and divergence / lag windows renewed as virtual time goes
    so that each gets about as many labels."""

    def __init__(
        self,
        injector: FaultInjector,
        universe: Sequence[SimInstrument],
        rates: dict[str, float],
        fault_rate: float,
        seed: int,
    ) -> None:
        self.injector = injector
        self.rng = random.Random(f"windows:{seed}")
        self.per_kind = fault_rate / len(ALL_KINDS)
        self.offered = 0  # provider ticks offered to the injector so far
        self.windows = 0
        self._mine: list[FaultRule] = []
        self._keys = [i.key for i in universe]
        total = sum(rates.values())
        for kind in PER_TICK_KINDS:
            keys = [i.key for i in universe if _applicable(kind, i)]
            share = sum(rates[k] for k in keys) / total
            whole = len(keys) == len(universe)
            injector.add(
                FaultRule(kind=kind, keys=None if whole else frozenset(keys),
                          rate=min(1.0, self.per_kind / share))
            )  # fmt: skip

    def renew(self, now: float) -> None:
        """Start a divergence or lag window where that kind is behind its share."""
        self._mine = [r for r in self._mine if r.expires_at is None or r.expires_at > now]
        target = self.per_kind * self.offered
        for kind in WINDOW_KINDS:
            active = sum(1 for r in self._mine if r.kind is kind)
            if active >= WINDOWS_AT_ONCE or self.injector.counts.get(kind, 0) >= target:
                continue
            rng = self.rng
            if kind is DataFault.DIVERGENCE:
                magnitude = rng.choice((-1, 1)) * rng.uniform(*DIVERGENCE_SIZE)
            else:
                magnitude = rng.uniform(*LAG_SECONDS)
            rule = FaultRule(
                kind=kind,
                provider=rng.choice(("fyers", "upstox")),
                keys=frozenset(rng.sample(self._keys, WINDOW_KEYS)),
                rate=1.0,
                magnitude=magnitude,
                seconds=rng.uniform(*WINDOW_SECONDS),
            )
            self._mine.append(self.injector.add(rule))
            self.windows += 1
