"""Table tests for feeds.pool.distribution, one group per rule of the module docstring."""

from __future__ import annotations

import random

import pytest

from feeds.pool.distribution import (
    Account,
    Conn,
    Placement,
    Plan,
    Want,
    distribute,
    plan_summary,
)

LIMITS = {"ltpc": {"individual": 3, "combined": 2}, "full": {"individual": 2, "combined": 1}}


def fyers(max_connections: int = 3, per_connection: int = 2, name: str = "primary") -> Account:
    return Account(name, "fyers", max_connections, per_connection)


def upstox(
    max_connections: int = 2, per_connection: int = 10, limits=LIMITS, name: str = "main"
) -> Account:
    return Account(name, "upstox", max_connections, per_connection, limits)


def want(
    key: str,
    tier: str = "standard",
    priority: int = 0,
    mode: str = "ltp",
    on_fyers: bool = True,
    on_upstox: bool = True,
) -> Want:
    return Want(key, tier, priority, mode, on_fyers, on_upstox)  # type: ignore[arg-type]


def F(slot: int, account: str = "primary") -> Conn:
    return Conn("fyers", account, slot)


def U(slot: int, account: str = "main") -> Conn:
    return Conn("upstox", account, slot)


def where(plan: Plan, key: str) -> list[tuple[Conn, str]]:
    return [(p.conn, p.reason) for p in plan.assignment.get(key, ())]


def rerun(plan: Plan, wants: list[Want], accounts: list[Account], **kw) -> Plan:
    return distribute(wants=wants, accounts=accounts, current=plan.assignment, **kw)


# --------------------------------------------------------------------------- rule 1


def test_rule1_tier_then_priority_then_key() -> None:
    """Rule 1: tier rank, then priority descending, then key ascending decide who fits."""
    wants = [
        want("LOW", "low_frequency", 99, on_upstox=False),
        want("B", "high_frequency", 5, on_upstox=False),
        want("A", "high_frequency", 5, on_upstox=False),
        want("HI", "high_frequency", 7, on_upstox=False),
        want("CRIT", "critical", 0, on_upstox=False),
    ]
    plan = distribute(wants=wants, accounts=[fyers(1, 3)])
    assert set(plan.assignment) == {"CRIT", "HI", "A"}  # tie at priority 5: "A" < "B"
    assert set(plan.left_out) == {"B", "LOW"}


# --------------------------------------------------------------------------- rule 2


def test_rule2_fyers_filled_slot_by_slot_in_importance_order() -> None:
    """Rule 2: critical/high go to FYERS, slot 0 until full, then 1 ...; ceil(n/cap) used."""
    wants = [want(f"H{i}", "high_frequency", 10 - i) for i in range(5)]
    plan = distribute(wants=wants, accounts=[fyers(4, 2), upstox()])
    assert [where(plan, f"H{i}") for i in range(5)] == [
        [(F(0), "tier_rule")],
        [(F(0), "tier_rule")],
        [(F(1), "tier_rule")],
        [(F(1), "tier_rule")],
        [(F(2), "tier_rule")],
    ]
    assert plan.connections == {F(0): 2, F(1): 2, F(2): 1}  # 3 == ceil(5 / 2), slot 3 unused


def test_rule2_several_fyers_accounts_filled_in_the_order_given() -> None:
    """Rule 2: accounts are filled in the order given, each slot by slot."""
    accounts = [fyers(1, 2, "zeta"), fyers(2, 2, "alpha")]
    wants = [want(f"H{i}", "high_frequency", 10 - i, on_upstox=False) for i in range(3)]
    plan = distribute(wants=wants, accounts=accounts)
    assert plan.connections == {F(0, "zeta"): 2, F(0, "alpha"): 1}


def test_rule2_fyers_max_connections_respected_then_overflow() -> None:
    """Rules 2+3: beyond max_connections x per_connection a high instrument overflows."""
    wants = [want(f"H{i}", "high_frequency", 10 - i) for i in range(3)]
    plan = distribute(wants=wants, accounts=[fyers(1, 2), upstox()])
    assert where(plan, "H2") == [(U(0), "overflow")]


# --------------------------------------------------------------------------- rule 3


