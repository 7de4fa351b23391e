"""Trading sessions of the Indian exchanges, by (exchange, segment) and epoch-millisecond time.

Tier 1 asks for the phase on every tick (pre-open relaxes the jump and crossed-book checks) and
the staleness sweep asks whether ticks are expected at all. Each day's boundaries are computed
once per (exchange, segment) as absolute epoch-ms integers, so a call is a dict lookup and a few
integer comparisons. India has had no DST since 1945: IST is a fixed UTC+05:30.

No Django and no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from enum import StrEnum

IST_OFFSET_MS = 19_800_000  # +05:30
DAY_MS = 86_400_000
_EPOCH = date(1970, 1, 1)  # a Thursday: weekday of day index d is (d + 3) % 7
_CACHE_MAX = 256  # (exchange, segment, day) entries; a live hub needs a handful


class Phase(StrEnum):
    CLOSED = "closed"
    PRE_OPEN = "pre_open"
    OPEN = "open"
    CLOSING = "closing"  # NSE/BSE cash post-close session: trades at the closing price only


def _ms(hh: int, mm: int) -> int:
    return (hh * 60 + mm) * 60_000


# Offsets from IST midnight: (pre-open start, open, close, closing start, closing end).
# PRE_OPEN is [t0, t1), OPEN [t1, t2), CLOSED [t2, t3), CLOSING [t3, t4). A segment without a
# pre-open or closing session repeats the neighbouring boundary so those intervals are empty.
# None of these sessions crosses IST midnight, so one IST day holds a whole session.
_CM = (_ms(9, 0), _ms(9, 15), _ms(15, 30), _ms(15, 40), _ms(16, 0))
# Pre-open 09:00-09:15 is order entry until 09:08, then matching and a buffer; it is all one
# phase here. Indices (instrument type INDEX) sit in CM too: the exchange computes them during
# pre-open, so they tick then and take the same phases.
_FO = (_ms(9, 15), _ms(9, 15), _ms(15, 30), _ms(15, 30), _ms(15, 30))
# F&O has no pre-open in this model: ticks before 09:15 are out of session.
_CD = (_ms(9, 0), _ms(9, 0), _ms(17, 0), _ms(17, 0), _ms(17, 0))
# Commodities (MCX, and NSE's commodity segment on the same hours) run to 23:30, or to 23:55
# while the US is on daylight time, since the international reference markets then close later.
# Agricultural contracts close earlier; they are not modelled.
_COM = (_ms(9, 0), _ms(9, 0), _ms(23, 30), _ms(23, 30), _ms(23, 30))
_COM_US_DST = (_ms(9, 0), _ms(9, 0), _ms(23, 55), _ms(23, 55), _ms(23, 55))
_NO_SESSION = (0, 0, 0, 0, 0)  # weekend, holiday, unknown segment: CLOSED all day


def ist_day(ts_ms: int) -> int:
    """Days since 1970-01-01 of the IST calendar date of ``ts_ms``."""
    return (ts_ms + IST_OFFSET_MS) // DAY_MS


def session_day(ts_ms: int) -> date:
    """The IST calendar date of ``ts_ms`` (epoch ms, UTC): the trading day it belongs to."""
    return _EPOCH + timedelta(days=ist_day(ts_ms))


class SessionCalendar:
    """Phases by exchange and segment ("CM", "FO", "CD", "COM").

    ``holidays`` are dates on which the exchange is shut all day; exchanges whose holidays differ
    (MCX keeps its evening session on some NSE holidays) need a calendar each. ``always_open``
    is for the embedded simulators, which trade around the clock. An unknown segment is CLOSED:
    no staleness alarms for something whose hours we do not know.
    """

    __slots__ = ("_always_open", "_cache", "_holidays", "_offsets")

    def __init__(
        self,
        *,
        always_open: bool = False,
        holidays: Iterable[date] = (),
        mcx_us_dst: bool = False,
    ) -> None:
        self._always_open = always_open
        self._holidays = frozenset((d - _EPOCH).days for d in holidays)
        com = _COM_US_DST if mcx_us_dst else _COM
        self._offsets: dict[str, tuple[int, int, int, int, int]] = {
            "CM": _CM,
            "FO": _FO,
            "CD": _CD,
            "COM": com,
        }
        self._cache: dict[tuple[str, str, int], tuple[int, int, int, int, int]] = {}

    def _bounds(self, exchange: str, segment: str, day: int) -> tuple[int, int, int, int, int]:
        offsets = self._offsets.get(segment)
        if offsets is None or (day + 3) % 7 >= 5 or day in self._holidays:
            bounds = _NO_SESSION
        else:
            midnight = day * DAY_MS - IST_OFFSET_MS
            t0, t1, t2, t3, t4 = offsets
            bounds = (midnight + t0, midnight + t1, midnight + t2, midnight + t3, midnight + t4)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()  # old days are never asked again; rebuilding one is cheap
        self._cache[exchange, segment, day] = bounds
        return bounds

    def phase(self, *, exchange: str, segment: str, ts_ms: int) -> Phase:
        if self._always_open:
            return Phase.OPEN
        day = (ts_ms + IST_OFFSET_MS) // DAY_MS
        b = self._cache.get((exchange, segment, day))
        if b is None:
            b = self._bounds(exchange, segment, day)
        if ts_ms < b[0] or ts_ms >= b[4]:
            return Phase.CLOSED
        if ts_ms < b[1]:
            return Phase.PRE_OPEN
        if ts_ms < b[2]:
            return Phase.OPEN
        return Phase.CLOSED if ts_ms < b[3] else Phase.CLOSING

    def expects_ticks(self, *, exchange: str, segment: str, ts_ms: int) -> bool:
        """Whether a live feed should be ticking: PRE_OPEN, OPEN or CLOSING for cash (CM),
        OPEN elsewhere. Staleness checks stay quiet when this is False."""
        # Only CM has PRE_OPEN and CLOSING phases, so "not CLOSED" is exactly that rule.
        return self.phase(exchange=exchange, segment=segment, ts_ms=ts_ms) is not Phase.CLOSED

    def cache_size(self) -> int:
        return len(self._cache)
