"""The WebSocket market-data API, ``/ws/v1/market/`` (docs/websocket-api.md).

Thin: the messages are parsed and rendered by ``feeds.delivery.protocol``, ticks reach the
client through this process's ``FanoutHub`` and the client's ``ClientFeed``, the database
is reached through selectors and services. What is left here is the conversation: who the
client is, what it may do, and in which order answers go out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from feeds.delivery.flow import send_gate
from feeds.delivery.hub import ClientFeed, FanoutHub, TokenBucket, UserState
from feeds.delivery.protocol import (
    MODES,
    Action,
    CloseCode,
    ErrorCode,
    ProtocolError,
    Request,
    message,
    request_parse,
    snapshot_item,
)
from feeds.fanout import fanout_hub_get
from feeds.selectors import client_limits_get, instruments_resolve, market_data_get
from feeds.services import api_token_use

logger = logging.getLogger(__name__)

MAX_AUTH_FAILURES = 3


def header_token(scope: dict[str, Any]) -> str | None:
    """The token of an ``Authorization: Token …`` (or ``Bearer …``) header, if any."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin1").strip().partition(" ")
            if scheme.lower() in ("token", "bearer") and token.strip():
                return token.strip()
            return ""  # present but unusable: refused like a wrong token
    return None


class MarketDataConsumer(AsyncWebsocketConsumer):
    hub: FanoutHub
    feed: ClientFeed | None = None
    user_state: UserState | None = None

    async def connect(self) -> None:
        self.hub = fanout_hub_get()
        self.user_id: Any = None
        self.auth_failures = 0
        self.forms: dict[str, str] = {}  # symbol as the client wrote it -> canonical key
        # Before authenticating, a client gets a small budget of its own.
        self.bucket = TokenBucket(rate=5, burst=10, now=time.monotonic())
        self.auth_deadline: asyncio.Task[None] | None = None
        token = header_token(self.scope)
        user, how = None, ""
        if token is not None:
            user = await database_sync_to_async(api_token_use)(token=token) if token else None
            if user is None:
                await self.close()  # before accept: the handshake is refused (HTTP 403)
                return
            how = "token"
        else:
            session_user = self.scope.get("user")
            if session_user is not None and session_user.is_authenticated:
                user, how = session_user, "session"
        await self.accept()
        if user is not None:
            await self.start(user, how)
            return
        timeout = settings.DELIVERY["AUTH_TIMEOUT"]
        await self.send(message("auth_required", timeout=timeout))
        self.auth_deadline = asyncio.get_running_loop().create_task(self.expire_auth(after=timeout))

    async def expire_auth(self, *, after: float) -> None:
        await asyncio.sleep(after)
        if self.feed is None:
            await self.close_with(CloseCode.AUTH, "authentication timed out")

    async def start(self, user: Any, how: str) -> None:
        limits = await database_sync_to_async(client_limits_get)(user=user)
        state = self.hub.user_state(user.pk, limits)
        if len(state.feeds) >= limits.connections:
            await self.close_with(
                CloseCode.TOO_MANY_CONNECTIONS,
                f"{limits.connections} connections open for this user already",
            )
            return
        delivery = settings.DELIVERY
        self.user_id, self.user_state = user.pk, state
        self.feed = ClientFeed(
            send_text=self.send_text,
            gate=send_gate(self.base_send),
            capacity=limits.subscriptions,
            max_lag=delivery["CLIENT_MAX_LAG"],
            patience=delivery["CLIENT_PATIENCE"],
            updates_per_second=limits.updates_per_second,
            label=f"{user.get_username()}/{self.channel_name[-8:]}",
            on_too_slow=self.too_slow,
        )
        self.hub.attach(user.pk, self.feed)
        if self.auth_deadline is not None:
            self.auth_deadline.cancel()
        await self.send(
            message("welcome", user=user.get_username(), auth=how, limits=limits.as_dict(),
                    modes=list(MODES), server_ts=time.time_ns() / 1e6)
        )  # fmt: skip

    async def send_text(self, text: str) -> None:
        await self.send(text_data=text)

    async def close_with(self, code: int, reason: str) -> None:
        # Daphne does not pass a close reason on, so it goes out as a last message as well.
        with contextlib.suppress(Exception):
            await self.send(message("closing", code=code, reason=reason))
        await self.close(code=code, reason=reason)

    async def too_slow(self) -> None:
        delivery = settings.DELIVERY
        if self.feed is not None:
            self.feed.gate.linger(max(10.0, delivery["CLIENT_PATIENCE"] * 3))
        await self.close_with(
            CloseCode.TOO_SLOW,
            f"client too slow: more than {delivery['CLIENT_MAX_LAG']:g} s behind for "
            f"{delivery['CLIENT_PATIENCE']:g} s",
        )

    async def disconnect(self, code: int) -> None:
        if self.auth_deadline is not None:
            self.auth_deadline.cancel()
        if self.feed is not None:
            await self.hub.detach(self.user_id, self.feed)

    # --- requests --------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        bucket = self.user_state.bucket if self.user_state is not None else self.bucket
        retry_after = bucket.take(time.monotonic())
        request_id = None
        try:
            request = request_parse(text_data)
            request_id = request.id
            if retry_after:
                raise ProtocolError(
                    ErrorCode.RATE_LIMITED, "too many requests; this one was not carried out",
                    request_id=request_id, retry_after=retry_after,
                )  # fmt: skip
            await self.handle(request)
        except ProtocolError as exc:
            await self.send(exc.render())
        except Exception:
            logger.exception("market API: request failed")
            failure = ProtocolError(
                ErrorCode.INTERNAL_ERROR,
                "the hub failed on this request; nothing else is affected",
                request_id=request_id,
            )
            await self.send(failure.render())

    async def handle(self, request: Request) -> None:
        if request.action is Action.PING:
            await self.send(message("pong", request.id, server_ts=time.time_ns() / 1e6))
            return
        if request.action is Action.AUTH:
            await self.authenticate(request)
            return
        if self.feed is None:
            raise ProtocolError(ErrorCode.NOT_AUTHENTICATED, "authenticate first",
                                request_id=request.id)  # fmt: skip
        if request.action is Action.SUBSCRIBE:
            await self.subscribe(request)
        elif request.action is Action.UNSUBSCRIBE:
            await self.unsubscribe(request)
        elif request.action is Action.SUBSCRIPTIONS:
            held = [{"symbol": key, "mode": sub.mode.value, "seq": sub.seq}
                    for key, sub in self.feed.subscriptions.items()]  # fmt: skip
            await self.send(message("subscriptions", request.id, symbols=held))

    async def authenticate(self, request: Request) -> None:
        if self.feed is not None:
            raise ProtocolError(ErrorCode.MALFORMED_REQUEST, "already authenticated",
                                request_id=request.id)  # fmt: skip
        user = await database_sync_to_async(api_token_use)(token=request.token)
        if user is None:
            self.auth_failures += 1
            if self.auth_failures >= MAX_AUTH_FAILURES:
                await self.close_with(CloseCode.AUTH, "authentication failed three times")
                return
            raise ProtocolError(ErrorCode.AUTH_FAILED, "unknown, revoked or expired token",
                                request_id=request.id)  # fmt: skip
        await self.start(user, "token")

    async def subscribe(self, request: Request) -> None:
        feed, state = self.feed, self.user_state
        assert feed is not None and state is not None
        resolved = await database_sync_to_async(instruments_resolve)(symbols=request.symbols)
        errors: list[ProtocolError] = []
        unknown = [s for s, r in resolved.items() if r is None]
        if unknown:
            errors.append(ProtocolError(
                ErrorCode.UNKNOWN_SYMBOL, f"no instrument {', '.join(unknown[:5])}"
                + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""),
                request_id=request.id, symbols=unknown,
            ))  # fmt: skip
        disabled = [s for s, r in resolved.items() if r is not None and not r.enabled]
        if disabled:
            errors.append(ProtocolError(
                ErrorCode.NOT_PERMITTED, "not enabled for streaming by the hub's admins",
                request_id=request.id, symbols=disabled,
            ))  # fmt: skip
        wanted = [(s, r) for s, r in resolved.items() if r is not None and r.enabled]
        room = state.limits.subscriptions - state.subscriptions
        accepted, refused, new_keys = [], [], set()
        for symbol, r in wanted:
            if r.key in feed.subscriptions or r.key in new_keys:
                accepted.append((symbol, r))
            elif len(new_keys) < room:
                new_keys.add(r.key)
                accepted.append((symbol, r))
            else:
                refused.append(symbol)
        if refused:
            errors.append(ProtocolError(
                ErrorCode.LIMIT_EXCEEDED, f"subscription limit of {state.limits.subscriptions} "
                "symbols reached", request_id=request.id, symbols=refused,
            ))  # fmt: skip
        if accepted:
            keys = list(dict.fromkeys(r.key for _, r in accepted))
            with feed.held():  # updates wait until the snapshot is out
                self.hub.subscribe(feed, keys, request.mode)
                for symbol, r in accepted:
                    self.forms[symbol] = r.key
                await self.send(message(
                    "subscribed", request.id, mode=request.mode.value,
                    symbols=[{"symbol": r.key, "requested": s, "feed_mode": r.feed_mode}
                             for s, r in accepted],
                ))  # fmt: skip
                values = await market_data_get(symbols=keys)
                items = []
                for key in keys:
                    value = values.get(key)
                    sub = feed.subscriptions.get(key)
                    if sub is None:
                        continue  # unsubscribed meanwhile
                    items.append(snapshot_item(
                        key, seq=0, mode=request.mode,
                        provider=value.provider if value else None,
                        record=value.record if value else None,
                        source=value.source if value else None,
                        age=value.age if value else None,
                        stale=value.stale if value else True,
                    ))  # fmt: skip
                await self.send(message("snapshot", request.id, ts=time.time_ns() / 1e6,
                                        data=items))  # fmt: skip
        for error in errors:
            await self.send(error.render())

    async def unsubscribe(self, request: Request) -> None:
        feed = self.feed
        assert feed is not None
        keys = [self.forms.get(s, s) for s in request.symbols]
        unseen = [s for s, k in zip(request.symbols, keys, strict=True)
                  if k not in feed.subscriptions]  # fmt: skip
        if unseen:  # another form of a symbol subscribed under one name
            resolved = await database_sync_to_async(instruments_resolve)(symbols=unseen)
            keys += [r.key for r in resolved.values() if r is not None]
        gone = self.hub.unsubscribe(feed, keys)
        self.forms = {s: k for s, k in self.forms.items() if k in feed.subscriptions}
        await self.send(message("unsubscribed", request.id, symbols=gone))
