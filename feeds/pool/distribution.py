"""Symbol distribution: which broker connection carries which instrument.

A pure function (no I/O, no Django, no asyncio): ``distribute`` takes the enabled instruments
(``Want``), the broker accounts, the current assignment and the connections that are down, and
returns a ``Plan``: the new assignment, the subscribe/unsubscribe diff per connection, what was
left out and why. Connections are ``Conn(provider, account, slot)`` with ``slot`` in
``range(account.max_connections)``; a connection that exists but carries nothing is just unused.

The rules (numbers are the issue's; search the code for "Rule N"):

1. Importance: tier rank (critical, high_frequency, standard, low_frequency), then priority
   descending, then key ascending. Every decision runs in that order: ``_by_importance``.
2. critical / high_frequency instruments listed by FYERS go to FYERS, first-fit: connection
   slot 0 until it is full, then slot 1, ... (so ceil(n / per_connection) connections are
   used), accounts in the order given. ``_demand_shapes`` and ``_Planner._first_fit``.
3. Everything else goes to Upstox within its per-mode limits (``_Slot.fits``, the same rule as
   ``feeds.providers.upstox.codec.check_mode_limits``: a feed mode used alone may reach its
   "individual" limit, mixed modes are each held to their "combined" limit), the per-connection
   cap and the connection count. A critical/high instrument that finds FYERS full overflows to
   Upstox (reason "overflow"). One-provider instruments only go to that provider; a
   standard/low FYERS-only instrument goes to FYERS when there is room (after the more
   important ones, by rule 1). ``_demand_shapes``.
4. A critical instrument listed by both providers needs two placements: FYERS ("tier_rule") and
   Upstox ("cross_check"). If only one of them fits, ``Plan.notes`` says which side is missing
   and why; an Upstox placement without its FYERS twin is labelled "overflow".
5. Stability: ``_Planner.keep_current`` keeps every current placement that is still valid (the
   instrument is still wanted from that provider, the provider preference did not change, the
   connection exists and is available, the caps hold). Only what is not kept is placed, in
   importance order, into free room (``_Planner.place_pending``). When there is no room an
   instrument displaces exactly one less important placement (``_Planner._displace``); the
   displaced one is left out, or, if it can use free room elsewhere, moves there. No chains.
   Removing an instrument or a connection moves nothing else, except through that same
   displacement when capacity is short (a left-out instrument may now push a less important
   one into the freed room). Same input, same output: everything is sorted, nothing depends
   on input order.
6. What cannot be placed is in ``Plan.left_out`` with a short reason ("no capacity: FYERS and
   Upstox full", "displaced by NSE:X; no capacity: Upstox full", "not listed by any enabled
   provider"). Because of rule 5's displacement, a left-out instrument never has a less
   important placed one that it could replace (same or narrower provider listing; same feed
   mode where per-mode limits apply) and never fits into free room: the plan is a fixed point,
   re-running it moves nothing.
7. Failover: nothing is placed on an ``unavailable`` connection. Its instruments are placed by
   the rules above (their own provider first, another FYERS connection before Upstox) with
   reason "failover" and ``Placement.home`` = the connection they came from. While ``home`` is
   down they stay; the first call in which it is available moves them back there
   (``_Planner.keep_current`` / ``_return_home``), with the rule reason again. How long a
   connection must be healthy first is the caller's business.
8. Mode change: an instrument whose wanted mode changed stays on its connection when that
   connection can hold the new feed mode (a re-subscribe, in ``Plan.subscribe``); else it is
   placed again like a newcomer.

Resolutions of points the issue leaves open:

* A standard/low instrument listed by both providers overflows to FYERS when Upstox is full.
* Overflow placements are sticky: when room appears on the preferred provider they stay
  (moving them would break rule 5's "removing an instrument moves nothing else"). Only
  failover placements return. A fresh call (``current=None``) rebalances from scratch.
* Instruments of a failed connection may displace less important ones like newcomers do:
  otherwise they would be left out now and displace on the next call anyway (a left-out
  instrument is a newcomer to the next call), so the plan would not be a fixed point.
* A newcomer's displaced victim may be one that has free room elsewhere (its other provider,
  or a connection with room for its feed mode but not the newcomer's); it then moves there
  (one move, never a chain) instead of leaving a critical out while room exists. Else the
  victim must have nowhere the newcomer could not go, so it can never displace anything in
  turn.
* A critical instrument added when both providers are full displaces one placement on each
  (it needs two).
* ``Account.mode_limits`` applies to any account that has it (Upstox in practice); ``None``
  means only ``per_connection`` applies. A feed mode missing from the limits cannot be
  placed on that connection (``check_mode_limits`` rejects unknown modes too). A "combined"
  limit above its "individual" one (UPSTOX.md's printed ``full_d30`` row) is read as the
  individual one: stricter than ``check_mode_limits``, and it keeps "removing an instrument
  never breaks a limit" true, which stability relies on.
* ``Plan.moved`` counts current placements of still-wanted instruments whose connection no
  longer carries the instrument (moved elsewhere or dropped).
* Two fields beyond the issue's interface, both defaulted: ``Placement.home`` (rule 7 needs
  to know where a failover returns; a caller that drops it gets failovers back onto their
  preferred provider by first-fit instead) and ``Plan.notes`` (rule 4's one-sided criticals).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

Tier = Literal["critical", "high_frequency", "standard", "low_frequency"]
Mode = Literal["ltp", "quote", "depth"]
Reason = Literal["tier_rule", "cross_check", "overflow", "failover"]

FYERS: Final = "fyers"
UPSTOX: Final = "upstox"
PROVIDERS: Final = (FYERS, UPSTOX)
_LABEL: Final = {FYERS: "FYERS", UPSTOX: "Upstox"}

# Rule 1: tier rank.
TIER_RANK: Final[Mapping[str, int]] = {
    "critical": 0,
    "high_frequency": 1,
    "standard": 2,
    "low_frequency": 3,
}
# Our data mode -> Upstox feed mode (the unit of the per-mode limits).
FEED_MODE: Final[Mapping[str, str]] = {"ltp": "ltpc", "quote": "full", "depth": "full"}


@dataclass(frozen=True, slots=True)
class Want:
    """An enabled instrument."""

    key: str  # canonical key, e.g. "NSE:SBIN"
    tier: Tier
    priority: int  # higher = more important
    mode: Mode
    on_fyers: bool
    on_upstox: bool


@dataclass(frozen=True, slots=True)
class Account:
    name: str  # e.g. "primary"; connections are (provider, name, slot)
    provider: Literal["fyers", "upstox"]
    max_connections: int
    per_connection: int  # symbols per connection
    # {"ltpc": {"individual": 5000, "combined": 2000}, "full": {...}}; None = no per-mode limits
    mode_limits: Mapping[str, Mapping[str, int]] | None = None


@dataclass(frozen=True, slots=True, order=True)
class Conn:
    provider: str
    account: str
    slot: int


def connection_name(conn: Conn) -> str:
    """The stable name of one pool connection ("fyers:primary:3"): logs, leases, heartbeats,
    health rows and ``Tick.connection`` all use it."""
    return f"{conn.provider}:{conn.account}:{conn.slot}"


def conn_from_name(name: str) -> Conn:
    """The inverse of ``connection_name``; ValueError for anything else."""
    provider, account, slot = name.rsplit(":", 2)
    return Conn(provider, account, int(slot))


@dataclass(frozen=True, slots=True)
class Placement:
    conn: Conn
    mode: Mode
    reason: Reason
    # Rule 7: for reason "failover", the connection to return to once it is available again.
    # Pass placements back unchanged in ``current`` so the return can happen.
    home: Conn | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """The outcome of one ``distribute`` call. ``assignment``, ``left_out`` and each
    connection's ``subscribe`` list the most important instruments first."""

    assignment: Mapping[str, tuple[Placement, ...]]  # key -> its placements (1 or 2)
    subscribe: Mapping[Conn, Mapping[str, Mode]]  # per connection: keys to add or re-mode
    unsubscribe: Mapping[Conn, tuple[str, ...]]  # per connection: keys to drop
    left_out: Mapping[str, str]  # key -> reason
    connections: Mapping[Conn, int]  # connections in use -> symbol count
    moved: int  # current placements (of still-wanted keys) that left their connection
    # key -> why a critical instrument is carried by one provider only (rule 4)
    notes: Mapping[str, str] = field(default_factory=dict)


