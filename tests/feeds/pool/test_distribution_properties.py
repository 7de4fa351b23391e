"""Property tests for feeds.pool.distribution (hypothesis).

Small caps (1-20 symbols per connection, tight per-mode limits) keep capacity short so that
displacement, overflow and failover all happen. Every property is checked on plans that went
through history (a plan made from an earlier plan of a subset, with other connections down),
not only on fresh ones.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feeds.pool.distribution import (
    FEED_MODE,
    TIER_RANK,
    Account,
    Conn,
    Placement,
    Plan,
    Want,
    distribute,
    plan_summary,
)
from feeds.providers.errors import CapExceeded
from feeds.providers.upstox.codec import check_mode_limits

PROPS = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

TIERS = list(TIER_RANK)
MODES = ["ltp", "quote", "depth"]
Assignment = Mapping[str, tuple[Placement, ...]]


# --------------------------------------------------------------------------- strategies


# Listings, weighted: both providers most often, never-listed rarely.
LISTINGS = [(True, True)] * 4 + [(True, False)] * 2 + [(False, True)] * 2 + [(False, False)]
_SPAN = len(TIERS) * 5 * len(MODES) * len(LISTINGS)


def decode_want(i: int, code: int) -> Want:
    """One integer per want keeps generation fast (hundreds of wants per example); it
    shrinks towards 0 = a critical ltp instrument of priority 0 listed by both."""
    code, tier = divmod(code, len(TIERS))
    code, priority = divmod(code, 5)  # few values: ties go to the key
    code, mode = divmod(code, len(MODES))
    on_fyers, on_upstox = LISTINGS[code % len(LISTINGS)]
    key = f"NSE:S{i:03d}"
    return Want(key, TIERS[tier], priority, MODES[mode], on_fyers, on_upstox)  # type: ignore[arg-type]


@st.composite
def limits_st(draw: st.DrawFn) -> dict[str, dict[str, int]] | None:
    if draw(st.booleans()):
        return None
    out = {}
    for mode in draw(st.sampled_from([("ltpc", "full")] * 5 + [("ltpc",)])):
        individual = draw(st.integers(0, 20))
        out[mode] = {"individual": individual, "combined": draw(st.integers(0, individual))}
    return out


@st.composite
def accounts_st(draw: st.DrawFn) -> list[Account]:
    accounts = []
    for i in range(draw(st.integers(0, 2))):
        accounts.append(
            Account(f"f{i}", "fyers", draw(st.integers(0, 5)), draw(st.integers(1, 20)))
        )
    for i in range(draw(st.integers(0, 2))):
        accounts.append(
            Account(
                f"u{i}",
                "upstox",
                draw(st.integers(0, 3)),
                draw(st.integers(1, 20)),
                draw(limits_st()),
            )
        )
    return accounts


def all_conns(accounts: Sequence[Account]) -> list[Conn]:
    return [Conn(a.provider, a.name, s) for a in accounts for s in range(a.max_connections)]


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[Want], list[Account], set[Conn], Plan]:
    """Wants, accounts, unavailable connections, and the plan in force (with history: made
    from a plan of a subset of the wants, with other connections down)."""
    # Each code also says whether the want was already there in the earlier plan.
    n = draw(st.one_of(st.integers(0, 30), st.integers(0, 300)))  # roomy or short
    codes = draw(st.lists(st.integers(0, 4 * _SPAN - 1), min_size=n, max_size=n))
    wants = [decode_want(i, code % _SPAN) for i, code in enumerate(codes)]
    accounts = draw(accounts_st())
    conns = all_conns(accounts)
    down_before = set(draw(st.lists(st.sampled_from(conns), max_size=3))) if conns else set()
    down = set(draw(st.lists(st.sampled_from(conns), max_size=3))) if conns else set()
    subset = [w for w, code in zip(wants, codes, strict=True) if code >= _SPAN]
    earlier = distribute(wants=subset, accounts=accounts, unavailable=down_before)
    plan = distribute(wants=wants, accounts=accounts, current=earlier.assignment, unavailable=down)
    return wants, accounts, down, plan


new_want_st = st.builds(
    Want,
    key=st.sampled_from(["NSE:A", "NSE:S050x", "NSE:Z"]),
    tier=st.sampled_from(TIERS),
    priority=st.integers(0, 4),
    mode=st.sampled_from(MODES),
    on_fyers=st.booleans(),
    on_upstox=st.booleans(),
)


# --------------------------------------------------------------------------- checks


def importance(w: Want) -> tuple[int, int, str]:
    return (TIER_RANK[w.tier], -w.priority, w.key)


def shapes(w: Want) -> list[frozenset[str]]:
    """The provider sets of the placements a want needs (rules 2-4, stated independently)."""
    if w.on_fyers and w.tier == "critical" and w.on_upstox:
        return [frozenset({"fyers"}), frozenset({"upstox"})]
    if w.on_fyers or w.on_upstox:
        return [frozenset(p for p, on in (("fyers", w.on_fyers), ("upstox", w.on_upstox)) if on)]
    return []


def by_conn(assignment: Assignment) -> dict[Conn, dict[str, str]]:
    out: dict[Conn, dict[str, str]] = {}
    for key, placements in assignment.items():
        for p in placements:
            out.setdefault(p.conn, {})[key] = p.mode
    return out


def can_take(account: Account, modes: Mapping[str, str], extra: str | None = None) -> bool:
    """Caps of rule 2/3, checked with the codec's own check_mode_limits."""
    feeds = Counter(FEED_MODE[m] for m in modes.values())
    if extra is not None:
        feeds[FEED_MODE[extra]] += 1
    if sum(feeds.values()) > account.per_connection:
        return False
    if account.mode_limits is None:
        return True
    if any(mode not in account.mode_limits for mode in feeds):
        return False
    try:
        check_mode_limits(feeds, account.mode_limits)
    except CapExceeded:
        return False
    return True


