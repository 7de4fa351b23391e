"""FYERS REST quotes: the hub's L3 layer (fresh quotes on demand), rate-limited client-side.

providers/FYERS.md §3: quotes (≤50 symbols a call), depth (5 levels, with the asymmetric
``bids``/``ask`` keys), symbol → fytoken (≤500 a call, bare-JWT header) and market status;
10 requests/s and 200/min, ``code: -429`` when throttled.

Every public call first checks that the calls it needs can fit the rate budget within
``max_wait`` (refusing with ``RateLimited`` before anything is sent), then spends one unit of
the limiter per HTTP request. Nothing is retried here: the caller decides what to do with a
``RateLimited``, ``AuthError`` or ``ProviderUnavailable``.

``RestClientBase`` (session, budget, chunking, exact prices, error text) is shared with the
Upstox client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, ClassVar, Self, TypeVar

import aiohttp
from multidict import CIMultiDictProxy

from feeds.providers.errors import (
    AuthError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from feeds.providers.ratelimit import RateLimiter, Window
from feeds.providers.ticks import MAX_SCALE, DepthLevel, ProviderName, Tick

logger = logging.getLogger(__name__)

R = TypeVar("R")
M = TypeVar("M")

MAX_SYMBOLS_PER_QUOTES_CALL = 50  # FYERS.md §3.3
MAX_SYMBOLS_PER_TOKEN_CALL = 500  # FYERS.md §3.2
FYERS_WINDOWS = (Window(10, 1.0), Window(200, 60.0))  # FYERS.md §3.6
AUTH_CODES = frozenset({-8, -15, -16, -17})  # expired / invalid / could not authenticate
FOUR_DECIMAL_SEGMENTS = ("1012", "1212")  # fytoken prefixes of cde_fo, bcs_fo (§2.2)
MAX_REMEMBERED_FYTOKENS = 200_000  # bounds the symbol -> fytoken memory
MAX_MESSAGE = 200  # characters of a server message kept in an error


# --- shared machinery ----------------------------------------------------------------------


class PartialRateLimited(RateLimited):
    """The budget ran out part-way through a chunked call; ``partial`` holds what did arrive."""

    def __init__(self, message: str, retry_after: float | None, partial: Any) -> None:
        super().__init__(message, retry_after)
        self.partial = partial


@dataclass(slots=True)
class RestStats:
    requests: int = 0  # HTTP requests sent (attempts)
    refused_locally: int = 0  # calls refused by the up-front budget check or the limiter
    unknown: int = 0  # requested symbols the provider did not know
    last_unknown: list[str] = field(default_factory=list)  # a few, for diagnostics


def decimal_of(value: object) -> Decimal | None:
    """A JSON number as the decimal text the provider wrote (shortest float repr)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value)) if isinstance(value, int | float | str) else None
    except InvalidOperation:
        return None
    return number if number is not None and number.is_finite() else None


def scaled_prices(values: Sequence[Decimal | None], scale: int) -> tuple[list[int | None], int]:
    """Prices as integers at one shared scale: ``scale``, raised only as far as a value's own
    decimals need (so nothing is lost), at most MAX_SCALE (beyond it: half-even rounding)."""
    needed = scale
    for value in values:
        if value is not None:
            needed = max(needed, -int(value.as_tuple().exponent))
    needed = min(needed, max(scale, MAX_SCALE))
    return [
        None
        if value is None
        else int(value.scaleb(needed).to_integral_value(rounding=ROUND_HALF_EVEN))
        for value in values
    ], needed


def quantity(value: object) -> int | None:
    """An integer quantity; providers sometimes send ``12345.0``."""
    number = decimal_of(value)
    return None if number is None else int(number.to_integral_value(rounding=ROUND_HALF_EVEN))


def nonzero(value: int | None) -> int | None:
    """Providers write 0 for "no such price" (no bid, no circuit); a real price is never 0."""
    return value or None


