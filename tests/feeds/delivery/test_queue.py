"""The per-client conflating queue: latest value per symbol, bounded, slow-client verdict."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feeds.delivery.queue import ConflatingQueue, QueueFull


def test_updates_of_one_symbol_are_conflated_to_the_latest() -> None:
    q: ConflatingQueue[str] = ConflatingQueue(capacity=10)
    assert q.put("NSE:SBIN", "sbin 1", now=0.0) is False
    assert q.put("NSE:RELIANCE", "rel 1", now=0.1) is False
    assert q.put("NSE:SBIN", "sbin 2", now=0.2) is True
    batch = q.take(now=0.5)
    assert batch.messages == ["sbin 2", "rel 1"]  # first-queued order, latest values
    assert batch.conflated == 1
    assert batch.oldest_age == pytest.approx(0.5)  # SBIN has waited since its first update
    assert len(q) == 0 and q.take(now=0.6).messages == []
    assert (q.sent_total, q.conflated_total) == (2, 1)


def test_a_new_symbol_past_capacity_is_refused_but_updates_still_conflate() -> None:
    q: ConflatingQueue[int] = ConflatingQueue(capacity=2)
    q.put("A", 1, now=0)
    q.put("B", 1, now=0)
    with pytest.raises(QueueFull):
        q.put("C", 1, now=0)
    assert q.put("A", 2, now=1) is True
    assert q.take(now=1).messages == [2, 1]


def test_an_unsubscribed_symbol_is_not_sent() -> None:
    q: ConflatingQueue[int] = ConflatingQueue(capacity=5)
    q.put("A", 1, now=0)
    q.put("B", 1, now=0)
    q.discard("A")
    q.discard("unknown")
    assert q.take(now=0).messages == [1]


@pytest.mark.parametrize(
    ("checks", "slow"),
    [
        ([(1.0, False)], False),  # within max_lag
        ([(3.0, False), (12.0, False)], False),  # behind for 9 s only
        ([(3.0, False), (13.0, True)], True),  # behind for 10 s: go
    ],
)
def test_a_client_behind_for_longer_than_its_patience_is_too_slow(checks, slow) -> None:
    q: ConflatingQueue[int] = ConflatingQueue(capacity=5, max_lag=2.0, patience=10.0)
    q.put("A", 1, now=0.0)
    for now, expected in checks:
        assert q.too_slow(now) is expected
    assert q.too_slow(checks[-1][0]) is slow


def test_taking_a_fresh_batch_resets_the_slow_clock() -> None:
    q: ConflatingQueue[int] = ConflatingQueue(capacity=5, max_lag=2.0, patience=10.0)
    q.put("A", 1, now=0.0)
    assert not q.too_slow(5.0)  # behind since 5.0
    q.put("B", 1, now=5.5)
    q.take(now=6.0)  # its oldest value waited 6 s: still behind
    q.put("A", 2, now=6.0)
    assert not q.too_slow(9.0)
    assert q.too_slow(15.0)  # behind since 5.0, through the stale take


def test_a_client_that_catches_up_starts_over() -> None:
    q: ConflatingQueue[int] = ConflatingQueue(capacity=5, max_lag=2.0, patience=10.0)
    q.put("A", 1, now=0.0)
    assert not q.too_slow(5.0)  # behind since 5.0
    assert q.take(now=6.0).oldest_age == 6.0
    q.put("A", 2, now=7.0)
    q.take(now=7.5)  # fresh: caught up
    q.put("A", 3, now=8.0)
    assert not q.too_slow(15.0)  # behind again since 15.0, not 5.0
    assert q.too_slow(25.0)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        ConflatingQueue(capacity=0)
    with pytest.raises(ValueError):
        ConflatingQueue(capacity=1, max_lag=0)


@given(st.lists(st.tuples(st.sampled_from("ABCDEFGH"), st.integers(), st.booleans()), max_size=200))
def test_never_more_than_one_pending_per_symbol_and_nothing_lost_but_older_values(ops) -> None:
    q: ConflatingQueue[tuple[str, int]] = ConflatingQueue(capacity=8)
    latest: dict[str, tuple[str, int]] = {}
    sent: list[tuple[str, int]] = []
    for now, (symbol, value, take) in enumerate(ops):
        q.put(symbol, (symbol, value), now=float(now))
        latest[symbol] = (symbol, value)
        assert len(q) <= 8
        if take:
            batch = q.take(now=float(now))
            symbols = [s for s, _ in batch.messages]
            assert len(symbols) == len(set(symbols))
            # What goes out for a symbol is its newest value at the time of the take.
            assert all(m == latest[m[0]] for m in batch.messages)
            sent.extend(batch.messages)
    sent.extend(q.take(now=float(len(ops))).messages)
    # Every symbol's last value was delivered.
    assert set(latest.values()) <= set(sent)
    assert q.sent_total == len(sent)
