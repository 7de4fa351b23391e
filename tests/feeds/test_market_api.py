"""The WebSocket API end to end in one process: the simulators on real sockets, the real feed
worker and publisher, the channel layer of the mode under test (in-memory, or Redis pub/sub
in the Redis pass), the fan-out hub, and the full ASGI application (origin check, sessions,
auth) driven through Channels' communicator."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client

from feeds import consumers, services
from feeds.fanout import fanout_hub_stop
from feeds.models import ClientLimits, Instrument
from feeds.providers.simulation.run import SimulatorSet
from feeds.runtime import feed_worker_running
from feeds.selectors import market_data_close
from mdproject.asgi import application
from tests.feeds.live import enable, live_worker_config, until

pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/ws/v1/market/"


def _user(name: str, **limits: int) -> tuple[User, str]:
    user = User.objects.create_user(name, password="pw-" + uuid.uuid4().hex)
    if limits:
        defaults = {"max_subscriptions": 500, "max_requests_per_second": 20,
                    "max_updates_per_second": 200, "max_connections": 10}  # fmt: skip
        ClientLimits.objects.create(user=user, **{**defaults, **limits})
    _, token = services.api_token_create(user=user, name="tests")
    return user, token


user_make = sync_to_async(_user)


def token_headers(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Token {token}".encode())]


@contextlib.asynccontextmanager
async def connected(
    headers: list[tuple[bytes, bytes]] | None = None,
) -> AsyncIterator[WebsocketCommunicator]:
    socket = WebsocketCommunicator(application, PATH, headers=headers or [])
    ok, _ = await socket.connect(timeout=5)
    assert ok, "the handshake was refused"
    try:
        yield socket
    finally:
        await socket.disconnect()


async def answer(socket: WebsocketCommunicator, type_: str, within: float = 5.0) -> dict:
    """The next message of ``type_`` (updates in between are skipped)."""
    async with asyncio.timeout(within):
        while True:
            message = await socket.receive_json_from(timeout=within)
            if message["type"] == type_:
                return message


async def closed_with(socket: WebsocketCommunicator, within: float = 5.0) -> int:
    async with asyncio.timeout(within):
        while True:
            output = await socket.receive_output(timeout=within)
            if output["type"] == "websocket.close":
                return output["code"]


class Emitted:
    """What the simulators' market actually produced, per instrument: the ground truth."""

    def __init__(self, sims: SimulatorSet) -> None:
        self.prices: dict[str, set[int]] = defaultdict(set)
        self.scales: dict[str, int] = {}
        for q in sims.hub.model.quotes.values():  # the opening values, before any step
            self.prices[q.instrument.key].add(q.ltp)
            self.scales[q.instrument.key] = q.instrument.scale
        step = sims.hub.step

        def recording_step(now: float | None = None) -> list:
            quotes = step(now)
            for q in quotes:
                self.prices[q.instrument.key].add(q.ltp)
                self.scales[q.instrument.key] = q.instrument.scale
            return quotes

        sims.hub.step = recording_step  # type: ignore[method-assign]

    def saw(self, key: str, price: float) -> bool:
        return round(price * 10 ** self.scales[key]) in self.prices[key]


@pytest.fixture
async def hub(sims: SimulatorSet) -> AsyncIterator[tuple[list[str], Emitted]]:
    """Ten enabled equities ticking through the real worker and publisher."""
    emitted = Emitted(sims)
    keys = await enable(10, tier="high_frequency")
    config = live_worker_config("api")
    async with feed_worker_running(config=config) as worker:
        await until(lambda: len(worker.latest) >= 10, 15, "every instrument ticking")
        yield keys, emitted
    await fanout_hub_stop()
    await market_data_close()


async def test_subscribe_snapshot_then_updates_carry_the_simulators_exact_prices(hub) -> None:
    keys, emitted = hub
    _, token = await user_make("trader")
    async with connected(token_headers(token)) as ws:
        welcome = await answer(ws, "welcome")
        assert welcome["user"] == "trader" and welcome["auth"] == "token"
        assert welcome["limits"]["subscriptions"] == django_settings.DELIVERY["MAX_SUBSCRIPTIONS"]
        await ws.send_json_to({"action": "subscribe", "id": 1, "mode": "quote",
                               "symbols": keys[:3]})  # fmt: skip
        subscribed = await ws.receive_json_from(timeout=5)
        assert subscribed["type"] == "subscribed" and subscribed["id"] == 1
        assert [s["symbol"] for s in subscribed["symbols"]] == keys[:3]
        snapshot = await ws.receive_json_from(timeout=5)
        assert snapshot["type"] == "snapshot" and snapshot["id"] == 1
        assert [i["symbol"] for i in snapshot["data"]] == keys[:3]
        for item in snapshot["data"]:
            assert item["seq"] == 0 and item["source"] in ("l1", "l2", "l3", "l4")
            assert item["age"] >= 0 and emitted.saw(item["symbol"], item["ltp"])
        seen: dict[str, list[int]] = defaultdict(list)
        while len(seen) < 3 or min(len(v) for v in seen.values()) < 2:
            update = await answer(ws, "update")
            for item in update["data"]:
                assert item["symbol"] in keys[:3]
                assert emitted.saw(item["symbol"], item["ltp"]), item  # the value, exactly
                assert {"recv_ts", "exchange_ts", "bid", "ask", "volume"} <= set(item)
                seen[item["symbol"]].append(item["seq"])
        for seqs in seen.values():
            assert seqs == sorted(seqs) and seqs[0] >= 1  # per subscription, increasing