def _by_importance(wants: Iterable[Want]) -> list[Want]:
    """Rule 1: most important first: tier rank, then priority descending, then key ascending.

    Three stable passes, each on a plain str or int key (the sort's fast paths), are 2-3x
    faster than one pass on the (tier rank, -priority, key) tuple."""
    ranked = sorted(wants, key=lambda w: w.key)
    ranked.sort(key=lambda w: -w.priority)
    ranked.sort(key=lambda w: TIER_RANK[w.tier])
    return ranked


_Shape = tuple[tuple[bool, tuple[str, ...]], ...]


def _demand_shapes(want: Want) -> _Shape:
    """The placements a want needs: (is the cross-check, providers in preference order)."""
    if want.tier in ("critical", "high_frequency") and want.on_fyers:
        if want.tier == "critical" and want.on_upstox:
            # Rule 4: one placement per provider; the Upstox one is the cross-check.
            return ((False, (FYERS,)), (True, (UPSTOX,)))
        # Rule 2 (FYERS first), rule 3 (overflow to Upstox if listed there).
        return ((False, (FYERS, UPSTOX) if want.on_upstox else (FYERS,)),)
    if want.on_upstox:
        # Rule 3: Upstox; a standard/low one listed by FYERS too may overflow there.
        return ((False, (UPSTOX, FYERS) if want.on_fyers else (UPSTOX,)),)
    if want.on_fyers:
        return ((False, (FYERS,)),)  # rule 3: FYERS-only, any tier
    return ()


