"""Scoring for ``validation_accuracy.py``: ground truth per delivered tick, final flags, tables.

Each delivered tick is matched to the emission it came from (by symbol, in order) and so to
its ``FaultLabel``, or to none: clean. A labelled tick is *visible* when a client can tell
it from the clean one: the price changed (spike, decimal shift, zero, negative, off-grid,
out-of-band, divergence), the book crossed, the time went back, the volume fell, or it was
delivered at all (stale repeat, duplicate, lag). Invisible ones are left out of recall and
precision and counted apart.

A tick's flags are final once the validator holds no reference to it any more (its tier-3
filter has given the late verdict, or the tick never entered one): ``settle`` counts each
tick then, so memory stays bounded by the filters' windows instead of holding every tick.
"""

from __future__ import annotations

import sys
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from feeds.providers.simulation.faults import DataFault, Emission, FaultLabel
from feeds.providers.simulation.universe import SimInstrument
from feeds.providers.ticks import ProviderName, Tick, rescale
from validation.checks import Check, check_names, check_tier

PROVIDERS = ("fyers", "upstox")
NEAR_NS = 10_000_000_000  # a clean tick this soon after a fault on its instrument is "near"
_PRICE_KINDS = frozenset({
    DataFault.SPIKE, DataFault.DECIMAL_SHIFT, DataFault.ZERO, DataFault.NEGATIVE,
    DataFault.OFF_GRID, DataFault.OUT_OF_BAND, DataFault.DIVERGENCE,
})  # fmt: skip
_TIERS: dict[int, int] = {}


def lowest_tier(flags: int) -> int:
    """The lowest tier among the checks set in ``flags`` (0 for none)."""
    tier = _TIERS.get(flags)
    if tier is None:
        tier = _TIERS[flags] = min((check_tier(c) for c in Check if flags & c), default=0)
    return tier


def tiers_of(flags: int) -> set[int]:
    return {check_tier(c) for c in Check if flags & c}


def _refcount_base() -> int:
    """``sys.getrefcount`` of a tick held only by a pending record (see ``settle``)."""
    pending = deque([(Tick.bare(ProviderName.FYERS, "", 0, 2, 0), -1)])
    return sys.getrefcount(pending[0][0])


@dataclass(slots=True)
class KindTally:
    injected: Counter[str] = field(default_factory=Counter)  # per provider
    delivered: Counter[str] = field(default_factory=Counter)
    visible: Counter[str] = field(default_factory=Counter)
    detected: Counter[str] = field(default_factory=Counter)
    by_tier: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # lowest tier
    checks: Counter[str] = field(default_factory=Counter)  # checks set on detected ticks
    missed: Counter[str] = field(default_factory=Counter)  # instrument types of misses
    flagged_invisible: int = 0


@dataclass(slots=True)
class CleanTally:
    ticks: Counter[str] = field(default_factory=Counter)  # per provider
    flagged: Counter[str] = field(default_factory=Counter)
    by_tier: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # lowest tier
    checks: Counter[str] = field(default_factory=Counter)
    types: Counter[str] = field(default_factory=Counter)  # instrument types of false flags
    check_types: Counter[str] = field(default_factory=Counter)  # "check on type"
    near: int = 0  # false flags within NEAR_NS after a fault on the same instrument