def test_rule3_standard_and_low_go_to_upstox() -> None:
    """Rule 3: standard/low_frequency listed by Upstox go there, even with FYERS room."""
    wants = [want("S", "standard"), want("L", "low_frequency")]
    plan = distribute(wants=wants, accounts=[fyers(), upstox()])
    assert where(plan, "S") == [(U(0), "tier_rule")]
    assert where(plan, "L") == [(U(0), "tier_rule")]


def test_rule3_upstox_individual_limit_when_one_mode() -> None:
    """Rule 3: one feed mode alone may reach its "individual" limit (ltpc 3 here)."""
    wants = [want(f"S{i}", priority=9 - i, on_fyers=False) for i in range(4)]
    plan = distribute(wants=wants, accounts=[upstox(1)])
    assert plan.connections == {U(0): 3}
    assert plan.left_out == {"S3": "no capacity: Upstox full"}


def test_rule3_upstox_combined_limit_when_modes_mixed() -> None:
    """Rule 3: a quote (feed "full") cannot join 3 ltpc keys: mixing drops ltpc to its
    combined limit 2. It goes to the next connection instead."""
    wants = [want(f"S{i}", priority=9 - i, on_fyers=False) for i in range(3)]
    wants.append(want("Q", priority=0, mode="quote", on_fyers=False))
    one = distribute(wants=wants, accounts=[upstox(1)])
    assert "Q" in one.left_out
    two = distribute(wants=wants, accounts=[upstox(2)])
    assert where(two, "Q") == [(U(1), "tier_rule")]


def test_rule3_quote_and_depth_share_the_full_limit() -> None:
    """Rule 3: quote and depth are both Upstox "full": individual limit 2 between them."""
    wants = [
        want("A", priority=3, mode="quote", on_fyers=False),
        want("B", priority=2, mode="depth", on_fyers=False),
        want("C", priority=1, mode="depth", on_fyers=False),
    ]
    plan = distribute(wants=wants, accounts=[upstox(1)])
    assert set(plan.assignment) == {"A", "B"}


def test_rule3_mode_missing_from_the_limits_is_not_placed_there() -> None:
    """Rule 3: like check_mode_limits, a feed mode the limits do not list cannot be used."""
    ltpc_only = {"ltpc": {"individual": 5, "combined": 5}}
    plan = distribute(
        wants=[want("Q", mode="quote", on_fyers=False)], accounts=[upstox(2, limits=ltpc_only)]
    )
    assert plan.left_out == {"Q": "no capacity: Upstox full"}


def test_rule3_combined_above_individual_is_read_as_individual() -> None:
    """Rule 3: UPSTOX.md prints full_d30 as individual 50 / combined 1500; a combined limit
    above the individual one is capped at it (the safe reading)."""
    odd = {"ltpc": {"individual": 1, "combined": 3}, "full": {"individual": 5, "combined": 5}}
    wants = [want("A", priority=2, on_fyers=False), want("B", priority=1, on_fyers=False)]
    wants.append(want("Q", priority=3, mode="quote", on_fyers=False))
    plan = distribute(wants=wants, accounts=[upstox(1, limits=odd)])
    assert set(plan.assignment) == {"Q", "A"}  # not A and B: 2 ltpc > 1


def test_rule3_upstox_per_connection_cap_and_connection_count() -> None:
    """Rule 3: the overall per-connection cap and max_connections hold on Upstox too."""
    wants = [want(f"S{i}", priority=9 - i, on_fyers=False) for i in range(5)]
    plan = distribute(wants=wants, accounts=[upstox(2, 2, limits=None)])
    assert plan.connections == {U(0): 2, U(1): 2}
    assert list(plan.left_out) == ["S4"]


def test_rule3_single_provider_instruments_stay_on_their_provider() -> None:
    """Rule 3: Upstox-only goes to Upstox (any tier); FYERS-only standard goes to FYERS
    after the critical/high ones."""
    wants = [
        want("UC", "critical", on_fyers=False),
        want("FS", "standard", 9, on_upstox=False),
        want("H1", "high_frequency", 1, on_upstox=False),
        want("H2", "high_frequency", 0, on_upstox=False),
    ]
    plan = distribute(wants=wants, accounts=[fyers(1, 2), upstox()])
    assert where(plan, "UC") == [(U(0), "tier_rule")]
    assert where(plan, "H1") == where(plan, "H2") == [(F(0), "tier_rule")]
    assert plan.left_out == {"FS": "no capacity: FYERS full"}
    roomy = distribute(wants=wants, accounts=[fyers(2, 2), upstox()])
    assert where(roomy, "FS") == [(F(1), "tier_rule")]


