"""The accuracy tracker: running counts, incidents and escalations. No Django, no I/O.

Counts per symbol, per check and overall are kept in memory and handed out for storage
(``counts_drain``). Flagged ticks are grouped into *incidents*: one per (instrument,
provider, check) until that check has been quiet for ``quiet`` seconds (or the incident grew
past ``max_occurrences``); a closed incident becomes one ``ValidationOutcome`` row, never a row
per tick.

Agreement is the share of cross-source comparisons within the threshold. When a symbol's
agreement falls below the target (99.5 %) over at least ``min_comparisons``, it is escalated:
checked at the deepest tier from then on, with the provider that lost fewer disagreements
preferred, and the reason recorded.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from validation.checks import Check, ValidationTier, check_names, check_tier


@dataclass(slots=True)
class Incident:
    key: str
    provider: str  # "" for cross-source ones
    check: str  # a Check name, lower case (the model's CheckName value)
    tier: int
    first_ns: int
    last_ns: int
    decision: str = "flagged"  # the model's Decision value
    occurrences: int = 1
    exchange_ts: int | None = None
    scale: int = 2
    observed: int | None = None  # prices as integers at ``scale``
    reference: int | None = None
    fyers: int | None = None
    upstox: int | None = None
    consensus: int | None = None
    gap_bps: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class SymbolCounts:
    ticks: int = 0
    flagged: int = 0
    by_check: Counter[str] = field(default_factory=Counter)
    comparisons: int = 0
    agreements: int = 0
    lost: Counter[str] = field(default_factory=Counter)  # disagreements lost, per provider
    escalated: bool = False
    preferred: str = ""
    reason: str = ""

    @property
    def agreement(self) -> float | None:
        return self.agreements / self.comparisons if self.comparisons else None


@dataclass(frozen=True, slots=True)
class CountsDelta:
    """What changed in a symbol's counts since the last drain (stored by adding it)."""

    ticks: int
    flagged: int
    by_check: dict[str, int]
    comparisons: int
    agreements: int


@dataclass(frozen=True, slots=True)
class Escalation:
    key: str
    tier: ValidationTier
    preferred: str
    reason: str