class _Slot:
    """Mutable bookkeeping of one connection during a call."""

    __slots__ = ("available", "by_feed", "cap", "conn", "limits", "total")

    def __init__(
        self, conn: Conn, cap: int, limits: Mapping[str, Mapping[str, int]] | None, up: bool
    ) -> None:
        self.conn = conn
        self.cap = cap
        self.limits = limits
        self.available = up
        self.total = 0
        self.by_feed: dict[str, int] = {}

    def fits(self, feed: str) -> bool:
        """Can one more instrument of ``feed`` mode join? (Rule 3: same rule as
        ``check_mode_limits`` plus the per-connection cap.)"""
        if not self.available or self.total >= self.cap:
            return False
        limits = self.limits
        if limits is None:
            return True
        own = limits.get(feed)
        if own is None:
            return False
        count = self.by_feed.get(feed, 0) + 1
        if count == self.total + 1:  # the only mode used
            return count <= own["individual"]
        # Mixing modes drops every used mode to its (lower) "combined" limit.
        return count <= own["combined"] and all(
            n <= limits[m]["combined"] for m, n in self.by_feed.items() if n and m != feed
        )

    def remove(self, feed: str) -> None:
        self.total -= 1
        self.by_feed[feed] -= 1


class _Demand:
    """One placement an instrument needs (a critical listed by both providers has two)."""

    __slots__ = (
        "cross",
        "displaced_by",
        "fail_home",
        "feed",
        "group",
        "prior",
        "providers",
        "rank",
        "slot",
        "sticky",
        "want",
    )

    def __init__(self, want: Want, cross: bool, providers: tuple[str, ...], rank: int) -> None:
        self.want = want
        self.cross = cross
        self.providers = providers
        self.rank = rank  # position in importance order; smaller = more important
        self.feed = FEED_MODE[want.mode]
        self.slot: _Slot | None = None  # where it is placed in this call
        self.group: _Group | None = None  # its entry in _Planner.placed while placed
        self.prior: Placement | None = None  # its placement in `current`
        self.sticky: _Slot | None = None  # its current connection, to prefer over moving
        self.fail_home: Conn | None = None  # rule 7: the unavailable connection it left
        self.displaced_by: str | None = None


