"""The checks a tick can fail, as bits of ``Tick.flags``.

One integer per tick keeps the hot path cheap (an ``|=``) and the wire small. The names are
the ``CheckName`` values of ``validation.models`` and of the WebSocket API's ``checks`` list.
No Django here: the worker's tick path imports it.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag


class Check(IntFlag):
    # Tier 1: inline on every tick.
    NOT_POSITIVE = 1 << 0
    OFF_TICK_GRID = 1 << 1
    OUTSIDE_CIRCUIT = 1 << 2
    OUTSIDE_DAY_RANGE = 1 << 3
    CROSSED_BOOK = 1 << 4
    TIME_BACKWARDS = 1 << 5
    VOLUME_BACKWARDS = 1 << 6
    DUPLICATE = 1 << 7
    JUMP = 1 << 8
    STALE = 1 << 9  # a silent symbol; an incident, never set on a tick
    # Tier 2: cross-source.
    DISCREPANCY = 1 << 10
    PROVIDER_LAG = 1 << 11
    # Tier 3: deep, off the hot path (verdicts arrive after the tick went out).
    OUTLIER_TRIMMED = 1 << 12
    OUTLIER_MAD = 1 << 13
    REST_RECHECK = 1 << 14


TIER1 = (
    Check.NOT_POSITIVE | Check.OFF_TICK_GRID | Check.OUTSIDE_CIRCUIT | Check.OUTSIDE_DAY_RANGE
    | Check.CROSSED_BOOK | Check.TIME_BACKWARDS | Check.VOLUME_BACKWARDS | Check.DUPLICATE
    | Check.JUMP | Check.STALE
)  # fmt: skip
TIER2 = Check.DISCREPANCY | Check.PROVIDER_LAG
TIER3 = Check.OUTLIER_TRIMMED | Check.OUTLIER_MAD | Check.REST_RECHECK

# Checks that say the price itself is wrong: such a tick never becomes the last good price.
# The others (a repeat, a late or out-of-order tick, a crossed book) may carry a right price,
# but they still do not move the reference: they are not news.
PRICE_CHECKS = (
    Check.NOT_POSITIVE | Check.OFF_TICK_GRID | Check.OUTSIDE_CIRCUIT | Check.OUTSIDE_DAY_RANGE
    | Check.JUMP | Check.DISCREPANCY | Check.OUTLIER_TRIMMED | Check.OUTLIER_MAD
    | Check.REST_RECHECK
)  # fmt: skip

_SINGLE = tuple(Check)
_NAMES: dict[int, tuple[str, ...]] = {}


def check_names(flags: int) -> tuple[str, ...]:
    """``flags`` as check names, lowest bit first (memoised: few combinations ever occur)."""
    names = _NAMES.get(flags)
    if names is None:
        names = tuple(c.name.lower() for c in _SINGLE if flags & c)  # type: ignore[union-attr]
        if len(_NAMES) < 4096:
            _NAMES[flags] = names
    return names


def check_tier(check: Check) -> int:
    if check & TIER1:
        return 1
    return 2 if check & TIER2 else 3


class ValidationTier(IntEnum):
    """How deep a symbol is checked (the seed's names). Each includes the ones below it."""

    FAST = 1  # tier 1 only: high-frequency symbols
    CROSS = 2  # tiers 1-2: cross-source comparison, provider lag
    DEEP = 3  # tiers 1-3: outlier filters, REST re-checks: critical symbols