def test_rule3_standard_overflows_to_fyers_when_upstox_full() -> None:
    """Rule 3 (resolution): a standard listed by both goes to FYERS when Upstox is full."""
    wants = [want(f"S{i}", priority=9 - i) for i in range(4)]
    plan = distribute(wants=wants, accounts=[fyers(), upstox(1)])
    assert where(plan, "S3") == [(F(0), "overflow")]


# --------------------------------------------------------------------------- rule 4


def test_rule4_critical_on_both_providers() -> None:
    """Rule 4: a critical listed by both is carried by both; the Upstox one is the check."""
    plan = distribute(wants=[want("C", "critical", mode="quote")], accounts=[fyers(), upstox()])
    assert plan.assignment["C"] == (
        Placement(F(0), "quote", "tier_rule"),
        Placement(U(0), "quote", "cross_check"),
    )
    assert plan.notes == {}


def test_rule4_one_sided_when_a_provider_is_full() -> None:
    """Rule 4: when one side has no room the critical is carried by the other; notes say so."""
    wants = [want("C1", "critical", 2), want("C2", "critical", 1)]
    no_upstox_room = distribute(wants=wants, accounts=[fyers(), upstox(1, 1)])
    assert where(no_upstox_room, "C2") == [(F(0), "tier_rule")]
    assert no_upstox_room.notes == {"C2": "not carried by Upstox: no capacity: Upstox full"}
    no_fyers_room = distribute(wants=wants, accounts=[fyers(1, 1), upstox()])
    assert where(no_fyers_room, "C2") == [(U(0), "overflow")]  # no FYERS twin to check
    assert no_fyers_room.notes == {"C2": "not carried by FYERS: no capacity: FYERS full"}


def test_rule4_only_critical_gets_a_cross_check() -> None:
    """Rule 4: high_frequency instruments get one placement."""
    plan = distribute(wants=[want("H", "high_frequency")], accounts=[fyers(), upstox()])
    assert where(plan, "H") == [(F(0), "tier_rule")]


# --------------------------------------------------------------------------- rule 5


def _mixed() -> tuple[list[Want], list[Account]]:
    wants = [
        want("C", "critical", 5),
        want("H1", "high_frequency", 4),
        want("H2", "high_frequency", 3, mode="quote"),
        want("S1", "standard", 2),
        want("S2", "standard", 1, mode="depth", on_fyers=False),
        want("L", "low_frequency", 0, on_upstox=False),
    ]
    return wants, [fyers(3, 2), upstox(2, 3)]


def test_rule5_rerun_without_change_moves_nothing() -> None:
    """Rule 5: same input -> same output; fed back, a plan is a fixed point."""
    wants, accounts = _mixed()
    plan = distribute(wants=wants, accounts=accounts)
    again = rerun(plan, wants, accounts)
    assert again.assignment == plan.assignment
    assert (again.moved, again.subscribe, again.unsubscribe) == (0, {}, {})


def test_rule5_deterministic_whatever_the_input_order() -> None:
    """Rule 5: shuffling the wants does not change the plan."""
    wants, accounts = _mixed()
    plan = distribute(wants=wants, accounts=accounts)
    for seed in range(5):
        shuffled = wants[:]
        random.Random(seed).shuffle(shuffled)
        assert distribute(wants=shuffled, accounts=accounts) == plan


def test_rule5_adding_an_instrument_moves_nothing_when_there_is_room() -> None:
    """Rule 5: a newcomer, even the most important, takes free room; nobody moves."""
    wants, accounts = _mixed()
    plan = distribute(wants=wants, accounts=accounts)
    newcomer = want("C0", "critical", 99)
    after = rerun(plan, [*wants, newcomer], accounts)
    assert after.moved == 0
    assert all(after.assignment[k] == v for k, v in plan.assignment.items())
    assert after.subscribe == {F(2): {"C0": "ltp"}, U(1): {"C0": "ltp"}}
    assert after.unsubscribe == {}