def account_of(accounts: Sequence[Account], conn: Conn) -> Account | None:
    for a in accounts:
        if (a.provider, a.name) == (conn.provider, conn.account) and conn.slot < a.max_connections:
            return a
    return None


def check_plan(plan: Plan, wants: list[Want], accounts: list[Account], down: set[Conn]) -> None:
    """The invariants every plan has."""
    by_key = {w.key: w for w in wants}
    on = by_conn(plan.assignment)
    # Caps never exceeded; nothing on an unavailable or non-existent connection.
    assert plan.connections == {c: len(keys) for c, keys in on.items()}
    for conn, modes in on.items():
        account = account_of(accounts, conn)
        assert account is not None and conn not in down
        assert can_take(account, modes)
    for provider in ("fyers", "upstox"):
        for a in accounts:
            if a.provider == provider:
                used = [c for c in on if (c.provider, c.account) == (provider, a.name)]
                assert len(used) <= a.max_connections
    # Every want placed or left out, never both, never neither.
    assert set(plan.assignment) | set(plan.left_out) == set(by_key)
    assert not set(plan.assignment) & set(plan.left_out)
    assert all(plan.left_out.values())
    for key, placements in plan.assignment.items():
        w = by_key[key]
        providers = [p.conn.provider for p in placements]
        assert len(set(providers)) == len(providers) and 1 <= len(providers) <= 2
        assert all(w.on_fyers if p == "fyers" else w.on_upstox for p in providers)
        assert all(p.mode == w.mode for p in placements)
        # Rule 4: a critical listed by both is on both, or a note says why not.
        if len(shapes(w)) == 2:
            assert len(placements) == 2 or key in plan.notes
        else:
            assert len(placements) == 1 and key not in plan.notes
        for p in placements:
            if p.reason == "failover":
                assert p.home is not None and (p.home in down or account_of(accounts, p.home))
                assert p.home in down  # it returns as soon as home is back
            else:
                assert p.home is None
    for key, reason in plan.left_out.items():
        if not shapes(by_key[key]):
            assert reason == "not listed by any enabled provider"
        else:
            assert "no capacity" in reason
    check_no_wasted_room(plan, by_key, accounts, down)
    check_importance(plan, by_key, accounts)


