"""Upstox REST quotes: the hub's L3 layer (fresh quotes on demand), rate-limited client-side.

providers/UPSTOX.md §3: LTP V3, OHLC V3 and full quotes V2/V3 (≤500 keys a call), option
greeks V3 (≤50 a call, as the docs say), and the feed authorize call. Limits 50/s, 500/min,
2000/30 min; HTTP 429 with ``UDAPI10005`` when throttled.

Responses are keyed ``SEGMENT:trading_symbol``; every value repeats the requested key in
``instrument_token``, and results here are keyed by that. The budget check, chunking and
error text come from ``feeds.providers.rest``; nothing is retried here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from feeds.providers.errors import AuthError, ProviderError, ProviderUnavailable, RateLimited
from feeds.providers.ratelimit import Window
from feeds.providers.rest import (
    RestClientBase,
    decimal_of,
    merge_dicts,
    nonzero,
    quantity,
    retry_after_header,
    scaled_prices,
)
from feeds.providers.ticks import DepthLevel, ProviderName, Tick
from feeds.providers.upstox.codec import default_scale

MAX_KEYS_PER_QUOTE_CALL = 500  # LTP, OHLC, full quotes (UPSTOX.md §3.3-3.6)
MAX_KEYS_PER_GREEKS_CALL = 50  # option greeks: the docs say 50 (the SDK docstring 500)
UPSTOX_WINDOWS = (Window(50, 1.0), Window(500, 60.0), Window(2000, 1800.0))  # §3.7
RATE_LIMIT_CODES = frozenset({"UDAPI10005"})
AUTH_CODES = frozenset({"UDAPI100050", "UDAPI100016", "UDAPI100067"})  # invalid / expired
NO_KNOWN_KEY = "UDAPI1087"  # "Invalid Instrument key": none of the chunk's keys is known
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Interval = Literal["1d", "I1", "I30"]
Version = Literal[2, 3]


class UpstoxRestClient(RestClientBase):
    """Upstox market-quote REST API. ``token()`` returns the bearer token; ``scales``
    (instrument key -> decimals) overrides the default (4 for NCD_FO/BCD_FO, else 2);
    ``instruments`` (instrument key -> canonical key) fills ``Tick.instrument``."""

    provider = ProviderName.UPSTOX
    default_windows = UPSTOX_WINDOWS

    # --- public API ------------------------------------------------------------------------

    async def ltp(self, keys: Sequence[str]) -> dict[str, Tick]:
        """Last price, last quantity, volume and previous close by instrument key."""
        return await self._quotes("ltp", "/v3/market-quote/ltp", keys, self._ltp_tick)

    async def ohlc(self, keys: Sequence[str], interval: Interval = "1d") -> dict[str, Tick]:
        """OHLC by instrument key. With ``"1d"`` the tick carries the day's open/high/low,
        volume and the previous close; with ``"I1"``/``"I30"`` its open/high/low are those of
        the live candle of that interval (no volume, no previous close)."""
        if interval not in ("1d", "I1", "I30"):
            raise ValueError(f"upstox ohlc: interval must be 1d, I1 or I30, not {interval!r}")

        def parse(key: str, value: Mapping[str, Any], recv_ns: int) -> Tick:
            return self._ohlc_tick(key, value, recv_ns, daily=interval == "1d")

        return await self._quotes(
            "ohlc", "/v3/market-quote/ohlc", keys, parse, extra={"interval": interval}
        )

    async def full_quotes(self, keys: Sequence[str], *, version: Version = 3) -> dict[str, Tick]:
        """5-level depth, circuits, OHLC, volume, OI and total buy/sell quantity by key."""
        if version not in (2, 3):
            raise ValueError(f"upstox full quotes: version must be 2 or 3, not {version!r}")
        return await self._quotes(
            f"full quotes v{version}", f"/v{version}/market-quote/quotes", keys, self._full_tick
        )

    async def option_greeks(self, keys: Sequence[str]) -> dict[str, Tick]:
        """Price, OI and greeks (IV, delta, gamma, theta, vega) by option key; ≤50 a call."""
        return await self._quotes(
            "option-greek",
            "/v3/market-quote/option-greek",
            keys,
            self._greeks_tick,
            size=MAX_KEYS_PER_GREEKS_CALL,
        )

    async def feed_authorize(self) -> str:
        """A one-time ``wss://`` URL for the Market Data Feed V3 (fetch one per connect)."""
        deadline = self._plan("feed authorize", 1, "1 request")
        await self._acquire("feed authorize", deadline)
        data = await self._get("feed authorize", "/v3/feed/market-data-feed/authorize", {})
        if isinstance(data, dict):
            # The docs deprecate the camelCase key, the SDK reads only it: take either.
            url = data.get("authorized_redirect_uri") or data.get("authorizedRedirectUri")
            if isinstance(url, str) and url.startswith(("wss://", "ws://")):
                return url
        raise ProviderUnavailable("upstox feed authorize: no feed URL in the answer")

    # --- requests --------------------------------------------------------------------------

    async def _quotes(
        self,
        call: str,
        path: str,
        keys: Sequence[str],
        parse: Callable[[str, Mapping[str, Any], int], Tick],
        *,
        size: int = MAX_KEYS_PER_QUOTE_CALL,
        extra: Mapping[str, str] | None = None,
    ) -> dict[str, Tick]:
        wanted = _keys(keys)

        async def fetch(chunk: list[str]) -> dict[str, Tick]:
            params = {"instrument_key": ",".join(chunk), **(extra or {})}
            data = await self._get(call, path, params, tolerate_unknown=True)
            recv_ns = time.time_ns()
            requested = set(chunk)
            out: dict[str, Tick] = {}
            for value in (data or {}).values():
                if not isinstance(value, dict):
                    continue
                # Keyed by what we asked for, not by the response's "SEGMENT:symbol".
                key = value.get("instrument_token")
                if isinstance(key, str) and key in requested and key not in out:
                    out[key] = parse(key, value, recv_ns)
            self._count_unknown(k for k in chunk if k not in out)
            return out

        return await self._chunked(call, wanted, size, fetch, merge_dicts, what="keys")

    async def _get(
        self,
        call: str,
        path: str,
        params: Mapping[str, str],
        *,
        tolerate_unknown: bool = False,
    ) -> Any:
        """The ``data`` of a successful answer (None when no requested key was known and
        ``tolerate_unknown``); the typed error otherwise."""
        token = self._current_token(call)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        status, body, reply_headers = await self._send(
            call, "GET", path, token=token, headers=headers, params=params
        )
        body_dict = body if isinstance(body, dict) else {}
        errors = body_dict.get("errors")
        first = errors[0] if isinstance(errors, list) and errors else {}
        first = first if isinstance(first, dict) else {}
        code = first.get("errorCode") or first.get("error_code")
        said = self._scrub(first.get("message") or "", token)
        detail = f"HTTP {status}, {code}: {said}" if code else f"HTTP {status}"
        if status == 429 or code in RATE_LIMIT_CODES:
            raise RateLimited(
                f"upstox {call}: the server's rate limit ({detail})",
                retry_after=retry_after_header(reply_headers),
            )
        if status in (401, 403) or code in AUTH_CODES:
            raise AuthError(f"upstox {call}: the token was refused ({detail})")
        if status >= 500:
            raise ProviderUnavailable(f"upstox {call}: server error ({detail})")
        if tolerate_unknown and code == NO_KNOWN_KEY:
            return None
        if not isinstance(body, dict):
            raise ProviderUnavailable(f"upstox {call}: the answer is not a JSON object ({detail})")
        if status != 200 or body.get("status") != "success":
            raise ProviderError(f"upstox {call}: request refused ({detail})")
        return body.get("data")

    # --- parsing ---------------------------------------------------------------------------

    def _scale(self, key: str) -> int:
        scale = self.scales.get(key)
        return default_scale(key) if scale is None else scale

    def _tick(self, key: str, ltp: int | None, scale: int, recv_ns: int) -> Tick:
        return Tick(
            provider=ProviderName.UPSTOX,
            symbol=key,
            ltp=ltp or 0,
            scale=scale,
            recv_ns=recv_ns,
            instrument=self.instruments.get(key, ""),
        )

    def _ltp_tick(self, key: str, v: Mapping[str, Any], recv_ns: int) -> Tick:
        (ltp, cp), scale = scaled_prices(
            [decimal_of(v.get("last_price")), decimal_of(v.get("cp"))], self._scale(key)
        )
        tick = self._tick(key, ltp, scale, recv_ns)
        tick.ltq, tick.volume, tick.prev_close = (
            quantity(v.get("ltq")),
            quantity(v.get("volume")),
            nonzero(cp),
        )
        return tick

    def _ohlc_tick(self, key: str, v: Mapping[str, Any], recv_ns: int, *, daily: bool) -> Tick:
        live = v.get("live_ohlc") if isinstance(v.get("live_ohlc"), dict) else {}
        prev = v.get("prev_ohlc") if isinstance(v.get("prev_ohlc"), dict) else {}
        raw = [decimal_of(v.get("last_price"))]
        raw += [decimal_of(live.get(f)) for f in ("open", "high", "low")]
        raw.append(decimal_of(prev.get("close")) if daily else None)
        (ltp, open_, high, low, prev_close), scale = scaled_prices(raw, self._scale(key))
        tick = self._tick(key, ltp, scale, recv_ns)
        tick.open, tick.high, tick.low = nonzero(open_), nonzero(high), nonzero(low)
        if daily:  # an intraday candle's volume and previous close are not the day's
            tick.prev_close = nonzero(prev_close)
            tick.volume = quantity(live.get("volume"))
        return tick

    def _greeks_tick(self, key: str, v: Mapping[str, Any], recv_ns: int) -> Tick:
        tick = self._ltp_tick(key, v, recv_ns)
        tick.oi = quantity(v.get("oi"))
        for name in ("iv", "delta", "gamma", "theta", "vega"):
            value = v.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                setattr(tick, name, float(value))
        return tick

    def _full_tick(self, key: str, v: Mapping[str, Any], recv_ns: int) -> Tick:
        ohlc = v.get("ohlc") if isinstance(v.get("ohlc"), dict) else {}
        depth = v.get("depth") if isinstance(v.get("depth"), dict) else {}
        buy = [b for b in depth.get("buy") or () if isinstance(b, dict)][:5]
        sell = [s for s in depth.get("sell") or () if isinstance(s, dict)][:5]
        # V3 names the previous close; in V2 it is ohlc.close (net_change = ltp - close).
        close = v.get("prev_close_price", ohlc.get("close"))
        fields = [v.get("last_price"), ohlc.get("open"), ohlc.get("high"), ohlc.get("low"),
                  close, v.get("average_price"), v.get("lower_circuit_limit"),
                  v.get("upper_circuit_limit")]  # fmt: skip
        raw = [decimal_of(f) for f in fields]
        raw += [decimal_of(level.get("price")) for level in buy + sell]
        prices, scale = scaled_prices(raw, self._scale(key))
        ltp, open_, high, low, prev_close, atp, lower, upper = prices[:8]
        level_prices = prices[8:]

        def levels(raw_levels: list[dict[str, Any]], offset: int) -> tuple[DepthLevel, ...]:
            out = []
            for i, level in enumerate(raw_levels):
                price, qty = level_prices[offset + i], quantity(level.get("quantity")) or 0
                if price or qty:  # all-zero rows are empty levels
                    out.append(DepthLevel(price or 0, qty, quantity(level.get("orders"))))
            return tuple(out)

        bids, asks = levels(buy, 0), levels(sell, len(buy))
        tick = self._tick(key, ltp, scale, recv_ns)
        tick.exchange_ts = _epoch_ms(v.get("timestamp"))
        tick.ltt = quantity(v.get("last_trade_time")) or None
        tick.volume = quantity(v.get("volume"))
        tick.open, tick.high, tick.low = nonzero(open_), nonzero(high), nonzero(low)
        tick.prev_close, tick.atp = nonzero(prev_close), nonzero(atp)
        tick.lower_circuit, tick.upper_circuit = nonzero(lower), nonzero(upper)
        tick.total_buy_qty = quantity(v.get("total_buy_quantity"))
        tick.total_sell_qty = quantity(v.get("total_sell_quantity"))
        oi = quantity(v.get("oi"))
        # Cash instruments report OI 0; only derivatives carry open interest.
        tick.oi = oi if oi or "_FO|" in key else None
        tick.bids, tick.asks = bids, asks
        if bids:
            tick.bid, tick.bid_qty = bids[0].price, bids[0].qty
        if asks:
            tick.ask, tick.ask_qty = asks[0].price, asks[0].qty
        return tick


def _keys(keys: Iterable[str]) -> list[str]:
    """Deduplicated, in order; malformed keys are a caller bug, refused before sending."""
    wanted = list(dict.fromkeys(keys))
    bad = [k for k in wanted if not isinstance(k, str) or "|" not in k or "," in k]
    if bad:
        raise ValueError(f"upstox: not instrument keys: {bad[:5]!r}")
    return wanted


def _epoch_ms(value: object) -> int | None:
    """Upstox's ISO timestamp (``2025-04-07T15:29:59.862+05:30``) as epoch milliseconds."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None  # no zone: ambiguous, better absent than wrong by 5.5 hours
    return (moment - _EPOCH) // timedelta(milliseconds=1)  # exact, no float rounding