class AccuracyTracker:
    def __init__(
        self,
        *,
        quiet: float = 5.0,
        max_occurrences: int = 10_000,
        max_open: int = 20_000,
        max_closed: int = 20_000,
        target: float = 0.995,
        min_comparisons: int = 200,
    ) -> None:
        self.quiet_ns = int(quiet * 1e9)
        self.max_occurrences = max_occurrences
        self.max_open = max_open
        self.target = target
        self.min_comparisons = min_comparisons
        self.symbols: dict[str, SymbolCounts] = {}
        self.overall = SymbolCounts()
        self.open: dict[tuple[str, str, str], Incident] = {}
        self.closed: deque[Incident] = deque(maxlen=max_closed)
        self.dropped = 0  # incidents lost to the bounds (counted, never silently)
        self._dirty: set[str] = set()
        self._drained: dict[str, tuple[int, int, Counter[str], int, int]] = {}

    def _symbol(self, key: str) -> SymbolCounts:
        counts = self.symbols.get(key)
        if counts is None:
            counts = self.symbols[key] = SymbolCounts()
        self._dirty.add(key)
        return counts

    # --- counting ------------------------------------------------------------------------

    def ticks_seen(self, key: str, flags: int) -> None:
        """One validated tick of ``key`` with its final ``flags``."""
        counts = self._symbol(key)
        counts.ticks += 1
        self.overall.ticks += 1
        if flags:
            self._flagged(counts, newly=True, names=check_names(flags))

    def flag_added(self, key: str, *, before: int, check: Check) -> None:
        """A late verdict (tier 3, a re-check) on a tick already counted with ``before``."""
        self._flagged(self._symbol(key), newly=not before, names=check_names(check))

    def _flagged(self, counts: SymbolCounts, *, newly: bool, names: tuple[str, ...]) -> None:
        for total in (counts, self.overall):
            total.flagged += newly
            for name in names:
                total.by_check[name] += 1

    def compared(self, key: str, *, agreed: bool, loser: str = "") -> None:
        counts = self._symbol(key)
        counts.comparisons += 1
        self.overall.comparisons += 1
        if agreed:
            counts.agreements += 1
            self.overall.agreements += 1
        elif loser:
            counts.lost[loser] += 1
            self.overall.lost[loser] += 1

    # --- incidents -----------------------------------------------------------------------

    def incident(self, *, key: str, provider: str, check: Check, at_ns: int, **fields: Any) -> None:
        """A flag raised by ``check``: opens an incident or extends the open one (its latest
        values win; ``detail`` is merged)."""
        name = check.name.lower()  # type: ignore[union-attr]
        slot = (key, provider, name)
        current = self.open.get(slot)
        if current is not None:
            current.last_ns = at_ns
            current.occurrences += 1
            for attr, value in fields.items():
                if attr == "detail":
                    current.detail.update(value)
                elif value is not None:
                    setattr(current, attr, value)
            if current.occurrences >= self.max_occurrences:
                self._close(slot)
            return
        if len(self.open) >= self.max_open:
            self.dropped += 1
            return
        self.open[slot] = Incident(
            key=key, provider=provider, check=name, tier=check_tier(check), first_ns=at_ns,
            last_ns=at_ns, **fields,
        )  # fmt: skip

    def _close(self, slot: tuple[str, str, str]) -> None:
        incident = self.open.pop(slot)
        if len(self.closed) == self.closed.maxlen:
            self.dropped += 1
        self.closed.append(incident)

    def sweep(self, *, now_ns: int, close_all: bool = False) -> list[Escalation]:
        """Close quiet incidents; return the symbols to escalate now."""
        for slot, incident in list(self.open.items()):
            if close_all or now_ns - incident.last_ns >= self.quiet_ns:
                self._close(slot)
        escalations = []
        for key, counts in self.symbols.items():
            agreement = counts.agreement
            if (
                counts.escalated
                or agreement is None
                or counts.comparisons < self.min_comparisons
                or agreement >= self.target
            ):
                continue
            escalations.append(self._escalate(key, counts, agreement, now_ns))
        return escalations

    def _escalate(
        self, key: str, counts: SymbolCounts, agreement: float, now_ns: int
    ) -> Escalation:
        fyers_lost, upstox_lost = counts.lost["fyers"], counts.lost["upstox"]
        preferred = "upstox" if upstox_lost < fyers_lost else "fyers"
        reason = (
            f"agreement {agreement:.2%} over {counts.comparisons:,} comparisons is below the "
            f"{self.target:.1%} target; disagreements lost: FYERS {fyers_lost:,}, Upstox "
            f"{upstox_lost:,}; checked at the deep tier, {preferred} preferred"
        )
        counts.escalated, counts.preferred, counts.reason = True, preferred, reason
        self._dirty.add(key)
        incident = Incident(
            key=key, provider=preferred, check="escalation", tier=2, first_ns=now_ns,
            last_ns=now_ns, decision="escalated",
            detail={"reason": reason, "agreement": round(agreement, 5),
                    "comparisons": counts.comparisons, "lost": dict(counts.lost)},
        )  # fmt: skip
        self.closed.append(incident)
        return Escalation(key=key, tier=ValidationTier.DEEP, preferred=preferred, reason=reason)

    def escalation_cleared(self, key: str) -> None:
        counts = self.symbols.get(key)
        if counts is not None:
            counts.escalated, counts.preferred, counts.reason = False, "", ""
            counts.comparisons = counts.agreements = 0
            counts.lost.clear()

    def restore(self, key: str, *, preferred: str, reason: str) -> None:
        """An escalation recorded earlier (a restart): keep it without recording it again."""
        counts = self.symbols.setdefault(key, SymbolCounts())
        counts.escalated, counts.preferred, counts.reason = True, preferred, reason

    # --- handing out ---------------------------------------------------------------------

    def incidents_drain(self) -> list[Incident]:
        drained = list(self.closed)
        self.closed.clear()
        return drained

    def incidents_requeue(self, incidents: list[Incident]) -> None:
        """Incidents that could not be stored: kept for the next try, oldest first, within
        the bound (what does not fit is counted as dropped)."""
        room = (self.closed.maxlen or 0) - len(self.closed)
        keep = incidents[-room:] if room > 0 else []
        self.dropped += len(incidents) - len(keep)
        self.closed.extendleft(reversed(keep))

    def deltas_undo(self, deltas: dict[str, CountsDelta]) -> None:
        """Deltas that could not be stored: the next drain hands them out again."""
        for key, delta in deltas.items():
            drained = self._drained.get(key)
            if drained is None:
                continue
            ticks, flagged, by_check, comparisons, agreements = drained
            self._drained[key] = (ticks - delta.ticks, flagged - delta.flagged,
                                  by_check - Counter(delta.by_check),
                                  comparisons - delta.comparisons,
                                  agreements - delta.agreements)  # fmt: skip
            self._dirty.add(key)

    def deltas_drain(self) -> dict[str, CountsDelta]:
        """Per symbol whose counts changed, what changed since the last drain."""
        dirty, self._dirty = self._dirty, set()
        deltas = {}
        for key in dirty:
            counts = self.symbols.get(key)
            if counts is None:
                continue
            ticks, flagged, by_check, comparisons, agreements = self._drained.get(
                key, (0, 0, Counter(), 0, 0)
            )
            delta = CountsDelta(
                ticks=counts.ticks - ticks,
                flagged=counts.flagged - flagged,
                by_check=dict(counts.by_check - by_check),
                comparisons=counts.comparisons - comparisons,
                agreements=counts.agreements - agreements,
            )
            self._drained[key] = (counts.ticks, counts.flagged, Counter(counts.by_check),
                                  counts.comparisons, counts.agreements)  # fmt: skip
            if delta.ticks or delta.flagged or delta.comparisons or delta.by_check:
                deltas[key] = delta
        return deltas

    def forget(self, keys: set[str]) -> None:
        """Drop symbols no longer carried (bounded by what the pool carries)."""
        for key in [k for k in self.symbols if k not in keys]:
            del self.symbols[key]
            self._dirty.discard(key)
            self._drained.pop(key, None)
