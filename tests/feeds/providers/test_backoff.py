import random

from feeds.providers.backoff import Backoff


def test_delays_grow_to_the_cap_with_jitter_and_reset():
    backoff = Backoff(base=0.5, factor=2, cap=8, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(200)]

    ceilings = [min(8, 0.5 * 2**n) for n in range(200)]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays[10:]) > 4  # reaches the cap region
    assert len(set(delays)) == len(delays)  # jittered, not lock-step
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_a_very_long_outage_stays_bounded():
    backoff = Backoff(cap=10, rng=random.Random(1))
    backoff.attempt = 10_000
    assert 0 <= backoff.next_delay() <= 10