def check_fyers_filled_in_order(plan: Plan, accounts: list[Account], down: set[Conn]) -> None:
    """Rule 2, fresh plans: FYERS connections are used in account order, slot by slot, each
    full before the next is opened: ceil(n / per_connection) of them, not spread thinly."""
    order = [c for c in all_conns(accounts) if c.provider == "fyers" and c not in down]
    counts = [plan.connections.get(c, 0) for c in order]
    used = sum(1 for n in counts if n)
    assert all(counts[:used]) and not any(counts[used:])
    full = [account_of(accounts, c).per_connection for c in order[: max(used - 1, 0)]]  # type: ignore[union-attr]
    assert counts[: len(full)] == full


def missing_shapes(plan: Plan, w: Want) -> list[frozenset[str]]:
    have = {p.conn.provider for p in plan.assignment.get(w.key, ())}
    return [s for s in shapes(w) if not s & have]


def check_no_wasted_room(
    plan: Plan, by_key: dict[str, Want], accounts: list[Account], down: set[Conn]
) -> None:
    """Rule 6: what is left out (or one-sided) really fits on no available connection."""
    on = by_conn(plan.assignment)
    for w in by_key.values():
        for providers in missing_shapes(plan, w):
            for conn in all_conns(accounts):
                if conn.provider in providers and conn not in down:
                    account = account_of(accounts, conn)
                    assert account is not None
                    assert not can_take(account, on.get(conn, {}), w.mode), (w.key, conn)


def check_importance(plan: Plan, by_key: dict[str, Want], accounts: list[Account]) -> None:
    """Rules 1+6: a want left out for capacity has no less important placed want that it
    could simply replace: one with the same (or a narrower) provider listing, of the same
    feed mode where per-mode limits apply. (Same listing is the issue's wording; "narrower"
    and the mode condition are what makes the swap possible.)"""
    limited = {a.provider for a in accounts if a.mode_limits is not None}
    placed = [
        (importance(by_key[key]), key, p, s)
        for key, placements in plan.assignment.items()
        for p in placements
        for s in shapes(by_key[key])
        if p.conn.provider in s
    ]
    for w in by_key.values():
        for providers in missing_shapes(plan, w):
            for rank, key, p, s in placed:
                if rank <= importance(w) or not s <= providers:
                    continue
                same_effect = all(
                    FEED_MODE[p.mode] == FEED_MODE[w.mode] or q not in limited for q in s
                )
                assert not same_effect, f"{w.key} left out while {key} on {p.conn}"


def moved_keys(before: Assignment, after: Plan, still_wanted: set[str]) -> list[tuple[str, Conn]]:
    """Current placements of still-wanted keys whose connection no longer carries the key."""
    now = {(k, p.conn) for k, ps in after.assignment.items() for p in ps}
    return [
        (k, p.conn)
        for k, ps in before.items()
        if k in still_wanted
        for p in ps
        if (k, p.conn) not in now
    ]


def check_diff(before: Assignment, plan: Plan) -> None:
    """subscribe/unsubscribe applied to ``before`` gives exactly ``plan.assignment``."""
    state = by_conn(before)
    for conn, keys in plan.unsubscribe.items():
        for key in keys:
            del state[conn][key]
    for conn, modes in plan.subscribe.items():
        state.setdefault(conn, {}).update(modes)
    assert {c: m for c, m in state.items() if m} == by_conn(plan.assignment)


def check_fixed_point(
    plan: Plan, wants: list[Want], accounts: list[Account], down: set[Conn]
) -> None:
    """Rule 5 (d): re-running with no change moves nothing and has an empty diff."""
    again = distribute(wants=wants, accounts=accounts, current=plan.assignment, unavailable=down)
    assert again.assignment == plan.assignment
    # Same keys left out / one-sided; a "displaced by X" reason is only said when it happens.
    assert again.left_out.keys() == plan.left_out.keys() and again.notes.keys() == plan.notes.keys()
    assert (again.moved, again.subscribe, again.unsubscribe) == (0, {}, {})


# --------------------------------------------------------------------------- properties


