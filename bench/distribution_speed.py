"""How long feeds.pool.distribution.distribute takes for 10k and 50k instruments.

Shape: one FYERS account of 50 connections x 200 symbols, one Upstox account of 2 connections
(per-connection cap 5000, the §7.1 per-mode limits), a realistic tier/mode/listing mix. Cases:
a fresh plan, a re-run with nothing changed (the steady state), one instrument added, one
FYERS connection down. The baseline is sorting the wants by importance, the least any
distribution must do; ratios are against it (absolute numbers vary with the machine's load).

    .venv/bin/python bench/distribution_speed.py
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from feeds.pool.distribution import (
    TIER_RANK,
    Account,
    Conn,
    Want,
    distribute,
    plan_summary,
)

UPSTOX_LIMITS = {
    "ltpc": {"individual": 5000, "combined": 2000},
    "full": {"individual": 2000, "combined": 1500},
}
ACCOUNTS = [
    Account("primary", "fyers", max_connections=50, per_connection=200),
    Account("main", "upstox", max_connections=2, per_connection=5000, mode_limits=UPSTOX_LIMITS),
]


def make_wants(n: int, seed: int = 7) -> list[Want]:
    rnd = random.Random(seed)
    tiers = rnd.choices(list(TIER_RANK), weights=[2, 10, 50, 38], k=n)
    modes = rnd.choices(["ltp", "quote", "depth"], weights=[70, 25, 5], k=n)
    listings = rnd.choices([(True, True), (True, False), (False, True)], weights=[8, 1, 1], k=n)
    return [
        Want(f"NSE:SYM{i:05d}", tier, rnd.randint(0, 100), mode, on_f, on_u)  # type: ignore[arg-type]
        for i, (tier, mode, (on_f, on_u)) in enumerate(zip(tiers, modes, listings, strict=True))
    ]


def best_of(fn: Callable[[], object], runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench(n: int) -> None:
    wants = make_wants(n)
    baseline = best_of(lambda: sorted(wants, key=lambda w: (TIER_RANK[w.tier], -w.priority, w.key)))
    plan = distribute(wants=wants, accounts=ACCOUNTS)
    current = plan.assignment
    extra = Want("NSE:ZZNEW", "critical", 50, "quote", True, True)
    down = [Conn("fyers", "primary", 3)]
    cases: dict[str, Callable[[], object]] = {
        "fresh": lambda: distribute(wants=wants, accounts=ACCOUNTS),
        "re-run, no change": lambda: distribute(wants=wants, accounts=ACCOUNTS, current=current),
        "one instrument added": lambda: distribute(
            wants=[*wants, extra], accounts=ACCOUNTS, current=current
        ),
        "one FYERS connection down": lambda: distribute(
            wants=wants, accounts=ACCOUNTS, current=current, unavailable=down
        ),
    }
    summary = plan_summary(plan)
    print(
        f"{n} wants: {summary['placements']} placements on "
        f"{summary['connections_in_use']} connections, {summary['left_out']} left out; "
        f"baseline (sort by importance) {baseline * 1000:.1f} ms"
    )
    for name, fn in cases.items():
        took = best_of(fn)
        print(f"  {name:28s} {took * 1000:7.1f} ms  ({took / baseline:5.1f}x baseline)")


def main() -> None:
    for n in (10_000, 50_000):
        bench(n)


if __name__ == "__main__":
    main()
