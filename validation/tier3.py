"""Tier 3: statistical outlier filters per instrument, run off the hot path in batches.

Two online filters, both on integer prices at one scale with the instrument's ``tick`` at the
same scale:

* ``TrimmedFilter`` (Brownlees & Gallo 2006): a price is an outlier when it lies too far from
  the trimmed mean of the last ``k`` *accepted* prices. Immediate verdict, trailing window.
* ``MadFilter`` (Barndorff-Nielsen, Hansen, Lunde & Shephard 2009, rule Q4): a price is an
  outlier when it lies more than ``n_mad`` mean absolute deviations from the median of the
  observations before it *and* from the median of those after it. The verdict comes
  ``after`` observations late, but genuine jumps are kept.

Both floor their tolerance at a few ticks so that a flat stretch (deviation ~0) does not turn
a one-tick move into an outlier. Memory per instrument is bounded by the window sizes.

No Django and no I/O.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

_MIN_BEFORE = 5  # fewer preceding observations than this: MadFilter cannot judge


def _median(ordered: list[int]) -> float:
    n = len(ordered)
    mid = n // 2
    return float(ordered[mid]) if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _discard(ordered: list[int], value: int) -> None:
    del ordered[bisect_left(ordered, value)]


@dataclass(frozen=True, slots=True)
class TrimmedVerdict:
    outlier: bool
    mean: float  # trimmed mean of the window
    std: float  # trimmed sample standard deviation of the window
    bound: float  # distance allowed from ``mean`` (and, with continuity, from the last price)


class TrimmedFilter:
    """Brownlees & Gallo's trimmed-neighbourhood filter, online (trailing window only).

    ``p`` is an outlier when ``|p - mean| >= n_sigma * std + granularity_ticks * tick``, with
    mean and std of the last ``k`` accepted prices after trimming ``trim / 2`` of them from each
    end. Only accepted prices enter the window, so a spike cannot drag the reference along.

    Continuity (on by default): a price within the same bound of the last accepted price is
    accepted too. B&G centre the window on the price; a trailing one lags a trending price,
    and trimming drops the trend's newest prices from the std, so the plain rule flags a pure
    random walk (0.1-0.7 % of prices at the defaults, on one- and two-tick steps). A spike is
    far from both; a drift is never far from where it just was.

    Level shift: when ``confirm`` consecutive outliers each lie within the bound of the first
    of them, the market has moved: the window restarts from those prices. Those ``confirm``
    prices stay flagged (their verdicts are already out); later prices are judged against the
    new level. Until the window again holds ``min_window`` prices - at the start, after
    ``reset()`` and after a level shift - ``check`` returns None (a std from a handful of
    prices is noise) and the prices enter the window unjudged.
    """

    __slots__ = ("_first_bound", "_pending", "_sorted", "_sum", "_sumsq", "_window", "confirm",
                 "continuity", "gamma", "min_window", "n_sigma", "trim")  # fmt: skip

    def __init__(
        self,
        *,
        tick: int,
        k: int = 60,
        trim: float = 0.10,
        n_sigma: float = 3.0,
        granularity_ticks: float = 3.0,
        min_window: int = 20,
        confirm: int = 3,
        continuity: bool = True,
    ) -> None:
        if not 3 <= min_window <= k or confirm < 1 or not 0 <= trim < 0.5:
            raise ValueError("need 3 <= min_window <= k, confirm >= 1 and 0 <= trim < 0.5")
        self.trim, self.n_sigma, self.min_window, self.confirm = trim, n_sigma, min_window, confirm
        self.gamma = granularity_ticks * tick
        self.continuity = continuity
        self._window: deque[int] = deque(maxlen=k)  # accepted prices, oldest first
        self._sorted: list[int] = []  # the same prices in order, for trimming
        self._sum = self._sumsq = 0  # of the window, exact integers
        self._pending: list[int] = []  # consecutive outliers that may be a new level
        self._first_bound = 0.0  # bound at the first of them: how close the rest must be

    def reset(self) -> None:
        self._window.clear()
        self._sorted.clear()
        self._pending.clear()
        self._sum = self._sumsq = 0

    def _accept(self, price: int) -> None:
        if len(self._window) == self._window.maxlen:
            old = self._window[0]
            _discard(self._sorted, old)
            self._sum, self._sumsq = self._sum - old, self._sumsq - old * old
        self._window.append(price)
        insort(self._sorted, price)
        self._sum, self._sumsq = self._sum + price, self._sumsq + price * price

    def check(self, price: int) -> TrimmedVerdict | None:
        ordered = self._sorted
        n = len(ordered)
        if n < self.min_window:
            self._accept(price)
            return None
        cut = int(n * self.trim / 2)
        ends = ordered[:cut] + ordered[n - cut :]
        m = n - 2 * cut
        total = self._sum - sum(ends)
        mean = total / m
        # Exact integer numerator: no cancellation on large prices.
        sumsq = self._sumsq - sum(v * v for v in ends)
        std = ((m * sumsq - total * total) / (m * (m - 1))) ** 0.5
        bound = self.n_sigma * std + self.gamma
        if abs(price - mean) < bound or (self.continuity and abs(price - self._window[-1]) < bound):
            self._pending.clear()
            self._accept(price)
            return TrimmedVerdict(False, mean, std, bound)
        pending = self._pending
        if pending and abs(price - pending[0]) <= self._first_bound:
            pending.append(price)
        else:  # a new run of outliers starts here
            pending[:] = [price]
            self._first_bound = bound
        if len(pending) >= self.confirm:  # the new level is confirmed
            level = list(pending)
            self.reset()
            for p in level:
                self._accept(p)
        return TrimmedVerdict(True, mean, std, bound)


@dataclass(frozen=True, slots=True)
class MadVerdict(Generic[T]):
    token: T  # the caller's value pushed with this observation
    price: int
    outlier: bool
    median_before: float | None  # None: no preceding observation
    median_after: float | None  # None: no following observation (only after ``flush``)
    scale: float  # mean absolute deviation around the centred median, floored


class MadFilter(Generic[T]):
    """Barndorff-Nielsen et al.'s rule Q4 with a late verdict that keeps genuine jumps.

    The neighbourhood of an observation is the ``before`` observations preceding it and the
    ``after`` following it (itself excluded). Its scale is the mean absolute deviation of the
    neighbourhood around the neighbourhood's median, floored at ``granularity_ticks * tick``.
    The observation is an outlier when it lies more than ``n_mad * scale`` from the median of
    the preceding observations *and* from the median of the following ones: a genuine jump
    sits close to what follows it, a spike close to neither.

    ``push`` returns the verdict on the observation ``after`` places back (none during the
    first ``after`` pushes). Early observations are judged against the preceding ones there
    are, but with fewer than 5 of them the observation is never an outlier. ``flush`` judges
    the pending observations with the following ones that exist; with none, against the
    preceding median only. At most ``before + after + 1`` observations are held.

    The mean absolute deviation is the paper's scale and is not robust: a huge spike widens
    the scale of its neighbours, so a much smaller bad print in its neighbourhood may pass.
    """

    __slots__ = ("_before", "_before_sorted", "_pending", "_pending_sorted", "after", "floor",
                 "n_mad")  # fmt: skip

    def __init__(
        self,
        *,
        tick: int,
        before: int = 25,
        after: int = 25,
        n_mad: float = 10.0,
        granularity_ticks: float = 2.0,
    ) -> None:
        if before < _MIN_BEFORE or after < 1:
            raise ValueError(f"need before >= {_MIN_BEFORE} and after >= 1")
        self.after, self.n_mad = after, n_mad
        self.floor = granularity_ticks * tick
        self._before: deque[int] = deque(maxlen=before)  # judged prices, oldest first
        self._before_sorted: list[int] = []
        self._pending: deque[tuple[int, T]] = deque()  # not judged yet, at most after + 1
        self._pending_sorted: list[int] = []

    def push(self, price: int, token: T) -> list[MadVerdict[T]]:
        self._pending.append((price, token))
        insort(self._pending_sorted, price)
        return [self._judge_next()] if len(self._pending) > self.after else []

    def flush(self) -> list[MadVerdict[T]]:
        return [self._judge_next() for _ in range(len(self._pending))]

    def _judge_next(self) -> MadVerdict[T]:
        price, token = self._pending.popleft()
        _discard(self._pending_sorted, price)
        prev, nxt = self._before_sorted, self._pending_sorted
        verdict = self._judge(price, token, prev, nxt)
        if len(self._before) == self._before.maxlen:
            _discard(prev, self._before[0])
        self._before.append(price)
        insort(prev, price)
        return verdict

    def _judge(self, price: int, token: T, prev: list[int], nxt: list[int]) -> MadVerdict[T]:
        median_before = _median(prev) if prev else None
        median_after = _median(nxt) if nxt else None
        scale = self.floor
        hood = sorted(prev + nxt)  # two sorted runs: a linear merge
        if hood:
            centre = _median(hood)
            i, total = bisect_left(hood, centre), sum(hood)
            low = sum(hood[:i])
            mad = (centre * i - low + (total - low) - centre * (len(hood) - i)) / len(hood)
            scale = max(scale, mad)
        limit = self.n_mad * scale
        outlier = (
            len(prev) >= _MIN_BEFORE
            and median_before is not None
            and abs(price - median_before) > limit
            and (median_after is None or abs(price - median_after) > limit)
        )
        return MadVerdict(token, price, outlier, median_before, median_after, scale)
