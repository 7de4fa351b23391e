"""What the providers' REST quote clients share: one session, the rate budget checked
before anything is sent, chunked calls, exact prices and error text without tokens.

Every public call of a client first checks that the requests it needs fit the budget within
``max_wait`` (refusing with ``RateLimited`` before anything is sent), then spends one unit of
the limiter per HTTP request. Nothing is retried here: the caller decides what to do with a
``RateLimited``, ``AuthError`` or ``ProviderUnavailable``.
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
    ProviderUnavailable,
    RateLimited,
)
from feeds.providers.ratelimit import RateLimiter, Window
from feeds.providers.ticks import MAX_SCALE, ProviderName, Tick

logger = logging.getLogger(__name__)

R = TypeVar("R")
M = TypeVar("M")

MAX_MESSAGE = 200  # characters of a server message kept in an error


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


def merge_dicts(parts: list[dict[str, Tick]]) -> dict[str, Tick]:
    merged: dict[str, Tick] = {}
    for part in parts:
        merged.update(part)
    return merged