class Ledger:
    """Ground truth and tallies of one run (a fault run or the clean run)."""

    def __init__(self, kinds: Sequence[DataFault], instruments: Sequence[SimInstrument]) -> None:
        self.kinds = tuple(kinds)
        self.kind_index = {str(k): n for n, k in enumerate(self.kinds)}
        self.types = {i.key: i.instrument_type for i in instruments}
        self.scales = {i.key: i.scale for i in instruments}
        self.faults = [KindTally() for _ in self.kinds]
        self.clean = CleanTally()
        self.any_tier_labelled = [0, 0, 0, 0]  # visible faults with a check of that tier
        self.any_tier_clean = [0, 0, 0, 0]
        self.unmatched = 0  # ticks with no emission (should stay 0)
        self._last: dict[str, tuple[int | None, int | None]] = {}  # symbol -> (ts, volume)
        self._fault_ns: dict[str, int] = {}  # key -> receipt time of its last visible fault
        self._pending: dict[str, deque[tuple]] = {}
        self._touched: set[str] = set()
        self._base = _refcount_base()

    # --- ground truth ----------------------------------------------------------------------

    def injected(self, label: FaultLabel) -> None:
        """The injector's sink: every label it creates."""
        index = self.kind_index.get(label.kind)
        if index is not None:
            self.faults[index].injected[label.provider] += 1

    def match(
        self, ticks: list[Tick], group: list[Emission], symbol_of: dict[str, str]
    ) -> list[tuple[Tick, Emission]]:
        """Pair decoded ticks with the emissions of their frame, in emission order."""
        by_symbol: dict[str, deque[Tick]] = {}
        for tick in ticks:
            by_symbol.setdefault(tick.symbol, deque()).append(tick)
        pairs = []
        for emission in group:
            queue = by_symbol.get(symbol_of[emission.quote.key])
            if queue:
                pairs.append((queue.popleft(), emission))
        self.unmatched += sum(len(q) for q in by_symbol.values())
        return pairs

    def delivered(self, pairs: list[tuple[Tick, Emission]]) -> None:
        """Record each delivered tick's truth (before the validator sees it)."""
        last, fault_ns, pending = self._last, self._fault_ns, self._pending
        for tick, emission in pairs:
            symbol, key = tick.symbol, tick.instrument
            previous = last.get(symbol, (None, None))
            last[symbol] = (tick.exchange_ts, tick.volume)
            label = emission.label
            if label is None:
                seen = fault_ns.get(key)
                near = seen is not None and tick.recv_ns - seen <= NEAR_NS
                record = (tick, -1, False, near)
            else:
                index = self.kind_index[label.kind]
                tally = self.faults[index]
                tally.delivered[label.provider] += 1
                visible = _visible(
                    self.kinds[index], tick, label, previous, self.scales.get(key, tick.scale)
                )
                if visible:
                    tally.visible[label.provider] += 1
                    fault_ns[key] = tick.recv_ns
                record = (tick, index, visible, False)
            queue = pending.get(symbol)
            if queue is None:
                queue = pending[symbol] = deque()
            queue.append(record)
            self._touched.add(symbol)

    # --- final flags -------------------------------------------------------------------------

    def settle(self) -> None:
        """Count the ticks whose flags can no longer change: nothing but the pending record
        refers to them (the validator let them go)."""
        base, getrefcount = self._base, sys.getrefcount
        for symbol in self._touched:
            queue = self._pending[symbol]
            while queue and getrefcount(queue[0][0]) <= base:
                self._count(queue.popleft())
        self._touched.clear()

    def settle_all(self) -> None:
        """After ``validator.flush()``: every verdict is in."""
        for queue in self._pending.values():
            while queue:
                self._count(queue.popleft())
        self._touched.clear()

    def _count(self, record: tuple) -> None:
        tick, index, visible, near = record
        flags = tick.flags
        provider = str(tick.provider)
        tiers = tiers_of(flags) if flags else ()
        if index < 0:
            clean = self.clean
            clean.ticks[provider] += 1
            if flags:
                clean.flagged[provider] += 1
                clean.by_tier[lowest_tier(flags)] += 1
                names = check_names(flags)
                clean.checks.update(names)
                kind = self.types.get(tick.instrument, "?")
                clean.types[kind] += 1
                clean.check_types.update(f"{name} on {kind}" for name in names)
                clean.near += near
                for tier in tiers:
                    self.any_tier_clean[tier] += 1
            return
        tally = self.faults[index]
        if not visible:
            tally.flagged_invisible += bool(flags)
            return
        if flags:
            tally.detected[provider] += 1
            tally.by_tier[lowest_tier(flags)] += 1
            tally.checks.update(check_names(flags))
            for tier in tiers:
                self.any_tier_labelled[tier] += 1
        else:
            tally.missed[self.types.get(tick.instrument, "?")] += 1

    # --- totals ------------------------------------------------------------------------------

    def totals(self) -> dict[str, int]:
        visible = sum(sum(t.visible.values()) for t in self.faults)
        detected = sum(sum(t.detected.values()) for t in self.faults)
        clean = sum(self.clean.ticks.values())
        false = sum(self.clean.flagged.values())
        return {
            "injected": sum(sum(t.injected.values()) for t in self.faults),
            "delivered": sum(sum(t.delivered.values()) for t in self.faults),
            "visible": visible,
            "detected": detected,
            "clean": clean,
            "false_flags": false,
            "flagged_invisible": sum(t.flagged_invisible for t in self.faults),
        }