# Placed demands are grouped by (provider, connection has mode limits, feed mode, provider
# listing): whether one may be displaced is the same for a whole group (see _displace).
_Group = tuple[str, bool, str, tuple[str, ...]]


class _Planner:
    def __init__(
        self, wants: Iterable[Want], accounts: Sequence[Account], unavailable: Collection[Conn]
    ) -> None:
        self.wants = _index_wants(wants)
        self.slots: dict[Conn, _Slot] = {}
        self.by_provider: dict[str, list[_Slot]] = {p: [] for p in PROVIDERS}
        down = frozenset(unavailable)
        seen: set[tuple[str, str]] = set()
        for account in accounts:  # rule 2: accounts filled in the order given
            _check_account(account)
            if (account.provider, account.name) in seen:
                raise ValueError(f"duplicate account {account.provider}/{account.name}")
            seen.add((account.provider, account.name))
            limits = _clamped(account.mode_limits)
            for n in range(account.max_connections):
                conn = Conn(account.provider, account.name, n)
                slot = _Slot(conn, account.per_connection, limits, conn not in down)
                self.slots[conn] = slot
                self.by_provider[account.provider].append(slot)
        # Whether a provider has per-mode limits anywhere (then the feed mode matters).
        self.limited = {
            p: any(s.limits is not None for s in slots) for p, slots in self.by_provider.items()
        }
        self.reachable = {
            p: any(s.available for s in slots) for p, slots in self.by_provider.items()
        }
        # One demand per placement needed, in importance order; rank = position.
        self.demands: list[_Demand] = []
        self.of_key: dict[str, list[_Demand]] = {}
        shapes: dict[tuple[str, bool, bool], _Shape] = {}
        self.ranked = _by_importance(self.wants.values())
        demands, of_key = self.demands, self.of_key
        for want in self.ranked:
            listing = (want.tier, want.on_fyers, want.on_upstox)
            shape = shapes.get(listing)
            if shape is None:
                shape = shapes[listing] = _demand_shapes(want)
            if len(shape) == 1:
                demand = _Demand(want, False, shape[0][1], len(demands))
                demands.append(demand)
                of_key[want.key] = [demand]
            elif shape:
                own = of_key[want.key] = []
                for cross, providers in shape:
                    demand = _Demand(want, cross, providers, len(demands))
                    demands.append(demand)
                    own.append(demand)
            # else left out: not listed by any enabled provider
        # Ranks of placed demands per group, ascending: the least important is last.
        self.placed: dict[_Group, list[int]] = {}
        self.cursor: dict[tuple[str, str], int] = {}

    # ------------------------------------------------------------------ bookkeeping

    def _put(self, demand: _Demand, slot: _Slot) -> None:
        feed = demand.feed
        slot.total += 1
        slot.by_feed[feed] = slot.by_feed.get(feed, 0) + 1
        demand.slot = slot
        group = (slot.conn.provider, slot.limits is not None, feed, demand.providers)
        demand.group = group
        ranks = self.placed.get(group)
        if ranks is None:
            self.placed[group] = [demand.rank]
        elif not ranks or ranks[-1] < demand.rank:
            ranks.append(demand.rank)  # the common case: placing in importance order
        else:
            bisect.insort(ranks, demand.rank)

    def _take(self, demand: _Demand) -> _Slot:
        slot, group = demand.slot, demand.group
        assert slot is not None and group is not None
        slot.remove(demand.feed)
        demand.slot = demand.group = None
        ranks = self.placed[group]
        del ranks[bisect.bisect_left(ranks, demand.rank)]
        return slot

    # ------------------------------------------------------------------ rules 5, 7, 8: keep

    def keep_current(self, current: Mapping[str, tuple[Placement, ...]]) -> None:
        """Rule 5: keep what is still valid; release the rest to ``place_pending``."""
        for key, demands in self.of_key.items():
            placements = current.get(key)
            if not placements:
                continue
            if len(placements) == 1 and len(demands) == 1:  # the common case
                if placements[0].conn.provider in demands[0].providers:
                    demands[0].prior = placements[0]
                continue
            for placement in sorted(placements, key=lambda p: p.conn):
                # The demand this placement serves: the one listing its provider. Two
                # placements for one demand (e.g. critical -> high): the preferred provider's.
                for demand in demands:
                    if placement.conn.provider in demand.providers and (
                        demand.prior is None
                        or demand.providers.index(placement.conn.provider)
                        < demand.providers.index(demand.prior.conn.provider)
                    ):
                        demand.prior = placement
        changed: list[tuple[_Demand, _Slot]] = []
        returning: list[tuple[_Demand, _Slot | None, _Slot]] = []
        slot_of = _ByPlacement(self.slots)
        for demand in self.demands:
            prior = demand.prior
            if prior is None:
                continue
            slot = slot_of(prior)
            if slot is None:
                continue  # connection removed: placed again by the rules
            if not slot.available:
                # Rule 7: its connection is down; remember the home to come back to.
                failed_over = prior.reason == "failover" and prior.home is not None
                demand.fail_home = prior.home if failed_over else prior.conn
                continue
            home_provider = demand.providers[0]
            if prior.reason == "failover" and prior.home != prior.conn:
                home = self.slots.get(prior.home) if prior.home is not None else None
                if home is not None and not home.available:
                    demand.fail_home = prior.home  # still down: stay
                elif home is not None or slot.conn.provider != home_provider:
                    # Rule 7: home is back (or unknown but the placement is away): return.
                    returning.append((demand, home, slot))
                    continue
                # else home no longer exists: an ordinary placement where it is
            elif slot.conn.provider != home_provider and prior.reason != "overflow":
                # Rule 5: provider preference changed (e.g. standard -> high): try the new
                # preferred provider first, else stay here.
                demand.sticky = slot
                continue
            if FEED_MODE[prior.mode] != demand.feed:
                changed.append((demand, slot))
            elif slot.fits(demand.feed):  # in importance order: if caps shrank, the least
                self._put(demand, slot)  # important ones are released
        # Rule 8: a changed feed mode stays if its connection can hold it (after the others).
        for demand, slot in changed:
            if slot.fits(demand.feed):
                self._put(demand, slot)
        for demand, home, slot in returning:
            self._return_home(demand, home, slot)

    def _return_home(self, demand: _Demand, home: _Slot | None, slot: _Slot) -> None:
        """Rule 7: a failover placement goes back to its home connection."""
        if home is None:  # caller dropped ``home``: the preferred provider, first-fit
            preferred = self.by_provider[demand.providers[0]]
            home = next((s for s in preferred if s.fits(demand.feed)), None)
        if home is not None and home.fits(demand.feed):
            self._put(demand, home)
        elif slot.fits(demand.feed):
            self._put(demand, slot)  # home cannot take it: stays, no longer a failover
        # else placed again by place_pending

    # ------------------------------------------------------------------ rules 2-7: place

    def place_pending(self) -> None:
        """Place everything not kept, most important first (rule 1)."""
        # Cursors are only valid here: from now on connections only fill up.
        self.cursor.clear()
        for demand in self.demands:
            if demand.slot is not None or demand.displaced_by is not None:
                continue  # kept, or displaced (which cannot fit anywhere: no chains)
            target = self._free_target(demand)
            if target is not None:
                self._put(demand, target)
            else:
                self._displace(demand)

    def _free_target(self, demand: _Demand) -> _Slot | None:
        for provider in demand.providers:  # rule 2/3 preference order
            sticky = demand.sticky
            if sticky is not None and sticky.conn.provider == provider and sticky.fits(demand.feed):
                return sticky
            slot = self._first_fit(provider, demand.feed)
            if slot is not None:
                return slot
        return None

    def _first_fit(self, provider: str, feed: str) -> _Slot | None:
        """Rule 2: the first connection (account order, then slot) with room for ``feed``.
        Connections only fill up while placing, so a cursor skips the full ones for good."""
        slots = self.by_provider[provider]
        at = (provider, feed)
        i = self.cursor.get(at, 0)
        while i < len(slots) and not slots[i].fits(feed):
            i += 1
        self.cursor[at] = i
        return slots[i] if i < len(slots) else None

    def _displace(self, demand: _Demand) -> None:
        """Rules 5 and 6: no room anywhere; take the place of the least important placement
        that can give it up, i.e. one that is less important and
        * sits on a connection ``demand`` may use, and the swap leaves that connection's
          counts as they are (same feed mode, or a connection without per-mode limits);
        * can move into free room elsewhere (it moves: one move), or is "dominated": it
          could only go where ``demand`` could, with the same effect on the counts. Then,
          left out, it can displace nothing in turn (that would have been ``demand``'s
          victim, and less important): no chains, and the plan stays a fixed point.
        All three conditions are the same for a whole group of ``self.placed``, so each
        group's candidate is its least important member."""
        victim: _Demand | None = None
        push: _Slot | None = None
        for (provider, limited, feed, _listing), ranks in self.placed.items():
            if not ranks or provider not in demand.providers or (limited and feed != demand.feed):
                continue
            rank = ranks[-1]
            if rank <= demand.rank or (victim is not None and rank <= victim.rank):
                continue
            other = self.demands[rank]
            to = self._push_target(other)
            if to is not None or self._dominated(other, demand):
                victim, push = other, to
        if victim is None:
            return  # left out (reason in build_plan)
        slot = self._take(victim)
        self._put(demand, slot)
        if push is not None:
            self._put(victim, push)
        else:
            victim.displaced_by = demand.want.key

    def _push_target(self, victim: _Demand) -> _Slot | None:
        # Never the victim's own connection: had that room, ``demand`` would have used it.
        for provider in victim.providers:
            slot = self._first_fit(provider, victim.feed)
            if slot is not None:
                return slot
        return None

    def _dominated(self, victim: _Demand, demand: _Demand) -> bool:
        return all(
            p in demand.providers and (victim.feed == demand.feed or not self.limited[p])
            for p in victim.providers
        )

    # ------------------------------------------------------------------ the plan

    def _reason(self, demand: _Demand, conn: Conn) -> tuple[Reason, Conn | None]:
        home = demand.fail_home
        # Rule 7: a failover, unless it left an away placement and landed on its preferred
        # provider (it is then where the rules want it).
        if home is not None and not (
            conn.provider == demand.providers[0] and home.provider != conn.provider
        ):
            return "failover", home
        if demand.cross:
            return "cross_check", None  # rule 4 (relabelled if its FYERS twin is missing)
        return ("tier_rule" if conn.provider == demand.providers[0] else "overflow"), None

    def _no_room(self, providers: Iterable[str]) -> str:
        full = [_LABEL[p] for p in providers if self.reachable[p]]
        down = [_LABEL[p] for p in providers if not self.reachable[p]]
        parts = [" and ".join(full) + " full"] if full else []
        parts += [f"no {name} connection available" for name in down]
        return "no capacity: " + "; ".join(parts)

    def build_plan(self, current: Mapping[str, tuple[Placement, ...]]) -> Plan:
        # Few distinct placements exist (connection x mode x reason): share the objects.
        interned: dict[tuple[int, str, tuple[str, ...], bool, Conn | None], Placement] = {}
        assignment: dict[str, tuple[Placement, ...]] = {}
        left_out: dict[str, str] = {}
        notes: dict[str, str] = {}
        for want in self.ranked:  # so assignment and left_out list the most important first
            key = want.key
            demands = self.of_key.get(key)
            if demands is None:
                left_out[key] = "not listed by any enabled provider"
                continue
            out = []
            for demand in demands:
                slot = demand.slot
                if slot is None:
                    continue
                ident = (id(slot), want.mode, demand.providers, demand.cross, demand.fail_home)
                placement = interned.get(ident)
                if placement is None:
                    reason, home = self._reason(demand, slot.conn)
                    placement = Placement(slot.conn, want.mode, reason, home)
                    interned[ident] = placement
                out.append(placement)
            if len(out) == len(demands):
                assignment[key] = tuple(out)  # (a critical's FYERS placement comes first)
            elif out:  # rule 4: a critical carried by one side only
                (placement,) = out
                if placement.reason == "cross_check":  # no FYERS twin to check
                    placement = Placement(placement.conn, placement.mode, "overflow")
                assignment[key] = (placement,)
                missing = next(d for d in demands if d.slot is None)
                notes[key] = f"not carried by {_LABEL[missing.providers[0]]}: {self._why(missing)}"
            else:
                left_out[key] = self._why(*demands)
        return _diff(assignment, current, self.wants, left_out, notes)

    def _why(self, *demands: _Demand) -> str:
        """Rule 6: why these demands (of one instrument) have no place."""
        providers = sorted({p for d in demands for p in d.providers})
        reason = self._no_room(providers)
        displaced = next((d.displaced_by for d in demands if d.displaced_by), None)
        return f"displaced by {displaced}; {reason}" if displaced else reason