@PROPS
@given(scenario())
def test_invariants_hold_for_every_plan(case) -> None:
    """Caps, placed-xor-left-out, rule 4 both sides, no unavailable connection, importance."""
    wants, accounts, down, plan = case
    check_plan(plan, wants, accounts, down)
    fresh = distribute(wants=wants, accounts=accounts, unavailable=down)
    check_plan(fresh, wants, accounts, down)
    check_fyers_filled_in_order(fresh, accounts, down)
    check_diff({}, fresh)
    assert fresh.moved == 0 and fresh.unsubscribe == {}
    plan_summary(plan)


@PROPS
@given(scenario(), st.randoms(use_true_random=False))
def test_deterministic_whatever_the_input_order(case, rnd: random.Random) -> None:
    """Rule 5: same input twice -> equal plans; wants/unavailable shuffled -> equal plans."""
    wants, accounts, down, plan = case
    current = dict(plan.assignment)
    a = distribute(wants=wants, accounts=accounts, current=current, unavailable=down)
    shuffled = wants[:]
    rnd.shuffle(shuffled)
    items = list(current.items())
    rnd.shuffle(items)
    down_list = list(down)
    rnd.shuffle(down_list)
    b = distribute(
        wants=iter(shuffled), accounts=accounts, current=dict(items), unavailable=down_list
    )
    assert a == b


@PROPS
@given(scenario())
def test_rerun_without_change_is_a_fixed_point(case) -> None:
    """Rule 5 (d): 0 moves and an empty diff; the diff of any plan applies to its current."""
    wants, accounts, down, plan = case
    check_fixed_point(plan, wants, accounts, down)


@PROPS
@given(scenario(), new_want_st)
def test_adding_one_want(case, new: Want) -> None:
    """Rule 5 (a): at most one existing placement moves per placement the newcomer needs
    (one, or two for a critical listed by both), only when capacity is short, and only less
    important ones; a dropped one says who displaced it."""
    wants, accounts, down, plan = case
    wants = [w for w in wants if w.key != new.key]
    base = distribute(wants=wants, accounts=accounts, current=plan.assignment, unavailable=down)
    after = distribute(
        wants=[*wants, new], accounts=accounts, current=base.assignment, unavailable=down
    )
    check_plan(after, [*wants, new], accounts, down)
    check_diff(base.assignment, after)
    moved = moved_keys(base.assignment, after, {w.key for w in wants})
    assert after.moved == len(moved) <= len(shapes(new))
    by_key = {w.key: w for w in wants}
    for key, _conn in moved:
        assert importance(by_key[key]) > importance(new)
        assert new.key in after.assignment  # it took a place: capacity was short there
        if key in after.left_out:
            assert after.left_out[key].startswith(f"displaced by {new.key};")
    # Nothing else changes: every other key keeps all its placements.
    moved_set = {k for k, _ in moved}
    for key, placements in base.assignment.items():
        if key not in moved_set:
            assert {p.conn for p in placements} <= {p.conn for p in after.assignment[key]}
    check_fixed_point(after, [*wants, new], accounts, down)


@PROPS
@given(scenario(), st.data())
def test_removing_one_want(case, data: st.DataObject) -> None:
    """Rule 5 (b): removing a want moves nothing else, unless an instrument that was left
    out can now be carried by moving a less important one into room on its other provider;
    then that one moves (is never dropped)."""
    wants, accounts, down, plan = case
    if not wants:
        return
    gone = data.draw(st.sampled_from(wants))
    rest = [w for w in wants if w is not gone]
    after = distribute(wants=rest, accounts=accounts, current=plan.assignment, unavailable=down)
    check_plan(after, rest, accounts, down)
    check_diff(plan.assignment, after)
    moved = moved_keys(plan.assignment, after, {w.key for w in rest})
    assert after.moved == len(moved)
    starved = set(plan.left_out) | set(plan.notes)
    if not starved:
        assert moved == []
    newly = [k for k in after.assignment if k in starved]
    assert len(moved) <= len(newly)
    for key, _conn in moved:
        assert key in after.assignment  # pushed, never dropped
    assert not set(plan.assignment) - {gone.key} & set(after.left_out)
    check_fixed_point(after, rest, accounts, down)