async def test_provider_forms_resolve_and_unsubscribe_stops_updates(hub) -> None:
    keys, _ = hub
    fyers, upstox = await sync_to_async(
        lambda: list(
            Instrument.objects.filter(key__in=keys[:2])
            .order_by("key")
            .values_list("fyers_symbol", "upstox_key")
        )
    )()
    _, token = await user_make("forms")
    async with connected(token_headers(token)) as ws:
        await answer(ws, "welcome")
        requested = [fyers[0], upstox[1]]
        await ws.send_json_to({"action": "subscribe", "id": "a", "symbols": requested})
        subscribed = await answer(ws, "subscribed")
        assert [(s["requested"], s["symbol"]) for s in subscribed["symbols"]] == list(
            zip(requested, sorted(keys[:2]), strict=True)
        )
        await answer(ws, "update")
        await ws.send_json_to({"action": "unsubscribe", "id": "b", "symbols": requested})
        unsubscribed = await answer(ws, "unsubscribed")
        assert sorted(unsubscribed["symbols"]) == sorted(keys[:2])
        await ws.send_json_to({"action": "subscriptions", "id": "c"})
        assert (await answer(ws, "subscriptions"))["symbols"] == []
        # Nothing more for them: the next 1.5 s (3 ticks each) bring no update.
        with pytest.raises(asyncio.TimeoutError):
            await answer(ws, "update", within=1.5)


async def test_anonymous_then_first_message_token(hub) -> None:
    _, token = await user_make("late")
    async with connected() as ws:
        required = await ws.receive_json_from(timeout=5)
        assert required == {"type": "auth_required",
                            "timeout": django_settings.DELIVERY["AUTH_TIMEOUT"]}  # fmt: skip
        await ws.send_json_to({"action": "subscribe", "id": 1, "symbols": ["NSE:SBIN"]})
        refused = await answer(ws, "error")
        assert refused["code"] == "not_authenticated" and refused["id"] == 1
        await ws.send_json_to({"action": "ping", "id": 2})
        assert (await answer(ws, "pong"))["id"] == 2  # ping works before auth
        await ws.send_json_to({"action": "auth", "id": 3, "token": "mdh_wrong"})
        assert (await answer(ws, "error"))["code"] == "auth_failed"
        await ws.send_json_to({"action": "auth", "id": 4, "token": token})
        assert (await answer(ws, "welcome"))["user"] == "late"


async def test_three_wrong_tokens_close_the_socket(hub) -> None:
    async with connected() as ws:
        for attempt in range(3):
            await ws.send_json_to({"action": "auth", "token": f"mdh_wrong{attempt}"})
        assert await closed_with(ws) == 4001


async def test_no_authentication_in_time_closes_with_4001(hub, settings) -> None:
    settings.DELIVERY = {**settings.DELIVERY, "AUTH_TIMEOUT": 0.3}
    async with connected() as ws:
        assert await closed_with(ws) == 4001


async def test_wrong_or_revoked_header_token_refuses_the_handshake(hub) -> None:
    user, token = await user_make("revoked")
    for presented in ("mdh_nope", "", token):
        if presented == token:
            await sync_to_async(lambda: user.api_tokens.update(revoked=True))()
        socket = WebsocketCommunicator(application, PATH, headers=token_headers(presented))
        ok, _ = await socket.connect(timeout=5)
        assert not ok
        await socket.disconnect()


