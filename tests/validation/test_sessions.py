from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from validation.sessions import DAY_MS, Phase, SessionCalendar, ist_day, session_day

IST = timezone(timedelta(hours=5, minutes=30))
MONDAY = date(2025, 6, 2)


def ist_ms(day: date, hh: int, mm: int, ss: int = 0, ms: int = 0) -> int:
    """Epoch ms of an IST wall-clock time (whole seconds, so the float is exact)."""
    wall = datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=IST)
    return int(wall.timestamp()) * 1000 + ms


def utc_ms(when: datetime) -> int:
    return int(when.timestamp()) * 1000


@pytest.mark.parametrize(
    ("exchange", "hh", "mm", "ss", "ms", "expected"),
    [
        ("NSE", 8, 59, 59, 999, Phase.CLOSED),
        ("NSE", 9, 0, 0, 0, Phase.PRE_OPEN),
        ("NSE", 9, 8, 0, 0, Phase.PRE_OPEN),  # order entry ends; matching still pre-open
        ("NSE", 9, 14, 59, 999, Phase.PRE_OPEN),
        ("NSE", 9, 15, 0, 0, Phase.OPEN),
        ("NSE", 15, 29, 59, 999, Phase.OPEN),
        ("NSE", 15, 30, 0, 0, Phase.CLOSED),
        ("NSE", 15, 39, 59, 999, Phase.CLOSED),
        ("NSE", 15, 40, 0, 0, Phase.CLOSING),
        ("NSE", 15, 59, 59, 999, Phase.CLOSING),
        ("NSE", 16, 0, 0, 0, Phase.CLOSED),
        ("BSE", 9, 0, 0, 0, Phase.PRE_OPEN),
        ("BSE", 9, 15, 0, 0, Phase.OPEN),
        ("BSE", 15, 40, 0, 0, Phase.CLOSING),
    ],
)
def test_cash_boundaries(exchange: str, hh: int, mm: int, ss: int, ms: int, expected: Phase):
    cal = SessionCalendar()
    ts = ist_ms(MONDAY, hh, mm, ss, ms)
    assert cal.phase(exchange=exchange, segment="CM", ts_ms=ts) is expected
    assert cal.expects_ticks(exchange=exchange, segment="CM", ts_ms=ts) is (
        expected is not Phase.CLOSED
    )


@pytest.mark.parametrize(
    ("exchange", "segment", "hh", "mm", "expected"),
    [
        ("NSE", "FO", 9, 0, Phase.CLOSED),
        ("NSE", "FO", 9, 10, Phase.CLOSED),  # no F&O pre-open in this model
        ("NSE", "FO", 9, 15, Phase.OPEN),
        ("BSE", "FO", 15, 29, Phase.OPEN),
        ("NSE", "FO", 15, 30, Phase.CLOSED),
        ("NSE", "FO", 15, 45, Phase.CLOSED),  # no closing session either
        ("NSE", "CD", 8, 59, Phase.CLOSED),
        ("NSE", "CD", 9, 0, Phase.OPEN),
        ("BSE", "CD", 16, 59, Phase.OPEN),
        ("NSE", "CD", 17, 0, Phase.CLOSED),
        ("MCX", "COM", 8, 59, Phase.CLOSED),
        ("MCX", "COM", 9, 0, Phase.OPEN),
        ("MCX", "COM", 23, 29, Phase.OPEN),
        ("MCX", "COM", 23, 30, Phase.CLOSED),
        ("MCX", "COM", 23, 54, Phase.CLOSED),
        ("NSE", "XX", 12, 0, Phase.CLOSED),  # unknown segment
    ],
)
def test_other_segments(exchange: str, segment: str, hh: int, mm: int, expected: Phase):
    cal = SessionCalendar()
    ts = ist_ms(MONDAY, hh, mm)
    assert cal.phase(exchange=exchange, segment=segment, ts_ms=ts) is expected
    assert cal.expects_ticks(exchange=exchange, segment=segment, ts_ms=ts) is (
        expected is Phase.OPEN
    )


