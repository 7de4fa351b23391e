"""Tests for feeds.pool.health: one group per rule of the module docstring, then properties."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.pool.health import STATES, HealthTracker
from feeds.providers.base import ClientState

# Every state at once, in the order the properties draw them.
ALL_STATES = ["connecting", "live", "degraded", "down", "closed"]


@dataclass(frozen=True)
class Step:
    """One call and what it must give: ``op`` is a state to observe, "tick" or "forget"."""

    now: float
    op: str
    conn: str = "a"
    returns: bool | None = None  # None: not checked ("forget" returns nothing)
    unavailable: frozenset[str] | None = None  # None: not checked


def play(tracker: HealthTracker[str], steps: Sequence[Step]) -> None:
    for i, step in enumerate(steps):
        if step.op == "tick":
            got: bool | None = tracker.tick(step.now)
        elif step.op == "forget":
            tracker.forget(step.conn)
            got = None
        else:
            got = tracker.observe(step.conn, step.op, step.now)
        where = f"step {i}: {step}"
        if step.returns is not None:
            assert got is step.returns, where
        if step.unavailable is not None:
            assert tracker.unavailable() == step.unavailable, where


def S(now: float, op: str, returns: bool | None = None, *down: str, conn: str = "a") -> Step:
    """A step; given ``returns`` (or ``down``), also exactly ``down`` unavailable afterwards."""
    checked = returns is not None or bool(down)
    return Step(now, op, conn, returns, frozenset(down) if checked else None)


def tracker(**overrides: float) -> HealthTracker[str]:
    return HealthTracker[str](**overrides)


# --- states ------------------------------------------------------------------------------


def test_states_are_the_client_states() -> None:
    assert {state.value for state in ClientState} == STATES


def test_enum_and_str_are_the_same() -> None:
    by_enum, by_str = tracker(), tracker()
    assert by_enum.observe("a", ClientState.DOWN, 0.0) is by_str.observe("a", "down", 0.0) is True
    assert by_enum.unavailable() == by_str.unavailable() == frozenset({"a"})
    by_enum.observe("a", ClientState.LIVE, 1.0)
    assert by_enum.status("a", 1.0)["state"] == "live"
    assert type(by_enum.status("a", 1.0)["state"]) is str


def test_unknown_state_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown client state"):
        tracker().observe("a", "up", 0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"recover_after": -1.0},
        {"connect_grace": -0.1},
        {"flap_window": float("nan")},
        {"recover_after": 10.0, "max_recover_after": 5.0},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        HealthTracker[str](**kwargs)


# --- rule 1: down / degraded at once -----------------------------------------------------

# (history before the failure, whether "a" was available right before it)
BEFORE_FAILURE: list[tuple[list[str], bool]] = [
    ([], True),  # never observed
    (["connecting"], True),  # brand-new, inside its grace
    (["connecting", "live"], True),
    (["live"], True),
    (["down"], False),
    (["degraded"], False),
    (["down", "connecting"], False),
    (["down", "connecting", "live"], False),  # recovering
]


@pytest.mark.parametrize("failure", ["down", "degraded"])
@pytest.mark.parametrize(("history", "was_available"), BEFORE_FAILURE)
def test_down_or_degraded_is_unavailable_at_once(
    failure: str, history: list[str], was_available: bool
) -> None:
    t = tracker()
    for i, state in enumerate(history):
        t.observe("a", state, i * 0.1)
    assert t.observe("a", failure, 1.0) is was_available
    assert t.unavailable() == {"a"}
    assert t.status("a", 1.0)["available"] is False
    assert t.status("a", 1.0)["reason"] == failure


# --- rule 2: connecting ------------------------------------------------------------------


def test_new_connection_is_available_during_its_connect_grace() -> None:
    play(
        tracker(connect_grace=3.0),
        [
            S(0.0, "connecting", False),
            S(1.0, "tick", False),
            S(2.0, "connecting", False),  # repeated: the grace still runs from 0.0
            S(2.9, "tick", False),
            S(3.0, "tick", True, "a"),  # past the grace
            S(3.2, "tick", False, "a"),
            S(4.0, "connecting", False, "a"),
            S(5.0, "live", False, "a"),  # a failure like any other: recovery from 5.0
            S(9.9, "tick", False, "a"),
            S(10.0, "tick", True),
        ],
    )


def test_new_connection_that_connects_within_its_grace_never_fails_over() -> None:
    play(
        tracker(connect_grace=3.0),
        [
            S(0.0, "connecting", False),
            S(2.5, "live", False),
            S(3.0, "tick", False),
            S(100.0, "tick", False),
        ],
    )


def test_grace_expiry_is_noticed_by_observe_without_ticks() -> None:
    t = tracker(connect_grace=3.0, recover_after=5.0)
    t.observe("a", "connecting", 0.0)
    # The grace ran out at 3.0: the live at 10.0 starts a recovery, it is not a first connect.
    assert t.observe("a", "live", 10.0) is True
    assert t.unavailable() == {"a"}
    assert t.status("a", 10.0)["since"] == 3.0
    assert t.tick(14.9) is False
    assert t.tick(15.0) is True
    assert t.unavailable() == frozenset()


@pytest.mark.parametrize(
    ("history", "reason"),
    [
        (["down"], "reconnecting (down)"),
        (["degraded"], "reconnecting (degraded)"),
        (["live", "down"], "reconnecting (down)"),
        (["connecting", "live"], "reconnecting (connection lost)"),  # live -> connecting
        (["live"], "reconnecting (connection lost)"),
    ],
)
def test_a_connection_that_was_not_new_gets_no_connect_grace(
    history: list[str], reason: str
) -> None:
    t = tracker(connect_grace=3.0)
    for i, state in enumerate(history):
        t.observe("a", state, i * 0.1)
    t.observe("a", "connecting", 1.0)
    assert t.unavailable() == {"a"}  # at once, no grace
    assert t.tick(1.5) is False
    assert t.status("a", 1.5)["reason"] == reason


def test_zero_connect_grace_fails_a_connecting_new_connection_at_once() -> None:
    play(tracker(connect_grace=0.0), [S(0.0, "connecting", True, "a")])


# --- rule 3: recovery hysteresis ---------------------------------------------------------


def test_recovery_needs_recover_after_seconds_of_continuous_live() -> None:
    play(
        tracker(recover_after=5.0),
        [
            S(0.0, "down", True, "a"),
            S(1.0, "connecting", False, "a"),
            S(2.0, "live", False, "a"),
            S(4.0, "live", False, "a"),  # repeated live does not restart the clock
            S(6.9, "tick", False, "a"),
            S(7.0, "tick", True),
            S(8.0, "live", False),
        ],
    )


@pytest.mark.parametrize("blip", ["degraded", "down", "connecting"])
def test_a_blip_resets_the_recovery_clock(blip: str) -> None:
    play(
        tracker(recover_after=5.0),
        [
            S(0.0, "down", True, "a"),
            S(1.0, "live", False, "a"),
            S(5.0, blip, False, "a"),  # 4 s of live, not enough; not a new failure either
            S(5.5, "live", False, "a"),
            S(6.0, "tick", False, "a"),  # 5 s after the first live: the clock restarted
            S(10.4, "tick", False, "a"),
            S(10.5, "tick", True),
        ],
    )
    # A blip while still unavailable is not a flap.
    t = tracker(recover_after=5.0)
    play(t, [S(0.0, "down"), S(1.0, "live"), S(2.0, blip), S(3.0, "live"), S(8.0, "tick", True)])
    assert t.status("a", 8.0)["flaps"] == 0


def test_recovery_is_noticed_by_observe_at_its_due_time() -> None:
    t = tracker(recover_after=5.0)
    t.observe("a", "down", 0.0)
    t.observe("a", "live", 1.0)
    assert t.observe("a", "live", 9.0) is True  # no tick in between
    assert t.status("a", 9.0)["since"] == 6.0


def test_zero_recover_after_recovers_on_the_first_live() -> None:
    play(tracker(recover_after=0.0), [S(0.0, "down", True, "a"), S(1.0, "live", True)])


def test_status_while_recovering() -> None:
    t = tracker(recover_after=5.0)
    t.observe("a", "down", 0.0)
    t.observe("a", "live", 2.0)
    assert t.status("a", 3.5) == {
        "available": False,
        "state": "live",
        "since": 0.0,
        "flaps": 0,
        "recover_after": 5.0,
        "recovering_for": 1.5,
        "reason": "recovering",
    }
    t.tick(7.0)
    status = t.status("a", 8.0)
    assert status["available"] is True
    assert status["since"] == 7.0
    assert status["recovering_for"] is None
    assert status["reason"] == "live"


# --- rule 4: flapping --------------------------------------------------------------------


def test_flapping_doubles_the_recovery_delay_up_to_the_cap_then_resets() -> None:
    t = tracker(recover_after=5.0, flap_window=60.0, max_recover_after=20.0)

    def recover_after() -> object:
        return t.status("a", 0.0)["recover_after"]

    def flaps() -> object:
        return t.status("a", 0.0)["flaps"]

    # The first failure is not a flap: there was no recovery before it.
    play(t, [S(0.0, "down", True, "a"), S(1.0, "live"), S(5.9, "tick", False, "a")])
    play(t, [S(6.0, "tick", True)])  # recovered at 6.0 after 5 s
    assert (recover_after(), flaps()) == (5.0, 0)

    # Down again 4 s after the recovery: a flap, the delay doubles to 10 s.
    play(t, [S(10.0, "down", True, "a"), S(11.0, "live"), S(20.9, "tick", False, "a")])
    assert (recover_after(), flaps()) == (10.0, 1)
    play(t, [S(21.0, "tick", True)])

    # Again within the window: 20 s.
    play(t, [S(30.0, "degraded", True, "a"), S(31.0, "live"), S(50.9, "tick", False, "a")])
    assert (recover_after(), flaps()) == (20.0, 2)
    play(t, [S(51.0, "tick", True)])

    # Again: 40 s, capped at 20 s.
    play(t, [S(60.0, "down", True, "a"), S(61.0, "live"), S(80.9, "tick", False, "a")])
    assert (recover_after(), flaps()) == (20.0, 3)
    play(t, [S(81.0, "tick", True)])

    # A flap_window (60 s) of continuous availability: back to the base.
    play(t, [S(140.9, "tick", False)])
    assert (recover_after(), flaps()) == (20.0, 3)
    play(t, [S(141.0, "tick", False)])  # availability did not change
    assert (recover_after(), flaps()) == (5.0, 0)

    # The next failure is not a flap and recovers after the base 5 s.
    play(t, [S(150.0, "down", True, "a"), S(151.0, "live"), S(155.9, "tick", False, "a")])
    assert (recover_after(), flaps()) == (5.0, 0)
    play(t, [S(156.0, "tick", True)])


def test_a_failure_past_the_flap_window_is_not_a_flap_even_without_ticks() -> None:
    t = tracker(recover_after=5.0, flap_window=60.0)
    play(t, [S(0.0, "down"), S(1.0, "live"), S(6.0, "tick", True)])  # recovered at 6.0
    play(t, [S(10.0, "down"), S(11.0, "live"), S(21.0, "tick", True)])  # flap: 10 s
    assert t.status("a", 21.0)["recover_after"] == 10.0
    # No tick between 21.0 and 81.0: the reset is still due at 81.0, before this failure.
    play(t, [S(81.0, "down", True, "a")])
    assert (t.status("a", 81.0)["recover_after"], t.status("a", 81.0)["flaps"]) == (5.0, 0)


def test_a_failure_just_inside_the_flap_window_is_a_flap() -> None:
    t = tracker(recover_after=5.0, flap_window=60.0)
    play(t, [S(0.0, "down"), S(1.0, "live"), S(6.0, "tick", True), S(65.75, "down", True, "a")])
    assert t.status("a", 65.75)["recover_after"] == 10.0


def test_grace_expiry_of_a_new_connection_is_not_a_flap() -> None:
    t = tracker(connect_grace=3.0, recover_after=5.0)
    play(t, [S(0.0, "connecting"), S(3.0, "tick", True, "a")])
    assert t.status("a", 3.0)["recover_after"] == 5.0


# --- rule 5: closed / forget -------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "returns"),
    [
        ([], False),  # unknown
        (["live"], False),  # available
        (["connecting"], False),  # available in its grace
        (["down"], True),  # leaves the unavailable set
        (["down", "live"], True),  # recovering
    ],
)
def test_closed_removes_the_connection(history: list[str], returns: bool) -> None:
    t = tracker()
    for i, state in enumerate(history):
        t.observe("a", state, i * 0.1)
    t.observe("b", "down", 0.0)
    assert t.observe("a", ClientState.CLOSED, 1.0) is returns
    assert t.unavailable() == {"b"}
    assert t.status("a", 1.0)["reason"] == "unknown"
    assert t.tick(100.0) is False


def test_forget_removes_the_connection() -> None:
    t = tracker()
    play(t, [S(0.0, "down", True, "a"), S(0.0, "down", True, "a", "b", conn="b")])
    play(t, [S(1.0, "forget", None, "b"), S(1.0, "forget", None, "b", conn="z")])
    assert t.status("a", 1.0)["reason"] == "unknown"
    assert t.tick(100.0) is False


def test_a_removed_connection_comes_back_brand_new() -> None:
    t = tracker(connect_grace=3.0, recover_after=5.0, flap_window=60.0)
    play(t, [S(0.0, "down"), S(1.0, "live"), S(6.0, "tick"), S(7.0, "down", True, "a")])
    assert t.status("a", 7.0)["flaps"] == 1
    t.forget("a")
    # A new client on the same id: connect grace again, base delay, no flap history.
    play(t, [S(8.0, "connecting", False), S(10.9, "tick", False), S(11.0, "tick", True, "a")])
    status = t.status("a", 11.0)
    assert (status["flaps"], status["recover_after"]) == (0, 5.0)


# --- rule 6: unknown connections ---------------------------------------------------------


def test_unknown_connections_are_available() -> None:
    t = tracker()
    assert t.unavailable() == frozenset()
    assert t.tick(0.0) is False
    assert t.status(("fyers", "primary", 0), 0.0) == {
        "available": True,
        "state": None,
        "since": None,
        "flaps": 0,
        "recover_after": 5.0,
        "recovering_for": None,
        "reason": "unknown",
    }


# --- return values, many connections, time ------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "returns"),
    [
        ("live", "live", False),
        ("connecting", "connecting", False),
        ("connecting", "live", False),
        ("live", "degraded", True),
        ("down", "down", False),
        ("down", "degraded", False),
        ("degraded", "live", False),  # recovery has only started
        ("down", "connecting", False),
    ],
)
def test_observe_returns_whether_availability_changed(
    first: str, second: str, returns: bool
) -> None:
    t = tracker()
    t.observe("a", first, 0.0)
    assert t.observe("a", second, 1.0) is returns


def test_many_connections_are_independent() -> None:
    t = HealthTracker[tuple[str, int]](connect_grace=3.0, recover_after=5.0)
    f0, f1, u0, u1 = ("fyers", 0), ("fyers", 1), ("upstox", 0), ("upstox", 1)
    assert t.observe(f0, "live", 0.0) is False
    assert t.observe(f1, "live", 0.0) is False
    assert t.observe(u0, "connecting", 0.0) is False
    assert t.observe(f1, "down", 1.0) is True
    assert t.unavailable() == {f1}
    assert t.observe(u1, "degraded", 1.5) is True
    assert t.unavailable() == {f1, u1}
    assert t.observe(f1, "live", 2.0) is False
    assert t.tick(3.0) is True  # u0's grace ran out; f1 still recovering
    assert t.unavailable() == {f1, u1, u0}
    assert t.observe(u0, "live", 3.5) is False
    assert t.tick(7.0) is True  # f1 back (live since 2.0)
    assert t.unavailable() == {u1, u0}
    assert t.tick(8.4) is False
    assert t.tick(8.5) is True  # u0 back (live since 3.5)
    assert t.unavailable() == {u1}
    assert t.status(f0, 8.5)["since"] == 0.0  # never touched


def test_observe_does_not_report_other_connections_due_changes() -> None:
    t = tracker(connect_grace=3.0)
    t.observe("a", "connecting", 0.0)
    assert t.observe("b", "live", 10.0) is False  # "a"'s grace ran out, but that is tick's
    assert t.unavailable() == frozenset()
    assert t.tick(10.0) is True
    assert t.unavailable() == {"a"}
    assert t.status("a", 10.0)["since"] == 3.0


def test_time_going_backwards_is_read_as_the_latest_time() -> None:
    t = tracker(recover_after=5.0)
    t.observe("a", "down", 10.0)
    t.observe("a", "live", 4.0)  # read as 10.0
    assert t.tick(14.9) is False
    assert t.tick(15.0) is True


# --- properties --------------------------------------------------------------------------

OPS = [*ALL_STATES, "tick", "forget"]
events_st = st.lists(
    st.tuples(
        st.integers(0, 2),  # connection
        st.sampled_from(OPS),
        st.integers(0, 40).map(lambda q: q / 4),  # dt: quarter seconds, exact sums
    ),
    max_size=60,
)
settings_st = st.fixed_dictionaries(
    {
        "recover_after": st.sampled_from([0.0, 0.5, 2.0, 5.0]),
        "connect_grace": st.sampled_from([0.0, 1.0, 3.0]),
        "flap_window": st.sampled_from([0.0, 10.0, 60.0]),
        "max_factor": st.sampled_from([1.0, 2.0, 8.0]),
    }
)
PROPS = settings(max_examples=400, deadline=None)


def make(cfg: dict[str, float]) -> HealthTracker[int]:
    return HealthTracker[int](
        recover_after=cfg["recover_after"],
        connect_grace=cfg["connect_grace"],
        flap_window=cfg["flap_window"],
        max_recover_after=cfg["recover_after"] * cfg["max_factor"],
    )


@PROPS
@given(settings_st, events_st)
def test_property_failures_are_immediate_and_recovery_needs_continuous_live(
    cfg: dict[str, float], events: list[tuple[int, str, float]]
) -> None:
    t = make(cfg)
    base, cap = cfg["recover_after"], cfg["recover_after"] * cfg["max_factor"]
    now = 0.0
    last: dict[int, str] = {}  # last observed state, while the connection is known
    failed: set[int] = set()  # observed down / degraded since it became known
    live_from: dict[int, float] = {}  # start of the current run of live observations
    for conn, op, dt in events:
        now += dt
        before = t.unavailable()
        if op == "tick":
            assert t.tick(now) is (t.unavailable() != before)
        elif op == "forget":
            t.forget(conn)
            assert t.unavailable() == before - {conn}
        else:
            changed = t.observe(conn, op, now)
            after = t.unavailable()
            assert changed is ((conn in before) != (conn in after))
            assert after - {conn} == before - {conn}  # nobody else moved
        if op in ("closed", "forget"):
            last.pop(conn, None)
            failed.discard(conn)
            live_from.pop(conn, None)
        elif op != "tick":
            last[conn] = op
            if op in ("down", "degraded"):
                failed.add(conn)
            if op == "live":
                live_from.setdefault(conn, now)
            else:
                live_from.pop(conn, None)

        if op in ("down", "degraded"):
            assert conn in t.unavailable()
        assert t.unavailable() <= last.keys()
        for c in last:
            status = t.status(c, now)
            assert status["available"] is (c not in t.unavailable())
            recover_after = status["recover_after"]
            assert isinstance(recover_after, float)
            assert base <= recover_after <= cap
            if c in failed and status["available"]:
                assert last[c] == "live"
                assert now - live_from[c] >= base


@PROPS
@given(settings_st, events_st)
def test_property_outcome_does_not_depend_on_ticks(
    cfg: dict[str, float], events: list[tuple[int, str, float]]
) -> None:
    ticked, unticked = make(cfg), make(cfg)
    now = 0.0
    for conn, op, dt in events:
        now += dt
        ticked.tick(now)  # ticks at every event time, plus the drawn ones
        if op == "tick":
            ticked.tick(now)
        elif op == "forget":
            ticked.forget(conn)
            unticked.forget(conn)
        else:
            ticked.observe(conn, op, now)
            unticked.observe(conn, op, now)
            # The observed connection agrees at once; the others once a tick catches them up.
            assert (conn in ticked.unavailable()) is (conn in unticked.unavailable())
            assert ticked.status(conn, now) == unticked.status(conn, now)
    ticked.tick(now)
    unticked.tick(now)
    assert ticked.unavailable() == unticked.unavailable()
    for conn in range(3):
        assert ticked.status(conn, now) == unticked.status(conn, now)
