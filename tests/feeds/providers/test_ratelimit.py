import asyncio

import pytest

from feeds.providers.errors import RateLimited
from feeds.providers.ratelimit import RateLimiter, Window


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fyers_limiter(clock: FakeClock) -> RateLimiter:
    return RateLimiter([Window(10, 1.0), Window(200, 60.0)], name="fyers", clock=clock)


def test_per_second_window():
    clock = FakeClock()
    limiter = fyers_limiter(clock)
    assert all(limiter.try_acquire() for _ in range(10))
    assert not limiter.try_acquire()
    assert limiter.delay_for() == pytest.approx(1.0)
    clock.now += 1.001
    assert limiter.try_acquire()


def test_per_minute_window_binds_after_the_per_second_one():
    clock = FakeClock()
    limiter = fyers_limiter(clock)
    for _ in range(20):  # 10 per second for 20 s = 200 calls
        assert all(limiter.try_acquire() for _ in range(10))
        clock.now += 1.0
    assert not limiter.try_acquire()
    # The first calls leave the minute window 60 s after they were made.
    assert limiter.delay_for() == pytest.approx(40.0)


def test_asking_for_more_than_any_window_allows_is_a_clear_error():
    limiter = fyers_limiter(FakeClock())
    with pytest.raises(RateLimited, match=r"11 calls at once exceed the budget of 10/s"):
        limiter.delay_for(11)
    upstox = RateLimiter([Window(50, 1.0), Window(500, 60.0)], name="upstox")
    with pytest.raises(RateLimited, match="exceed the budget of 50/s"):
        upstox.delay_for(51)


async def test_acquire_waits_briefly_or_refuses_with_retry_after():
    limiter = RateLimiter([Window(2, 0.2)], name="t")
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(3):
        await limiter.acquire(max_wait=1.0)
    assert loop.time() - start >= 0.19  # the third call waited for the window

    await limiter.acquire()
    with pytest.raises(RateLimited) as refused:
        await limiter.acquire(max_wait=0.01)
    assert 0 < refused.value.retry_after <= 0.2
    assert "retry in" in str(refused.value)