async def test_browser_session_is_accepted_and_foreign_origins_are_refused(hub) -> None:
    def login_cookie() -> str:
        user = User.objects.create_user("browser", password="pw")
        client = Client()
        client.force_login(user)
        return client.cookies[django_settings.SESSION_COOKIE_NAME].value

    session = await sync_to_async(login_cookie)()
    cookie = (b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={session}".encode())
    async with connected([cookie, (b"origin", b"http://localhost:8000")]) as ws:
        welcome = await answer(ws, "welcome")
        assert welcome["user"] == "browser" and welcome["auth"] == "session"
    foreign = [cookie, (b"origin", b"https://evil.example")]
    socket = WebsocketCommunicator(application, PATH, headers=foreign)
    ok, _ = await socket.connect(timeout=5)
    assert not ok  # another site's page cannot use the user's session
    await socket.disconnect()


async def test_errors_are_messages_and_the_socket_stays_open(hub, monkeypatch) -> None:
    keys, _ = hub
    disabled = await sync_to_async(
        lambda: Instrument.objects.filter(enabled=False, instrument_type="EQ").first().key
    )()
    _, token = await user_make("clumsy", max_subscriptions=2)
    async with connected(token_headers(token)) as ws:
        await answer(ws, "welcome")
        cases: list[tuple[Any, str]] = [
            ("{not json", "malformed_request"),
            ({"action": "dance"}, "malformed_request"),
            ({"action": "subscribe", "symbols": keys[:1], "mode": "full"}, "malformed_request"),
            ({"action": "subscribe", "symbols": ["NSE:NOSUCHTHING"]}, "unknown_symbol"),
            ({"action": "subscribe", "symbols": [disabled]}, "not_permitted"),
            ({"action": "subscribe", "symbols": keys[:3]}, "limit_exceeded"),
        ]
        for request, code in cases:
            if isinstance(request, str):
                await ws.send_to(text_data=request)
            else:
                await ws.send_json_to(request)
            error = await answer(ws, "error")
            assert error["code"] == code, (request, error)
            assert error["message"]
        assert error["symbols"] == [keys[2]]  # the two that fit were subscribed
        await ws.send_json_to({"action": "subscriptions"})
        assert [s["symbol"] for s in (await answer(ws, "subscriptions"))["symbols"]] == keys[:2]

        async def broken(**_: Any) -> dict:
            raise RuntimeError("cache layer exploded")

        monkeypatch.setattr(consumers, "market_data_get", broken)
        await ws.send_json_to({"action": "subscribe", "id": 9, "symbols": keys[:1]})
        error = await answer(ws, "error")
        assert error["code"] == "internal_error" and error["id"] == 9
        await ws.send_json_to({"action": "ping", "id": 10})
        assert (await answer(ws, "pong"))["id"] == 10


async def test_request_rate_limit(hub) -> None:
    _, token = await user_make("chatty", max_requests_per_second=2)
    async with connected(token_headers(token)) as ws:
        await answer(ws, "welcome")
        for n in range(6):  # the burst is twice the rate
            await ws.send_json_to({"action": "ping", "id": n})
        replies = [await ws.receive_json_from(timeout=5) for _ in range(6)]
        assert [r["type"] for r in replies] == ["pong"] * 4 + ["error"] * 2
        assert replies[-1]["code"] == "rate_limited" and 0 < replies[-1]["retry_after"] <= 0.5
        await asyncio.sleep(replies[-1]["retry_after"])
        await ws.send_json_to({"action": "ping", "id": "again"})
        assert (await answer(ws, "pong"))["id"] == "again"


async def test_limits_are_per_user_over_all_connections(hub) -> None:
    keys, _ = hub
    _, token = await user_make("busy", max_subscriptions=3, max_connections=2)
    async with connected(token_headers(token)) as one, connected(token_headers(token)) as two:
        await answer(one, "welcome"), await answer(two, "welcome")
        await one.send_json_to({"action": "subscribe", "symbols": keys[:2]})
        await answer(one, "snapshot")
        await two.send_json_to({"action": "subscribe", "symbols": keys[2:4]})
        refused = await answer(two, "error")
        assert refused["code"] == "limit_exceeded" and refused["symbols"] == [keys[3]]
        async with connected(token_headers(token)) as three:
            assert await closed_with(three) == 4029


async def test_updates_per_second_limit_conflates_with_seq_gaps(hub) -> None:
    keys, _ = hub
    _, token = await user_make("throttled", max_updates_per_second=1)
    async with connected(token_headers(token)) as ws:
        await answer(ws, "welcome")
        await ws.send_json_to({"action": "subscribe", "symbols": keys})
        await answer(ws, "snapshot")
        updates = [await answer(ws, "update") for _ in range(4)]
        # Ten symbols at two ticks/s each, one message a second: each carries the newest
        # value per symbol, says how many it replaced, and seq shows the gaps.
        gaps = [b["ts"] - a["ts"] for a, b in itertools.pairwise(updates)]
        assert min(gaps) >= 950, gaps
        assert sum(u["conflated"] for u in updates[1:]) > 0
        last_seq: dict[str, int] = {}
        jumps = 0
        for update in updates:
            for item in update["data"]:
                jumps += item["seq"] - last_seq.get(item["symbol"], item["seq"] - 1) > 1
                last_seq[item["symbol"]] = item["seq"]
        assert jumps > 0