@PROPS
@given(scenario(), st.data())
def test_connection_down_and_back(case, data: st.DataObject) -> None:
    """Rules 5 (c) and 7: marking one connection unavailable moves only its symbols (plus,
    when capacity is short, at most as many less important ones that they displace); they
    become failovers homed on it; when it is back they return."""
    wants, accounts, down, plan = case
    in_use = sorted(c for c in plan.connections if c not in down)
    if not in_use:
        return
    failed = data.draw(st.sampled_from(in_use))
    failed_keys = {k for k, ps in plan.assignment.items() if any(p.conn == failed for p in ps)}
    out = distribute(
        wants=wants, accounts=accounts, current=plan.assignment, unavailable=down | {failed}
    )
    check_plan(out, wants, accounts, down | {failed})
    check_diff(plan.assignment, out)
    moved = moved_keys(plan.assignment, out, {w.key for w in wants})
    assert out.moved == len(moved)
    others = [(k, c) for k, c in moved if c != failed]
    assert len(others) <= len(failed_keys)
    by_key = {w.key: w for w in wants}
    most = min((importance(by_key[k]) for k in failed_keys), default=None)
    for key, _conn in others:
        assert most is not None and importance(by_key[key]) > most
    for key, _conn in others:
        # Displaced by one of the failed connection's symbols (capacity short): either it
        # lost that placement and says who took it, or it moved into free room elsewhere
        # (another provider, or a connection with room for its feed mode only).
        if len(out.assignment.get(key, ())) < len(plan.assignment[key]):
            why = out.left_out.get(key) or out.notes.get(key, "")
            who = why.split(";")[0].split("displaced by ")[-1]
            assert "displaced by " in why and who in failed_keys, why
    for key in failed_keys:
        was = next(p for p in plan.assignment[key] if p.conn == failed)
        home = was.home if was.reason == "failover" else failed  # a failover keeps its home
        for p in out.assignment.get(key, ()):
            if p.conn.provider == failed.provider and not any(
                q.conn == p.conn for q in plan.assignment[key]
            ):
                assert p.reason == "failover" and p.home == home
    check_fixed_point(out, wants, accounts, down | {failed})
    # Back again: every failover homed on it returns there with its rule reason, unless
    # capacity is short and a more important instrument (left out so far) took that room.
    back = distribute(wants=wants, accounts=accounts, current=out.assignment, unavailable=down)
    check_plan(back, wants, accounts, down)
    check_diff(out.assignment, back)
    on_failed = by_conn(back.assignment).get(failed, {})
    for key, placements in out.assignment.items():
        for p in placements:
            if p.reason == "failover" and p.home == failed and key not in on_failed:
                assert any(importance(by_key[k]) < importance(by_key[key]) for k in on_failed)
    assert not [p for ps in back.assignment.values() for p in ps if p.home == failed]
    check_fixed_point(back, wants, accounts, down)


@PROPS
@given(scenario(), st.data())
def test_mode_change_stays_when_the_connection_can_hold_it(case, data: st.DataObject) -> None:
    """Rule 8: a changed mode keeps its connection when that connection can hold it;
    nothing else moves because of it unless capacity is short."""
    wants, accounts, down, plan = case
    placed = sorted(plan.assignment)
    if not placed:
        return
    key = data.draw(st.sampled_from(placed))
    mode = data.draw(st.sampled_from(MODES))
    changed = [
        Want(w.key, w.tier, w.priority, mode, w.on_fyers, w.on_upstox) if w.key == key else w
        for w in wants
    ]
    after = distribute(wants=changed, accounts=accounts, current=plan.assignment, unavailable=down)
    check_plan(after, changed, accounts, down)
    check_diff(plan.assignment, after)
    on = by_conn(plan.assignment)
    now = by_conn(after.assignment)
    rank = {w.key: importance(w) for w in changed}
    for p in plan.assignment[key]:
        others = {k: m for k, m in on[p.conn].items() if k != key}
        account = account_of(accounts, p.conn)
        assert account is not None
        if can_take(account, others, mode) and key not in now.get(p.conn, {}):
            # It could stay, so it only left because a more important instrument (now of the
            # same feed mode, maybe left out so far) took its place (rule 6).
            newcomers = now.get(p.conn, {}).keys() - on[p.conn].keys()
            assert any(rank[k] < rank[key] for k in newcomers)
    check_fixed_point(after, changed, accounts, down)