def retry_after_header(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds when the server sent one (the HTTP-date form is ignored)."""
    try:
        value = float(headers.get("Retry-After", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


class RestClientBase:
    """Session, rate budget, chunked calls and error text shared by the REST clients."""

    provider: ClassVar[ProviderName]
    default_windows: ClassVar[tuple[Window, ...]]

    def __init__(
        self,
        *,
        api_url: str,
        token: Callable[[], str],
        session: aiohttp.ClientSession | None = None,
        limiter: RateLimiter | None = None,
        timeout: float = 5.0,
        max_wait: float = 1.0,
        scales: Mapping[str, int] | None = None,
        instruments: Mapping[str, str] | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._token = token
        self._session = session
        self._owns_session = session is None
        self.limiter = limiter or RateLimiter(self.default_windows, name=self.provider.value)
        self.timeout = timeout
        self.max_wait = max_wait
        self.scales: Mapping[str, int] = scales or {}
        self.instruments: Mapping[str, str] = instruments or {}  # provider symbol -> canonical
        self.stats = RestStats()

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession | None:
        return self._session

    def _http(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop (constructors may run outside one).
        if self._session is None or (self._owns_session and self._session.closed):
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        """Close the session if this client created it (a caller's session stays open); a
        later call would open a new one."""
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- token and messages ----------------------------------------------------------------

    def _current_token(self, call: str) -> str:
        token = self._token()
        if not token:
            raise AuthError(f"{self.provider} {call}: no access token")
        return token

    @staticmethod
    def _scrub(text: object, token: str) -> str:
        """Server or library text for an error message: short, and never the token."""
        out = str(text)[:MAX_MESSAGE]
        for secret in {token, token.rpartition(":")[2]}:
            if len(secret) >= 8:
                out = out.replace(secret, "<token>")
        return out

    def _count_unknown(self, symbols: Iterable[str]) -> None:
        missing = list(symbols)
        if missing:
            self.stats.unknown += len(missing)
            self.stats.last_unknown = (self.stats.last_unknown + missing)[-20:]

    # --- the rate budget -------------------------------------------------------------------

    def _plan(self, call: str, calls: int, what: str) -> float:
        """Refuse before anything is sent when ``calls`` cannot fit; return the deadline for
        the limiter waits (``max_wait`` is the whole call's waiting budget).

        One call of this client never needs more requests than every window allows (as the
        limiter's own ``delay_for`` rule); within that, the limiter knows exactly when they
        all fit, its history included."""
        windows = self.limiter.windows
        exceeded = [str(w) for w in windows if calls > w.limit]
        if exceeded:
            self.stats.refused_locally += 1
            raise RateLimited(
                f"{self.provider} {call}: {calls} calls needed for {what}, more than the "
                f"{' and '.join(exceeded)} rate budget{'s' if len(exceeded) > 1 else ''} "
                "allow; split the request over time"
            )
        needed = self.limiter.delay_for(calls)
        if needed > self.max_wait:
            self.stats.refused_locally += 1
            raise RateLimited(
                f"{self.provider} {call}: {calls} calls needed for {what}; the "
                f"{', '.join(map(str, windows))} rate budget has room for them in "
                f"{needed:.2f} s (max_wait {self.max_wait:g} s)",
                retry_after=needed,
            )
        return time.monotonic() + self.max_wait

    async def _acquire(self, call: str, deadline: float) -> None:
        try:
            await self.limiter.acquire(1, max_wait=max(0.0, deadline - time.monotonic()))
        except RateLimited as exc:
            self.stats.refused_locally += 1
            retry = f"; retry in {exc.retry_after:.2f} s" if exc.retry_after is not None else ""
            message = (
                f"{self.provider} {call}: client-side rate budget "
                f"{', '.join(map(str, self.limiter.windows))} is spent{retry}"
            )
            raise RateLimited(message, exc.retry_after) from None

    async def _chunked(
        self,
        call: str,
        items: Sequence[str],
        size: int,
        fetch: Callable[[list[str]], Awaitable[R]],
        merge: Callable[[list[R]], M],
        what: str = "symbols",
    ) -> M:
        """Fetch ``items`` in chunks of ``size``: budget check first, one limiter unit per
        request, requests in flight together. A budget that runs out part-way (another user
        of a shared limiter, or the server's 429 for some chunks) raises
        ``PartialRateLimited`` with the merged results that did arrive."""
        chunks = [list(items[i : i + size]) for i in range(0, len(items), size)]
        if not chunks:
            return merge([])
        deadline = self._plan(call, len(chunks), f"{len(items)} {what} (≤{size} a call)")
        tasks: list[asyncio.Task[R]] = []
        try:
            limited: RateLimited | None = None
            for chunk in chunks:  # bounded: one pass over the chunks
                try:
                    await self._acquire(call, deadline)
                except RateLimited as exc:
                    limited = exc
                    break
                tasks.append(asyncio.create_task(fetch(chunk)))
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for task in tasks:  # only if we were cancelled: gather has finished them otherwise
                task.cancel()
        results = [o for o in outcomes if not isinstance(o, BaseException)]
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if limited is None:
            limited = next((e for e in errors if isinstance(e, RateLimited)), None)
        fatal = next((e for e in errors if not isinstance(e, RateLimited)), None)
        if fatal is not None:
            raise fatal
        if limited is not None:
            if not results:
                raise limited
            raise PartialRateLimited(str(limited), limited.retry_after, merge(results))
        return merge(results)

    # --- HTTP ------------------------------------------------------------------------------

    async def _send(
        self,
        call: str,
        method: str,
        path: str,
        *,
        token: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> tuple[int, Any, CIMultiDictProxy[str]]:
        """One HTTP exchange: (status, parsed JSON body or None, headers). Transport failures
        become ProviderUnavailable, raised outside the except block so that no exception
        carrying the request (and its Authorization header) hangs off ours."""
        failure = ""
        self.stats.requests += 1
        try:
            async with self._http().request(
                method,
                self.api_url + path,
                headers=headers,
                params=params,
                json=json_body,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                status, reply_headers = response.status, response.headers
                raw = await response.read()
        except TimeoutError:
            failure = f"no answer within {self.timeout:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            failure = f"{type(exc).__name__}: {self._scrub(exc, token)}"
        if failure:
            logger.debug("%s %s: %s", self.provider, call, failure)
            raise ProviderUnavailable(f"{self.provider} {call}: {failure}")
        try:
            body = json.loads(raw) if raw else None
        except ValueError:  # HTML from a proxy, truncated JSON...
            body = None
        return status, body, reply_headers


# --- FYERS ---------------------------------------------------------------------------------


class FyersRestClient(RestClientBase):
    """FYERS data REST API. ``token()`` returns ``"APP_ID:JWT"``; ``scales`` (symbol ->
    decimals) overrides the default scale (2; 4 for currency, known from the fytoken);
    ``instruments`` (symbol -> canonical key) fills ``Tick.instrument``."""

    provider = ProviderName.FYERS
    default_windows = FYERS_WINDOWS

    def __init__(
        self,
        *,
        api_url: str,
        token: Callable[[], str],
        session: aiohttp.ClientSession | None = None,
        limiter: RateLimiter | None = None,
        timeout: float = 5.0,
        max_wait: float = 1.0,
        scales: Mapping[str, int] | None = None,
        instruments: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            api_url=api_url,
            token=token,
            session=session,
            limiter=limiter,
            timeout=timeout,
            max_wait=max_wait,
            scales=scales,
            instruments=instruments,
        )
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


def merge_dicts(parts: list[dict[str, Tick]]) -> dict[str, Tick]:
    merged: dict[str, Tick] = {}
    for part in parts:
        merged.update(part)
    return merged


def _merge_token_answers(
    parts: list[tuple[dict[str, str], list[str]]],
) -> tuple[dict[str, str], list[str]]:
    valid: dict[str, str] = {}
    invalid: list[str] = []
    for part_valid, part_invalid in parts:
        valid.update(part_valid)
        invalid.extend(part_invalid)
    return valid, invalid