def test_rule5_more_important_newcomer_displaces_the_least_important() -> None:
    """Rules 5+6: capacity short: the newcomer takes the least important one's place."""
    accounts = [fyers(1, 2)]
    wants = [
        want("H", "high_frequency", 5, on_upstox=False),
        want("L1", priority=2, on_upstox=False),
    ]
    wants.append(want("L2", priority=1, on_upstox=False))
    plan = distribute(wants=wants, accounts=accounts)
    assert plan.left_out == {"L2": "no capacity: FYERS full"}
    after = rerun(plan, [*wants, want("H2", "high_frequency", 1, on_upstox=False)], accounts)
    assert after.moved == 1
    assert where(after, "H2") == [(F(0), "tier_rule")]
    assert after.left_out["L1"] == "displaced by H2; no capacity: FYERS full"
    assert after.unsubscribe == {F(0): ("L1",)}
    # A less important newcomer does not displace anyone.
    late = rerun(plan, [*wants, want("L0", "low_frequency", on_upstox=False)], accounts)
    assert late.moved == 0 and "L0" in late.left_out


def test_rule5_displaced_instrument_moves_to_free_room_on_its_other_provider() -> None:
    """Rule 5: a critical FYERS-only newcomer, FYERS full of a high listed by both: the high
    moves to Upstox (one move) rather than leaving the critical out."""
    accounts = [fyers(1, 1), upstox()]
    wants = [want("H", "high_frequency")]
    plan = distribute(wants=wants, accounts=accounts)
    after = rerun(plan, [*wants, want("C", "critical", on_upstox=False)], accounts)
    assert where(after, "C") == [(F(0), "tier_rule")]
    assert where(after, "H") == [(U(0), "overflow")]
    assert (after.moved, after.left_out) == (1, {})


def test_rule5_removing_an_instrument_moves_nothing_else() -> None:
    """Rule 5: the freed room stays free; no compaction."""
    wants, accounts = _mixed()
    plan = distribute(wants=wants, accounts=accounts)
    after = rerun(plan, [w for w in wants if w.key != "C"], accounts)
    assert after.moved == 0
    assert after.unsubscribe == {F(0): ("C",), U(0): ("C",)}
    assert after.subscribe == {}


def test_rule5_removed_connection_moves_only_its_symbols() -> None:
    """Rule 5: lowering max_connections moves exactly the symbols of the removed slots."""
    wants = [want(f"H{i}", "high_frequency", 9 - i) for i in range(5)]
    plan = distribute(wants=wants, accounts=[fyers(3, 2), upstox()])
    after = rerun(plan, wants, [fyers(2, 2), upstox()])
    assert after.moved == 1
    assert where(after, "H4") == [(U(0), "overflow")]  # not "failover": the slot is gone
    assert all(after.assignment[f"H{i}"] == plan.assignment[f"H{i}"] for i in range(4))


def test_rule5_preference_change_moves_to_the_preferred_provider_if_room() -> None:
    """Rule 5: standard -> high changes the provider preference: to FYERS if it has room,
    else it stays on its Upstox connection (as overflow, no move)."""
    accounts = [fyers(1, 1), upstox()]
    plan = distribute(wants=[want("X", "standard")], accounts=accounts)
    assert where(plan, "X") == [(U(0), "tier_rule")]
    promoted = rerun(plan, [want("X", "high_frequency")], accounts)
    assert where(promoted, "X") == [(F(0), "tier_rule")] and promoted.moved == 1
    full = [want("X", "high_frequency"), want("H", "high_frequency", 9)]
    plan2 = distribute(wants=[want("X", "standard"), full[1]], accounts=accounts)
    stays = rerun(plan2, full, accounts)
    assert where(stays, "X") == [(U(0), "overflow")] and stays.moved == 0


def test_rule5_overflow_is_sticky_when_room_appears() -> None:
    """Rule 5 (resolution): an overflowed high stays on Upstox when FYERS room appears."""
    accounts = [fyers(1, 1), upstox()]
    wants = [want("H1", "high_frequency", 2), want("H2", "high_frequency", 1)]
    plan = distribute(wants=wants, accounts=accounts)
    assert where(plan, "H2") == [(U(0), "overflow")]
    after = rerun(plan, wants[1:], accounts)
    assert where(after, "H2") == [(U(0), "overflow")] and after.moved == 0
    fresh = distribute(wants=wants[1:], accounts=accounts)  # a fresh plan rebalances
    assert where(fresh, "H2") == [(F(0), "tier_rule")]