@pytest.mark.parametrize(
    ("hh", "mm", "expected"),
    [(23, 29, Phase.OPEN), (23, 30, Phase.OPEN), (23, 54, Phase.OPEN), (23, 55, Phase.CLOSED)],
)
def test_mcx_us_daylight_time(hh: int, mm: int, expected: Phase):
    cal = SessionCalendar(mcx_us_dst=True)
    assert cal.phase(exchange="MCX", segment="COM", ts_ms=ist_ms(MONDAY, hh, mm)) is expected


@pytest.mark.parametrize("day", [date(2025, 6, 7), date(2025, 6, 8)])
@pytest.mark.parametrize(("exchange", "segment"), [("NSE", "CM"), ("NSE", "FO"), ("MCX", "COM")])
def test_weekend_closed(day: date, exchange: str, segment: str):
    cal = SessionCalendar()
    for hh in (9, 12, 15):
        ts = ist_ms(day, hh, 20)
        assert cal.phase(exchange=exchange, segment=segment, ts_ms=ts) is Phase.CLOSED
        assert not cal.expects_ticks(exchange=exchange, segment=segment, ts_ms=ts)


def test_holiday_closed_and_next_day_open():
    holiday = date(2025, 8, 15)
    cal = SessionCalendar(holidays={holiday})
    assert cal.phase(exchange="NSE", segment="CM", ts_ms=ist_ms(holiday, 11, 0)) is Phase.CLOSED
    assert cal.phase(exchange="MCX", segment="COM", ts_ms=ist_ms(holiday, 20, 0)) is Phase.CLOSED
    thursday = holiday - timedelta(days=1)
    assert cal.phase(exchange="NSE", segment="CM", ts_ms=ist_ms(thursday, 11, 0)) is Phase.OPEN


def test_always_open():
    cal = SessionCalendar(always_open=True)
    sunday_3am = ist_ms(date(2025, 6, 8), 3, 0)
    assert cal.phase(exchange="NSE", segment="CM", ts_ms=sunday_3am) is Phase.OPEN
    assert cal.expects_ticks(exchange="NSE", segment="FO", ts_ms=sunday_3am)


@pytest.mark.parametrize(
    ("utc", "expected"),
    [
        (datetime(2025, 6, 2, 18, 29, 59, tzinfo=UTC), date(2025, 6, 2)),
        (datetime(2025, 6, 2, 18, 30, 0, tzinfo=UTC), date(2025, 6, 3)),
        (datetime(2025, 6, 2, 0, 0, 0, tzinfo=UTC), date(2025, 6, 2)),
        (datetime(1970, 1, 1, 0, 0, 0, tzinfo=UTC), date(1970, 1, 1)),
    ],
)
def test_session_day(utc: datetime, expected: date):
    ts = utc_ms(utc)
    assert session_day(ts) == expected
    assert session_day(ts + 999) == expected
    assert ist_day(ts) == (expected - date(1970, 1, 1)).days


def test_session_day_just_before_ist_midnight():
    ts = utc_ms(datetime(2025, 6, 2, 18, 30, tzinfo=UTC)) - 1
    assert session_day(ts) == date(2025, 6, 2)


def test_cache_stays_bounded():
    cal = SessionCalendar()
    start = ist_ms(MONDAY, 10, 0)
    for n in range(2_000):
        for exchange, segment in (("NSE", "CM"), ("NSE", "FO")):
            cal.phase(exchange=exchange, segment=segment, ts_ms=start + n * DAY_MS)
        assert cal.cache_size() <= 256
    # Still right after many clears: day 2000 from a Monday is a Monday + 5 days (a Saturday).
    saturday = start + 2_000 * DAY_MS
    assert session_day(saturday).weekday() == 5
    assert cal.phase(exchange="NSE", segment="CM", ts_ms=saturday) is Phase.CLOSED
    assert cal.phase(exchange="NSE", segment="CM", ts_ms=saturday + 2 * DAY_MS) is Phase.OPEN


def test_repeated_calls_hit_the_cache():
    cal = SessionCalendar()
    for minute in range(0, 600):
        cal.phase(exchange="NSE", segment="CM", ts_ms=ist_ms(MONDAY, 9, 0) + minute * 60_000)
    assert cal.cache_size() == 1