class _ByPlacement:
    """Placement -> its connection's slot (None if the connection no longer exists).

    Plans share placement objects (see build_plan), so resolving each distinct object once
    saves hashing a Conn per instrument."""

    def __init__(self, slots: Mapping[Conn, _Slot]) -> None:
        self.slots = slots
        self.seen: dict[int, tuple[Placement, _Slot | None]] = {}

    def __call__(self, placement: Placement) -> _Slot | None:
        hit = self.seen.get(id(placement))
        if hit is None:
            # Keep the placement referenced so that its id stays unique during the call.
            hit = self.seen[id(placement)] = (placement, self.slots.get(placement.conn))
        return hit[1]


def _by_conn(assignment: Mapping[str, tuple[Placement, ...]]) -> dict[Conn, dict[str, str]]:
    """conn -> {key: mode}; resolves each distinct (shared) placement object once."""
    out: dict[Conn, dict[str, str]] = {}
    table: dict[int, tuple[Placement, dict[str, str]]] = {}
    for key, placements in assignment.items():
        for p in placements:
            hit = table.get(id(p))
            if hit is None:
                hit = table[id(p)] = (p, out.setdefault(p.conn, {}))
            hit[1][key] = p.mode
    return out


def _diff(
    assignment: dict[str, tuple[Placement, ...]],
    current: Mapping[str, tuple[Placement, ...]],
    wants: Mapping[str, Want],
    left_out: dict[str, str],
    notes: dict[str, str],
) -> Plan:
    before = _by_conn(current)
    after = _by_conn(assignment)
    subscribe: dict[Conn, dict[str, Mode]] = {}
    unsubscribe: dict[Conn, tuple[str, ...]] = {}
    moved = 0
    for conn in sorted(before.keys() | after.keys()):
        old = before.get(conn, {})
        new = after.get(conn, {})
        add = {k: m for k, m in new.items() if old.get(k) != m}
        if add:
            subscribe[conn] = add  # type: ignore[assignment]  # in importance order
        drop = tuple(sorted(k for k in old if k not in new))
        if drop:
            unsubscribe[conn] = drop
            moved += sum(1 for k in drop if k in wants)
    return Plan(
        assignment=assignment,
        subscribe=subscribe,
        unsubscribe=unsubscribe,
        left_out=left_out,
        connections={conn: len(keys) for conn, keys in sorted(after.items())},
        moved=moved,
        notes=notes,
    )


