"""FYERS REST quotes: the hub's L3 layer (fresh quotes on demand), rate-limited client-side.

providers/FYERS.md §3: quotes (≤50 symbols a call), depth (5 levels, with the asymmetric
``bids``/``ask`` keys), symbol → fytoken (≤500 a call, bare-JWT header) and market status;
10 requests/s and 200/min, ``code: -429`` when throttled. The shared machinery is in
``feeds.providers.rest``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from feeds.providers.errors import (
    AuthError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
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
from feeds.providers.ticks import MAX_SCALE, DepthLevel, ProviderName, Tick

MAX_SYMBOLS_PER_QUOTES_CALL = 50  # FYERS.md §3.3
MAX_SYMBOLS_PER_TOKEN_CALL = 500  # FYERS.md §3.2
FYERS_WINDOWS = (Window(10, 1.0), Window(200, 60.0))  # FYERS.md §3.6
AUTH_CODES = frozenset({-8, -15, -16, -17})  # expired / invalid / could not authenticate
FOUR_DECIMAL_SEGMENTS = ("1012", "1212")  # fytoken prefixes of cde_fo, bcs_fo (§2.2)
MAX_REMEMBERED_FYTOKENS = 200_000  # bounds the symbol -> fytoken memory


class FyersRestClient(RestClientBase):
    """FYERS data REST API. ``token()`` returns ``"APP_ID:JWT"``; ``scales`` (symbol ->
    decimals) overrides the default scale (2; 4 for currency, known from the fytoken);
    ``instruments`` (symbol -> canonical key) fills ``Tick.instrument``."""

    provider = ProviderName.FYERS
    default_windows = FYERS_WINDOWS

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fytokens: dict[str, str] = {}  # learned from responses; tells currency apart

    # --- public API ------------------------------------------------------------------------

    async def quotes(self, symbols: Sequence[str]) -> dict[str, Tick]:
        """Latest quotes by symbol. Unknown symbols are left out (and counted in stats)."""
        wanted = _symbols(symbols)
        return await self._chunked(
            "quotes", wanted, MAX_SYMBOLS_PER_QUOTES_CALL, self._quotes_chunk, merge_dicts
        )

    async def depth(self, symbol: str) -> Tick:
        """5-level book with order counts, circuits, OHLC, volume and OI of one symbol."""
        (wanted,) = _symbols([symbol])
        deadline = self._plan("depth", 1, "1 symbol")
        await self._acquire("depth", deadline)
        body = await self._data_call(
            "depth", "/data/depth", params={"symbol": wanted, "ohlcv_flag": "1"}
        )
        entry = (body.get("d") or {}).get(wanted)
        if not isinstance(entry, dict):
            raise ProviderError(f"fyers depth: no data for {wanted!r} in the answer")
        return self._depth_tick(wanted, entry, time.time_ns())

    async def symbol_tokens(self, symbols: Sequence[str]) -> tuple[dict[str, str], list[str]]:
        """Symbol -> fytoken for the known symbols, and the list the server called invalid."""
        wanted = _symbols(symbols)
        return await self._chunked(
            "symbol-token",
            wanted,
            MAX_SYMBOLS_PER_TOKEN_CALL,
            self._tokens_chunk,
            _merge_token_answers,
        )

    async def market_status(self) -> list[dict[str, Any]]:
        """One entry per exchange segment (``exchange``, ``segment``, ``status``...)."""
        deadline = self._plan("marketStatus", 1, "1 request")
        await self._acquire("marketStatus", deadline)
        body = await self._data_call("marketStatus", "/data/marketStatus")
        status = body.get("marketStatus")
        if not isinstance(status, list):
            raise ProviderUnavailable("fyers marketStatus: no marketStatus list in the answer")
        return [s for s in status if isinstance(s, dict)]

    # --- requests --------------------------------------------------------------------------

    async def _data_call(
        self, call: str, path: str, *, params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        token = self._current_token(call)
        status, body, headers = await self._send(
            call, "GET", path, token=token, headers={"Authorization": token}, params=params
        )
        return self._check(call, status, body, headers, token)

    async def _quotes_chunk(self, chunk: list[str]) -> dict[str, Tick]:
        body = await self._data_call("quotes", "/data/quotes", params={"symbols": ",".join(chunk)})
        recv_ns = time.time_ns()
        out: dict[str, Tick] = {}
        for item in body.get("d") or ():
            if not isinstance(item, dict) or item.get("s") != "ok":
                continue  # per-symbol error: an unknown symbol
            name, values = item.get("n"), item.get("v")
            if name in out or name not in chunk or not isinstance(values, dict):
                continue
            out[name] = self._quote_tick(name, values, recv_ns)
        self._count_unknown(s for s in chunk if s not in out)
        return out

    async def _tokens_chunk(self, chunk: list[str]) -> tuple[dict[str, str], list[str]]:
        token = self._current_token("symbol-token")
        # This call takes the bare JWT, without "APP_ID:" (FYERS.md §3.2).
        status, body, headers = await self._send(
            "symbol-token",
            "POST",
            "/data/symbol-token",
            token=token,
            headers={"Authorization": token.split(":", 1)[-1]},
            json_body={"symbols": chunk},
        )
        body = self._check("symbol-token", status, body, headers, token)
        valid_raw = body.get("validSymbol") or {}
        valid = {s: str(t) for s, t in valid_raw.items() if isinstance(s, str) and t}
        invalid = [s for s in body.get("invalidSymbol") or () if isinstance(s, str)]
        self._remember(valid)
        self._count_unknown(invalid)
        return valid, invalid

    def _check(
        self,
        call: str,
        status: int,
        body: Any,
        headers: Mapping[str, str],
        token: str,
    ) -> dict[str, Any]:
        """The body of a good answer; the typed error for anything else."""
        data = body if isinstance(body, dict) else {}
        code = data.get("code")
        said = self._scrub(data.get("message") or data.get("s") or "", token)
        detail = f"HTTP {status}, code {code}: {said}" if code is not None else f"HTTP {status}"
        if status == 429 or code == -429:
            raise RateLimited(
                f"fyers {call}: the server's rate limit ({detail})",
                retry_after=retry_after_header(headers),
            )
        if status in (401, 403) or code in AUTH_CODES:
            raise AuthError(f"fyers {call}: the token was refused ({detail})")
        if status >= 500:
            raise ProviderUnavailable(f"fyers {call}: server error ({detail})")
        if not isinstance(body, dict):
            raise ProviderUnavailable(f"fyers {call}: the answer is not a JSON object ({detail})")
        if status != 200 or data.get("s") != "ok":
            raise ProviderError(f"fyers {call}: request refused ({detail})")
        return data

    # --- parsing ---------------------------------------------------------------------------

    def _remember(self, fytokens: Mapping[str, str]) -> None:
        if len(self.fytokens) + len(fytokens) > MAX_REMEMBERED_FYTOKENS:
            self.fytokens.clear()  # rare; the next responses teach it again
        self.fytokens.update(fytokens)

    def _scale(self, symbol: str, fytoken: str | None = None) -> int:
        scale = self.scales.get(symbol)
        if scale is not None:
            return scale
        fytoken = fytoken or self.fytokens.get(symbol, "")
        return 4 if fytoken.startswith(FOUR_DECIMAL_SEGMENTS) else 2

    def _quote_tick(self, symbol: str, v: Mapping[str, Any], recv_ns: int) -> Tick:
        fytoken = v.get("fyToken")
        if isinstance(fytoken, str) and fytoken:
            self._remember({symbol: fytoken})
        fields = ("lp", "bid", "ask", "open_price", "high_price", "low_price",
                  "prev_close_price", "atp")  # fmt: skip
        prices, scale = scaled_prices(
            [decimal_of(v.get(f)) for f in fields], self._scale(symbol, fytoken)
        )
        ltp, bid, ask, open_, high, low, prev_close, atp = prices
        tt = quantity(v.get("tt"))
        return Tick(
            provider=ProviderName.FYERS,
            symbol=symbol,
            ltp=ltp or 0,
            scale=scale,
            recv_ns=recv_ns,
            instrument=self.instruments.get(symbol, ""),
            exchange_ts=tt * 1000 if tt else None,
            volume=quantity(v.get("volume")),
            bid=nonzero(bid),
            ask=nonzero(ask),
            open=nonzero(open_),
            high=nonzero(high),
            low=nonzero(low),
            prev_close=nonzero(prev_close),
            atp=nonzero(atp),
        )

    def _depth_tick(self, symbol: str, d: Mapping[str, Any], recv_ns: int) -> Tick:
        # Asymmetric keys in the real API: "bids" plural, "ask" singular (FYERS.md §3.4).
        bids_raw = [b for b in d.get("bids") or () if isinstance(b, dict)][:5]
        asks_raw = [a for a in d.get("ask") or () if isinstance(a, dict)][:5]
        fields = ("ltp", "o", "h", "l", "c", "atp", "lower_ckt", "upper_ckt")
        raw = [decimal_of(d.get(f)) for f in fields]
        raw += [decimal_of(level.get("price")) for level in bids_raw + asks_raw]
        # A tick size finer than the default scale (0.0025 for USDINR) means more decimals.
        tick_size = decimal_of(d.get("tick_Size"))
        scale = self._scale(symbol)
        if tick_size is not None and tick_size > 0:
            scale = max(scale, min(MAX_SCALE, -int(tick_size.normalize().as_tuple().exponent)))
        prices, scale = scaled_prices(raw, scale)
        ltp, open_, high, low, prev_close, atp, lower, upper = prices[:8]
        level_prices = prices[8:]

        def levels(raw_levels: list[dict[str, Any]], offset: int) -> tuple[DepthLevel, ...]:
            out = []
            for i, level in enumerate(raw_levels):
                price, qty = level_prices[offset + i], quantity(level.get("volume")) or 0
                if price or qty:  # all-zero rows are empty levels, not orders at ₹0
                    out.append(DepthLevel(price or 0, qty, quantity(level.get("ord"))))
            return tuple(out)

        bids, asks = levels(bids_raw, 0), levels(asks_raw, len(bids_raw))
        oi = quantity(d.get("oi"))
        ltt = quantity(d.get("ltt"))
        return Tick(
            provider=ProviderName.FYERS,
            symbol=symbol,
            ltp=ltp or 0,
            scale=scale,
            recv_ns=recv_ns,
            instrument=self.instruments.get(symbol, ""),
            ltt=ltt * 1000 if ltt else None,
            ltq=quantity(d.get("ltq")),
            volume=quantity(d.get("v")),
            bid=bids[0].price if bids else None,
            ask=asks[0].price if asks else None,
            bid_qty=bids[0].qty if bids else None,
            ask_qty=asks[0].qty if asks else None,
            open=nonzero(open_),
            high=nonzero(high),
            low=nonzero(low),
            prev_close=nonzero(prev_close),
            atp=nonzero(atp),
            # oiflag says whether the instrument carries OI at all (false for cash).
            oi=oi if d.get("oiflag") or oi else None,
            total_buy_qty=quantity(d.get("totalbuyqty")),
            total_sell_qty=quantity(d.get("totalsellqty")),
            lower_circuit=nonzero(lower),
            upper_circuit=nonzero(upper),
            bids=bids,
            asks=asks,
        )


def _symbols(symbols: Iterable[str]) -> list[str]:
    """Deduplicated, in order; malformed ones are a caller bug, refused before sending."""
    wanted = list(dict.fromkeys(symbols))
    bad = [s for s in wanted if not isinstance(s, str) or ":" not in s or "," in s]
    if bad:
        raise ValueError(f"fyers: not FYERS symbols: {bad[:5]!r}")
    return wanted


def _merge_token_answers(
    parts: list[tuple[dict[str, str], list[str]]],
) -> tuple[dict[str, str], list[str]]:
    valid: dict[str, str] = {}
    invalid: list[str] = []
    for part_valid, part_invalid in parts:
        valid.update(part_valid)
        invalid.extend(part_invalid)
    return valid, invalid