def test_rule5_shrunk_caps_release_the_least_important() -> None:
    """Rule 5: "caps still respected": if a connection's cap shrinks, its least important
    instruments move."""
    wants = [want(f"H{i}", "high_frequency", 9 - i) for i in range(4)]
    plan = distribute(wants=wants, accounts=[fyers(2, 4), upstox()])
    after = rerun(plan, wants, [fyers(2, 2), upstox()])
    assert [c for c, _ in where(after, "H2") + where(after, "H3")] == [F(1), F(1)]
    assert after.moved == 2


# --------------------------------------------------------------------------- rule 6


def test_rule6_left_out_reasons() -> None:
    """Rule 6: every left-out key says why."""
    wants = [
        want("NONE", on_fyers=False, on_upstox=False),
        want("BOTH1", priority=1),
        want("BOTH2", priority=0),
        want("FONLY", "high_frequency", on_upstox=False),
    ]
    plan = distribute(wants=wants, accounts=[fyers(0, 2), upstox(1, 1)])
    assert plan.left_out == {
        "NONE": "not listed by any enabled provider",
        "BOTH2": "no capacity: Upstox full; no FYERS connection available",
        "FONLY": "no capacity: no FYERS connection available",
    }
    both_full = distribute(wants=wants[1:3], accounts=[fyers(1, 0), upstox(1, 1)])
    assert both_full.left_out == {"BOTH2": "no capacity: FYERS and Upstox full"}


# --------------------------------------------------------------------------- rule 7


def test_rule7_failover_to_another_fyers_connection_then_back_home() -> None:
    """Rule 7: an unavailable connection gets nothing; its symbols open the next FYERS slot
    (reason failover, home = it); when it is back they return and the spare slot empties."""
    wants = [want(f"H{i}", "high_frequency", 9 - i) for i in range(4)]
    accounts = [fyers(3, 2), upstox()]
    plan = distribute(wants=wants, accounts=accounts)
    assert plan.connections == {F(0): 2, F(1): 2}
    down = rerun(plan, wants, accounts, unavailable={F(0)})
    assert down.assignment["H0"] == (Placement(F(2), "ltp", "failover", home=F(0)),)
    assert down.assignment["H1"] == (Placement(F(2), "ltp", "failover", home=F(0)),)
    assert down.moved == 2 and F(0) not in down.connections
    assert down.unsubscribe == {F(0): ("H0", "H1")}
    still_down = rerun(down, wants, accounts, unavailable={F(0)})
    assert still_down.moved == 0 and still_down.assignment == down.assignment
    back = rerun(down, wants, accounts)
    assert back.assignment == plan.assignment
    assert back.connections == {F(0): 2, F(1): 2} and back.moved == 2


def test_rule7_failover_to_upstox_when_fyers_is_full() -> None:
    """Rule 7: no FYERS room: the failed connection's symbols go to Upstox, and come back."""
    wants = [want(f"H{i}", "high_frequency", 9 - i) for i in range(4)]
    accounts = [fyers(2, 2), upstox()]
    plan = distribute(wants=wants, accounts=accounts)
    down = rerun(plan, wants, accounts, unavailable=[F(1)])
    assert where(down, "H2") == where(down, "H3") == [(U(0), "failover")]
    back = rerun(down, wants, accounts)
    assert back.assignment == plan.assignment


def test_rule7_upstox_failover_prefers_the_other_upstox_connection() -> None:
    """Rule 7: an Upstox symbol fails over to another Upstox connection before FYERS."""
    wants = [want("S", "standard")]
    accounts = [fyers(), upstox(2, 3)]
    plan = distribute(wants=wants, accounts=accounts)
    down = rerun(plan, wants, accounts, unavailable=[U(0)])
    assert down.assignment["S"] == (Placement(U(1), "ltp", "failover", home=U(0)),)
    both_down = rerun(down, wants, accounts, unavailable=[U(0), U(1)])
    assert both_down.assignment["S"] == (Placement(F(0), "ltp", "failover", home=U(0)),)
    back = rerun(both_down, wants, accounts)
    assert back.assignment == plan.assignment