def _index_wants(wants: Iterable[Want]) -> dict[str, Want]:
    by_key: dict[str, Want] = {}
    for want in wants:
        if want.tier not in TIER_RANK:
            raise ValueError(f"{want.key}: unknown tier {want.tier!r}")
        if want.mode not in FEED_MODE:
            raise ValueError(f"{want.key}: unknown mode {want.mode!r}")
        if want.key in by_key:
            raise ValueError(f"duplicate want {want.key!r}")
        by_key[want.key] = want
    return by_key


def _check_account(account: Account) -> None:
    if account.provider not in PROVIDERS:
        raise ValueError(f"unknown provider {account.provider!r}")
    if account.max_connections < 0 or account.per_connection < 0:
        raise ValueError(f"{account.provider}/{account.name}: negative limit")
    for mode, limit in (account.mode_limits or {}).items():
        if not (limit.get("individual", -1) >= 0 and limit.get("combined", -1) >= 0):
            raise ValueError(f"{account.provider}/{account.name}: bad limits for {mode!r}")


def _clamped(
    limits: Mapping[str, Mapping[str, int]] | None,
) -> Mapping[str, Mapping[str, int]] | None:
    """Mode limits with "combined" capped at "individual" (see the module docstring)."""
    if limits is None:
        return None
    return {
        mode: {"individual": lim["individual"], "combined": min(lim["combined"], lim["individual"])}
        for mode, lim in limits.items()
    }