def _visible(
    kind: DataFault,
    tick: Tick,
    label: FaultLabel,
    previous: tuple[int | None, int | None],
    scale: int,
) -> bool:
    if kind in _PRICE_KINDS:
        true = label.true_ltp  # at the instrument's scale
        if true is not None and tick.scale != scale:
            true = rescale(true, scale, tick.scale)
        return tick.ltp != true
    if kind is DataFault.CROSSED:
        return tick.bid is not None and tick.ask is not None and tick.bid > tick.ask
    if kind is DataFault.OUT_OF_ORDER:
        ts, last_ts = tick.exchange_ts, previous[0]
        return ts is not None and last_ts is not None and ts < last_ts
    if kind is DataFault.FALLING_VOLUME:
        volume, last_volume = tick.volume, previous[1]
        return volume is not None and last_volume is not None and volume < last_volume
    return True  # stale repeat, duplicate, lag: being delivered is the fault


# --- tables ---------------------------------------------------------------------------------


def pct(part: float, whole: float, digits: int = 2) -> str:
    return f"{100 * part / whole:.{digits}f} %" if whole else "-"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(
            c.ljust(w) if i == 0 or i == len(row) - 1 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip())  # fmt: skip
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fault_table(ledger: Ledger) -> str:
    rows = []
    for kind, t in zip(ledger.kinds, ledger.faults, strict=True):
        injected, delivered = sum(t.injected.values()), sum(t.delivered.values())
        visible, detected = sum(t.visible.values()), sum(t.detected.values())
        by_provider = [pct(t.detected[p], t.visible[p], 1) for p in PROVIDERS]
        checks = ", ".join(f"{name} {n}" for name, n in t.checks.most_common(2))
        missed = ", ".join(f"{k} {n}" for k, n in t.missed.most_common(3)) or "-"
        rows.append([
            str(kind), injected, delivered - visible, injected - delivered, visible, detected,
            pct(detected, visible), *by_provider, *t.by_tier[1:], f"{checks}; missed: {missed}",
        ])  # fmt: skip
    tot = ledger.totals()
    rows.append([
        "overall", tot["injected"], tot["delivered"] - tot["visible"],
        tot["injected"] - tot["delivered"], tot["visible"], tot["detected"],
        pct(tot["detected"], tot["visible"]),
        *[pct(sum(t.detected[p] for t in ledger.faults),
              sum(t.visible[p] for t in ledger.faults), 1) for p in PROVIDERS],
        *[sum(t.by_tier[i] for t in ledger.faults) for i in (1, 2, 3)], "",
    ])  # fmt: skip
    headers = ["fault", "injected", "no change", "not deliv.", "visible", "detected", "recall",
               "FYERS", "Upstox", "T1", "T2", "T3",
               "main checks (ticks); misses by type"]  # fmt: skip
    return _table(headers, rows)


def tier_table(faults: Ledger | None, clean: Ledger | None) -> str:
    """Per tier, counting a tick for every tier with a check set on it."""
    rows = []
    for tier in (1, 2, 3):
        row: list[object] = [f"tier {tier}"]
        if faults is not None:
            tot = faults.totals()
            hit, false = faults.any_tier_labelled[tier], faults.any_tier_clean[tier]
            row += [hit, pct(hit, tot["visible"]), pct(hit, hit + false), false,
                    pct(false, tot["clean"], 3)]  # fmt: skip
        if clean is not None:
            false = clean.any_tier_clean[tier]
            row += [false, pct(false, clean.totals()["clean"], 3)]
        rows.append(row)
    headers = ["tier"]
    if faults is not None:
        headers += ["faults flagged", "recall", "precision", "clean flagged", "false-flag rate"]
    if clean is not None:
        headers += ["clean run flagged", "clean run false-flag rate"]
    return _table(headers, rows)


def false_flag_lines(ledger: Ledger, title: str) -> list[str]:
    c = ledger.clean
    total, flagged = sum(c.ticks.values()), sum(c.flagged.values())
    lines = [
        f"{title}: {flagged} of {total} clean ticks flagged ({pct(flagged, total, 3)}; "
        + ", ".join(f"{p} {pct(c.flagged[p], c.ticks[p], 3)}" for p in PROVIDERS)
        + f"); lowest tier 1/2/3: {c.by_tier[1]}/{c.by_tier[2]}/{c.by_tier[3]}"
    ]
    if flagged and any(sum(t.injected.values()) for t in ledger.faults):
        lines.append(f"  of which {c.near} within {NEAR_NS // 10**9} s after a visible fault on "
                     "the same instrument (either provider)")  # fmt: skip
    if flagged:
        lines.append("  top checks: " + ", ".join(f"{n} {k}" for n, k in c.checks.most_common(5)))
        lines.append("  by instrument type: "
                     + ", ".join(f"{t} {n}" for t, n in c.types.most_common()))  # fmt: skip
        lines.append("  by check and type: "
                     + ", ".join(f"{k} {n}" for k, n in c.check_types.most_common(6)))  # fmt: skip
    return lines
