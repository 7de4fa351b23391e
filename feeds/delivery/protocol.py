"""The WebSocket API's messages (docs/websocket-api.md): parsing requests, rendering answers.

Pure: no I/O, no asyncio, no Django. Requests come in as text and leave as a ``Request`` or a
``ProtocolError`` with the API's error code. Ticks are rendered once per (tick, mode) into a
JSON fragment without ``seq``; each client's sequence number is spliced in when its message is
built, so a tick going to 500 clients is serialised once, not 500 times.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from validation.checks import check_names

MAX_SYMBOLS_PER_REQUEST = 1000
MAX_REQUEST_BYTES = 64 * 1024
MAX_ID_LENGTH = 64


class Mode(StrEnum):
    LTP = "ltp"
    QUOTE = "quote"
    DEPTH = "depth"


MODES = tuple(m.value for m in Mode)


class ErrorCode(StrEnum):
    MALFORMED_REQUEST = "malformed_request"
    NOT_AUTHENTICATED = "not_authenticated"
    AUTH_FAILED = "auth_failed"
    UNKNOWN_SYMBOL = "unknown_symbol"
    NOT_PERMITTED = "not_permitted"
    LIMIT_EXCEEDED = "limit_exceeded"
    RATE_LIMITED = "rate_limited"
    INTERNAL_ERROR = "internal_error"


class CloseCode:
    AUTH = 4001
    TOO_SLOW = 4008
    TOO_MANY_CONNECTIONS = 4029
    GOING_AWAY = 1001
    INTERNAL = 1011


class ProtocolError(Exception):
    """A request the API refuses; becomes an ``error`` message, never a dropped socket."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        request_id: Any = None,
        symbols: Sequence[str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.symbols = list(symbols) if symbols is not None else None
        self.retry_after = retry_after

    def render(self) -> str:
        fields: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.symbols is not None:
            fields["symbols"] = self.symbols
        if self.retry_after is not None:
            fields["retry_after"] = round(self.retry_after, 3)
        return message("error", self.request_id, **fields)


class Action(StrEnum):
    AUTH = "auth"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    SUBSCRIPTIONS = "subscriptions"
    PING = "ping"


@dataclass(frozen=True, slots=True)
class Request:
    action: Action
    id: Any = None
    symbols: tuple[str, ...] = ()
    mode: Mode = Mode.LTP
    token: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


def _request_id(payload: Mapping[str, Any]) -> Any:
    value = payload.get("id")
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and len(value) <= MAX_ID_LENGTH):
        return value
    raise ProtocolError(
        ErrorCode.MALFORMED_REQUEST, f"'id' must be a number or a string of at most "
        f"{MAX_ID_LENGTH} characters",
    )  # fmt: skip


def _symbols(payload: Mapping[str, Any], request_id: Any) -> tuple[str, ...]:
    symbols = payload.get("symbols")
    if not isinstance(symbols, list) or not symbols:
        raise ProtocolError(
            ErrorCode.MALFORMED_REQUEST, "'symbols' must be a non-empty list of strings",
            request_id=request_id,
        )  # fmt: skip
    if len(symbols) > MAX_SYMBOLS_PER_REQUEST:
        raise ProtocolError(
            ErrorCode.LIMIT_EXCEEDED,
            f"{len(symbols)} symbols in one request; at most {MAX_SYMBOLS_PER_REQUEST}",
            request_id=request_id,
        )
    if not all(isinstance(s, str) and 0 < len(s.strip()) <= 100 for s in symbols):
        raise ProtocolError(
            ErrorCode.MALFORMED_REQUEST, "every symbol must be a non-empty string",
            request_id=request_id,
        )  # fmt: skip
    return tuple(dict.fromkeys(s.strip() for s in symbols))