def distribute(
    *,
    wants: Iterable[Want],
    accounts: Sequence[Account],
    current: Mapping[str, tuple[Placement, ...]] | None = None,
    unavailable: Collection[Conn] = (),
) -> Plan:
    """Decide which connection carries which instrument (rules 1-8 in the module docstring).

    ``current`` is the assignment in force (normally the previous plan's, passed back
    unchanged); ``None`` plans from scratch. ``unavailable`` connections get nothing.
    """
    planner = _Planner(wants, accounts, unavailable)
    current = current or {}
    planner.keep_current(current)
    planner.place_pending()
    return planner.build_plan(current)


def plan_summary(plan: Plan) -> dict[str, object]:
    """Counts for logs and pages: per provider, connection, reason; left out; the diff."""
    by_provider: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    for placements in plan.assignment.values():
        for p in placements:
            by_provider[p.conn.provider] += 1
            by_reason[p.reason] += 1
    # Group left-out reasons without the per-key "displaced by X; " prefix.
    left_out_reasons = Counter(
        r.split("; ", 1)[-1] if r.startswith("displaced by ") else r for r in plan.left_out.values()
    )
    return {
        "instruments": len(plan.assignment),
        "placements": sum(by_provider.values()),
        "by_provider": dict(sorted(by_provider.items())),
        "by_reason": dict(sorted(by_reason.items())),
        "connections_in_use": dict(sorted(Counter(c.provider for c in plan.connections).items())),
        "by_connection": {
            f"{c.provider}/{c.account}/{c.slot}": n for c, n in sorted(plan.connections.items())
        },
        "left_out": len(plan.left_out),
        "left_out_reasons": dict(sorted(left_out_reasons.items())),
        "displaced": sum(1 for r in plan.left_out.values() if r.startswith("displaced by ")),
        "one_sided_critical": len(plan.notes),
        "moved": plan.moved,
        "subscribe": sum(len(keys) for keys in plan.subscribe.values()),
        "unsubscribe": sum(len(keys) for keys in plan.unsubscribe.values()),
    }
