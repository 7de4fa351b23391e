"""The health check's verdict rules (monitoring/health.py), one case per threshold."""

from __future__ import annotations

from typing import Any

import pytest

from monitoring.health import (
    DEGRADED,
    HEALTHY,
    UNHEALTHY,
    HealthThresholds,
    Previous,
    connection_verdict,
)

NOW = 1_800_000_000.0
T = HealthThresholds(beat_stale=5.0, data_silence=10.0, order_cooldown=30.0)


def beat(**overrides: Any) -> dict[str, Any]:
    """A live, available connection that heard data 0.2 s ago, reported 1 s ago."""
    values: dict[str, Any] = {
        "name": "fyers:primary:0",
        "state": "live",
        "reason": "subscribed",
        "available": True,
        "symbols": 150,
        "market_open": True,
        "last_message_ns": int((NOW - 0.2) * 1e9),
        "live_since_ns": int((NOW - 600) * 1e9),
        "reconnects": 2,
        "errors": {"bad_frame": 1},
        "worker": "w1",
        "at": NOW - 1.0,
    }
    values.update(overrides)
    return values


def verdict(b: dict[str, Any], previous: Previous | None = None, market_open: bool = True):
    return connection_verdict(
        beat=b, previous=previous, now=NOW, market_open=market_open, thresholds=T
    )


def quiet_for(seconds: float) -> int:
    return int((NOW - seconds) * 1e9)


SAME = Previous(reconnects=2, errors_total=1)


@pytest.mark.parametrize(
    ("b", "previous", "market_open", "expected", "order", "why"),
    [
        (beat(), SAME, True, HEALTHY, False, "live, data flowing"),
        (beat(at=NOW - 6), SAME, True, UNHEALTHY, False, "no heartbeat for 6 s"),
        (beat(available=False, state="down", reason="socket closed"), SAME, True, UNHEALTHY,
         False, "failed over by its worker (socket closed)"),
        (beat(available=False, state="degraded", reason="silent for 1.2 s"), SAME, True,
         UNHEALTHY, False, "failed over by its worker (silent for 1.2 s)"),
        (beat(available=False), SAME, True, DEGRADED, False, "live again"),
        (beat(state="connecting", reason="connecting"), SAME, True, DEGRADED, False,
         "connecting"),
        (beat(last_message_ns=quiet_for(11)), SAME, True, UNHEALTHY, True,
         "no data for 11 s while answering pings"),
        (beat(last_message_ns=quiet_for(6)), SAME, True, DEGRADED, False, "no data for 6 s"),
        (beat(last_message_ns=quiet_for(60)), SAME, False, HEALTHY, False, "live, data flowing"),
        (beat(last_message_ns=quiet_for(60), market_open=False), SAME, True, HEALTHY, False,
         "live, data flowing"),
        (beat(last_message_ns=quiet_for(60), symbols=0), SAME, True, HEALTHY, False,
         "live, data flowing"),
        (beat(last_message_ns=0, live_since_ns=quiet_for(12)), SAME, True, UNHEALTHY, True,
         "no data for 12 s"),  # never any: counted from going live
        (beat(reconnects=3), SAME, True, DEGRADED, False, "reconnected 1x"),
        (beat(errors={"bad_frame": 4}), SAME, True, DEGRADED, False, "3 frame errors"),
        (beat(reconnects=9, errors={"bad_frame": 9}), None, True, HEALTHY, False,
         "live, data flowing"),
        (beat(state="degraded", reason="silent for 1.1 s"), SAME, True, DEGRADED, False,
         "silent for 1.1 s"),
    ],
)  # fmt: skip
def test_verdicts(b, previous, market_open, expected, order, why) -> None:
    result = verdict(b, previous, market_open)
    assert result.verdict == expected
    assert result.order is order
    assert why in result.reason


def test_a_silent_connection_is_ordered_again_only_after_the_cooldown() -> None:
    silent = beat(last_message_ns=quiet_for(20))
    recent = Previous(reconnects=2, errors_total=1, ordered_at=NOW - 10)
    old = Previous(reconnects=2, errors_total=1, ordered_at=NOW - 31)
    assert verdict(silent, recent).verdict == UNHEALTHY
    assert verdict(silent, recent).order is False
    assert verdict(silent, old).order is True