def request_parse(text: str | bytes | None) -> Request:
    """One client frame as a ``Request``; ``ProtocolError`` says what is wrong with it."""
    if text is None:
        raise ProtocolError(ErrorCode.MALFORMED_REQUEST, "requests are JSON text frames")
    if len(text) > MAX_REQUEST_BYTES:
        raise ProtocolError(
            ErrorCode.MALFORMED_REQUEST,
            f"request of {len(text)} bytes; at most {MAX_REQUEST_BYTES}",
        )
    try:
        payload = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(ErrorCode.MALFORMED_REQUEST, f"not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ProtocolError(ErrorCode.MALFORMED_REQUEST, "a request must be a JSON object")
    request_id = _request_id(payload)
    raw_action = payload.get("action")
    try:
        action = Action(raw_action)
    except ValueError:
        known = ", ".join(a.value for a in Action)
        raise ProtocolError(
            ErrorCode.MALFORMED_REQUEST, f"unknown action {raw_action!r}; one of: {known}",
            request_id=request_id,
        ) from None  # fmt: skip
    if action is Action.AUTH:
        token = payload.get("token")
        if not isinstance(token, str) or not token:
            raise ProtocolError(
                ErrorCode.MALFORMED_REQUEST, "'token' must be a non-empty string",
                request_id=request_id,
            )  # fmt: skip
        return Request(action, request_id, token=token)
    if action in (Action.SUBSCRIBE, Action.UNSUBSCRIBE):
        symbols = _symbols(payload, request_id)
        mode = Mode.LTP
        if action is Action.SUBSCRIBE:
            raw_mode = payload.get("mode", Mode.LTP.value)
            try:
                mode = Mode(raw_mode)
            except ValueError:
                raise ProtocolError(
                    ErrorCode.MALFORMED_REQUEST,
                    f"unknown mode {raw_mode!r}; one of: {', '.join(MODES)}",
                    request_id=request_id,
                ) from None
        return Request(action, request_id, symbols=symbols, mode=mode)
    return Request(action, request_id)


# --- rendering ------------------------------------------------------------------------------


def _dumps(message: dict[str, Any]) -> str:
    return orjson.dumps(message).decode()


def message(type_: str, request_id: Any = None, **fields: Any) -> str:
    body: dict[str, Any] = {"type": type_}
    if request_id is not None:
        body["id"] = request_id
    body.update(fields)
    return _dumps(body)


_QUOTE_PRICES = ("open", "high", "low", "atp", "bid", "ask", "lower_circuit", "upper_circuit")
_QUOTE_COUNTS = ("volume", "bid_qty", "ask_qty", "total_buy_qty", "total_sell_qty", "oi")
_GREEKS = ("iv", "delta", "theta", "gamma", "vega", "rho")


def item_render(key: str, provider: str, record: Mapping[str, Any], mode: Mode) -> dict[str, Any]:
    """A cached tick record (prices as integers at ``scale``) as the API shows it in ``mode``."""
    divisor = 10 ** record.get("scale", 2)
    ltp = record.get("ltp")
    item: dict[str, Any] = {"symbol": key, "provider": provider}
    if ltp is not None:
        item["ltp"] = ltp / divisor
    for name in ("ltq", "ltt", "exchange_ts"):
        if (value := record.get(name)) is not None:
            item[name] = value
    if (recv_ns := record.get("recv_ns")) is not None:
        item["recv_ts"] = recv_ns / 1_000_000
    flags = record.get("flags")
    item["suspect"] = bool(flags)
    if flags:
        item["checks"] = list(check_names(flags))
        if (consensus := record.get("consensus")) is not None:
            item["consensus"] = consensus / divisor
    close = record.get("prev_close")
    if close is not None:
        item["close"] = close / divisor
        if ltp is not None:
            item["change"] = (ltp - close) / divisor
            if close:
                item["change_pct"] = round((ltp - close) * 100 / close, 2)
    if mode is Mode.LTP:
        return item
    for name in _QUOTE_PRICES:
        if (value := record.get(name)) is not None:
            item[name] = value / divisor
    for name in _QUOTE_COUNTS:
        if (value := record.get(name)) is not None:
            item[name] = value
    for name in _GREEKS:
        if (value := record.get(name)) is not None:
            item[name] = value
    if mode is Mode.DEPTH:
        for side in ("bids", "asks"):
            if (levels := record.get(side)) is not None:
                item[side] = [[p / divisor, q, o] for p, q, o in levels]
    return item


class Rendered:
    """One tick's JSON fragments, made on first use per mode: ``{"symbol":…}`` minus ``seq``."""

    __slots__ = ("_by_mode", "exchange_ms", "key", "provider", "record", "recv_ns")

    def __init__(self, key: str, provider: str, record: Mapping[str, Any]) -> None:
        self.key = key
        self.provider = provider
        self.record = record
        # For the latency measures: when the hub received the tick, when the exchange stamped
        # it (0 when unknown).
        recv_ns = record.get("recv_ns")
        self.recv_ns = recv_ns if isinstance(recv_ns, int) else 0
        exchange_ms = record.get("exchange_ts")
        self.exchange_ms = exchange_ms if isinstance(exchange_ms, int) else 0
        self._by_mode: dict[Mode, str] = {}

    def fragment(self, mode: Mode) -> str:
        text = self._by_mode.get(mode)
        if text is None:
            # The leading "{" is dropped here so that "seq" can be put in front cheaply.
            text = self._by_mode[mode] = _dumps(item_render(self.key, self.provider,
                                                            self.record, mode))[1:]  # fmt: skip
        return text


def update_message(items: Iterable[Sequence[Any]], *, conflated: int, ts_ms: float) -> str:
    """An ``update`` of items that start with (seq, fragment), built by joining text, not
    re-serialising (the rest of an item is the sender's, e.g. its times)."""
    body = ",".join(f'{{"seq":{item[0]},{item[1]}' for item in items)
    return f'{{"type":"update","ts":{ts_ms:.1f},"conflated":{conflated},"data":[{body}]}}'


def snapshot_item(
    key: str,
    *,
    seq: int,
    provider: str | None,
    record: Mapping[str, Any] | None,
    mode: Mode,
    source: str | None,
    age: float | None,
    stale: bool,
) -> dict[str, Any]:
    item = (
        item_render(key, provider or "", record, mode)
        if record is not None
        else {"symbol": key, "provider": provider}
    )
    item["seq"] = seq
    item["source"] = source
    item["age"] = round(age, 4) if age is not None else None
    item["stale"] = stale
    return item