def test_rule7_failover_may_displace_a_less_important_one() -> None:
    """Rules 6+7 (resolution): with no room anywhere, a failed connection's more important
    symbol displaces the least important placement (else the next call would)."""
    wants = [want("H", "high_frequency", on_upstox=False), want("L", on_upstox=False)]
    accounts = [fyers(2, 1)]
    plan = distribute(wants=wants, accounts=accounts)
    down = rerun(plan, wants, accounts, unavailable=[F(0)])
    assert where(down, "H") == [(F(1), "failover")]
    assert down.left_out == {"L": "displaced by H; no capacity: FYERS full"}


def test_rule7_failover_without_home_returns_to_preferred_provider() -> None:
    """Rule 7: a caller that drops Placement.home still gets failovers back home."""
    wants = [want("H", "high_frequency")]
    accounts = [fyers(1, 1), upstox()]
    current = {"H": (Placement(U(0), "ltp", "failover"),)}
    plan = distribute(wants=wants, accounts=accounts, current=current)
    assert where(plan, "H") == [(F(0), "tier_rule")]


# --------------------------------------------------------------------------- rule 8


def test_rule8_mode_change_in_place_when_the_connection_can_hold_it() -> None:
    """Rule 8: the new mode fits: a re-subscribe on the same connection, no move."""
    accounts = [fyers(), upstox(1)]
    plan = distribute(wants=[want("S", on_fyers=False)], accounts=accounts)
    after = rerun(plan, [want("S", mode="depth", on_fyers=False)], accounts)
    assert after.assignment["S"] == (Placement(U(0), "depth", "tier_rule"),)
    assert after.subscribe == {U(0): {"S": "depth"}} and after.unsubscribe == {}
    assert after.moved == 0


def test_rule8_mode_change_moves_when_the_connection_cannot_hold_it() -> None:
    """Rule 8: 2 ltpc + 1 full is at the combined limits; a second full must move."""
    wants = [
        want("A", priority=3, on_fyers=False),
        want("B", priority=2, on_fyers=False),
        want("C", priority=1, mode="quote", on_fyers=False),
    ]
    accounts = [upstox(2)]
    plan = distribute(wants=wants, accounts=accounts)
    assert plan.connections == {U(0): 3}
    changed = [wants[0], want("B", priority=2, mode="quote", on_fyers=False), wants[2]]
    after = rerun(plan, changed, accounts)
    assert where(after, "B") == [(U(1), "tier_rule")]
    assert after.moved == 1
    assert after.subscribe == {U(1): {"B": "quote"}}
    assert after.unsubscribe == {U(0): ("B",)}


# --------------------------------------------------------------------------- misc


def test_plan_lists_the_most_important_first() -> None:
    """Rule 1: assignment, left_out and subscribe are in importance order."""
    wants = [want(f"S{i}", priority=i, on_fyers=False) for i in range(6)]
    plan = distribute(wants=wants, accounts=[upstox(1, 4, limits=None)])
    assert list(plan.assignment) == ["S5", "S4", "S3", "S2"]
    assert list(plan.left_out) == ["S1", "S0"]
    assert list(plan.subscribe[U(0)]) == ["S5", "S4", "S3", "S2"]


def test_summary_counts() -> None:
    wants, accounts = _mixed()
    wants.append(want("NONE", on_fyers=False, on_upstox=False))
    summary = plan_summary(distribute(wants=wants, accounts=accounts))
    assert summary["instruments"] == 6
    assert summary["by_provider"] == {"fyers": 4, "upstox": 3}
    assert summary["by_reason"] == {"cross_check": 1, "tier_rule": 6}
    assert summary["connections_in_use"] == {"fyers": 2, "upstox": 1}
    assert summary["left_out_reasons"] == {"not listed by any enabled provider": 1}
    assert summary["subscribe"] == 7 and summary["moved"] == 0


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate want"):
        distribute(wants=[want("A"), want("A")], accounts=[])
    with pytest.raises(ValueError, match="duplicate account"):
        distribute(wants=[], accounts=[fyers(), fyers()])
    with pytest.raises(ValueError, match="unknown tier"):
        distribute(wants=[want("A", "urgent")], accounts=[])


def test_no_accounts_no_wants() -> None:
    plan = distribute(wants=[], accounts=[])
    assert plan == Plan({}, {}, {}, {}, {}, 0)
