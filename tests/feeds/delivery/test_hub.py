"""The per-process fan-out: ticks reach exactly the clients that asked, conflated per
client, and a client that cannot keep up is cut off without holding anyone else up."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from feeds.delivery.hub import BATCH_TYPE, ClientFeed, FanoutHub, Limits, TokenBucket
from feeds.delivery.protocol import Mode

LIMITS = Limits(subscriptions=100, requests_per_second=10, updates_per_second=1000,
                connections=5)  # fmt: skip


def rec(key: str, ltp: int, provider: str = "fyers") -> dict:
    return {"key": key, "provider": provider, "ltp": ltp, "scale": 2, "recv_ns": 1}


class Client:
    """A client socket: records what it was sent; ``blocked`` makes sends hang."""

    def __init__(self) -> None:
        self.frames: list[dict] = []
        self.blocked = asyncio.Event()
        self.blocked.set()

    async def send(self, text: str) -> None:
        await self.blocked.wait()
        self.frames.append(orjson.loads(text))

    def items(self) -> list[dict]:
        return [item for f in self.frames for item in f["data"]]


def feed_for(client: Client, **kwargs) -> ClientFeed:
    options = {"capacity": 100, "max_lag": 0.2, "patience": 0.3, "updates_per_second": 1000}
    options.update(kwargs)
    return ClientFeed(send_text=client.send, **options)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.005)


async def test_only_subscribers_get_a_tick_in_their_mode() -> None:
    hub = FanoutHub()
    a, b = Client(), Client()
    fa, fb = feed_for(a), feed_for(b)
    hub.user_state(1, LIMITS), hub.user_state(2, LIMITS)
    hub.attach(1, fa), hub.attach(2, fb)
    hub.subscribe(fa, ["NSE:SBIN"], Mode.LTP)
    hub.subscribe(fb, ["NSE:INFY"], Mode.QUOTE)
    assert hub.dispatch([rec("NSE:SBIN", 81235), rec("NSE:INFY", 150000), rec("NSE:TCS", 1)]) == 2
    await settle()
    assert [(i["symbol"], i["ltp"], i["seq"]) for i in a.items()] == [("NSE:SBIN", 812.35, 1)]
    assert [(i["symbol"], i["ltp"], i["seq"]) for i in b.items()] == [("NSE:INFY", 1500.0, 1)]
    assert set(hub.latest) == {"NSE:SBIN", "NSE:INFY", "NSE:TCS"}  # L1 of this process
    await hub.detach(1, fa), await hub.detach(2, fb)


async def test_a_batch_message_from_the_channel_layer_is_decoded_once() -> None:
    hub = FanoutHub()
    c = Client()
    f = feed_for(c)
    hub.user_state(1, LIMITS)
    hub.attach(1, f)
    hub.subscribe(f, ["NSE:SBIN"], Mode.LTP)
    data = orjson.dumps([rec("NSE:SBIN", 100), rec("NSE:SBIN", 101)])
    assert hub.receive_batch({"type": BATCH_TYPE, "data": data}) == 2
    assert hub.receive_batch({"type": BATCH_TYPE, "data": b"{broken"}) == 0
    assert hub.receive_batch({"type": BATCH_TYPE, "data": b'{"a": 1}'}) == 0
    assert hub.malformed == 2 and hub.batches == 1
    await settle()
    assert c.items()[-1]["ltp"] == 1.01  # the latest wins after conflation
    await hub.detach(1, f)


async def test_a_blocked_client_is_conflated_with_seq_gaps_and_others_keep_flowing() -> None:
    hub = FanoutHub()
    slow, fast = Client(), Client()
    fs, ff = feed_for(slow), feed_for(fast)
    hub.user_state(1, LIMITS)
    hub.attach(1, fs), hub.attach(1, ff)
    hub.subscribe(fs, ["K"], Mode.LTP)
    hub.subscribe(ff, ["K"], Mode.LTP)
    slow.blocked.clear()
    hub.dispatch([rec("K", 1)])
    await settle()  # the slow writer is now stuck in send with seq 1
    for price in range(2, 12):
        hub.dispatch([rec("K", price)])
        await settle()
    assert [i["seq"] for i in fast.items()] == list(range(1, 12))
    assert len(fs.queue) == 1  # one pending value per symbol, however many ticks
    slow.blocked.set()
    await settle()
    items = slow.items()
    assert [i["seq"] for i in items] == [1, 11]  # the gap says 9 values were not seen
    assert items[-1]["ltp"] == 0.11
    assert slow.frames[-1]["conflated"] == 9
    await hub.detach(1, fs), await hub.detach(1, ff)


async def test_a_client_behind_for_too_long_is_closed_by_the_sweep() -> None:
    hub = FanoutHub()
    slow, fast = Client(), Client()
    closed: list[str] = []

    async def close_slow() -> None:
        closed.append("slow")

    fs = feed_for(slow, on_too_slow=close_slow)
    ff = feed_for(fast)
    hub.user_state(1, LIMITS)
    hub.attach(1, fs), hub.attach(1, ff)
    for f in (fs, ff):
        hub.subscribe(f, ["K"], Mode.LTP)
    slow.blocked.clear()
    sweeper = asyncio.get_running_loop().create_task(hub.sweep(every=0.05))
    try:
        for price in range(60):  # 0.6 s of ticks; max_lag 0.2 + patience 0.3
            hub.dispatch([rec("K", price)])
            await asyncio.sleep(0.01)
    finally:
        sweeper.cancel()
    assert closed == ["slow"] and hub.slow_closed == 1
    assert len(fast.items()) == 60
    await hub.detach(1, fs), await hub.detach(1, ff)


async def test_held_feed_sends_nothing_until_released_and_unsubscribe_drops_pending() -> None:
    hub = FanoutHub()
    c = Client()
    f = feed_for(c)
    hub.user_state(1, LIMITS)
    hub.attach(1, f)
    hub.subscribe(f, ["A", "B"], Mode.LTP)
    with f.held():
        hub.dispatch([rec("A", 1), rec("B", 2)])
        await settle()
        assert c.frames == []
        hub.unsubscribe(f, ["B"])
    await settle()
    assert [i["symbol"] for i in c.items()] == ["A"]
    hub.dispatch([rec("B", 3)])
    await settle()
    assert [i["symbol"] for i in c.items()] == ["A"]
    assert "B" not in hub.index
    await hub.detach(1, f)
    assert hub.index == {} and hub.users == {}


async def test_updates_per_second_limit_conflates_instead_of_queueing() -> None:
    hub = FanoutHub()
    c = Client()
    f = feed_for(c, updates_per_second=10)  # one message per 100 ms
    hub.user_state(1, LIMITS)
    hub.attach(1, f)
    hub.subscribe(f, ["K"], Mode.LTP)
    for price in range(30):  # 300 ms of ticks every 10 ms
        hub.dispatch([rec("K", price)])
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.15)
    assert 3 <= len(c.frames) <= 5
    assert c.items()[-1]["seq"] == 30
    await hub.detach(1, f)


def test_the_latest_table_is_bounded() -> None:
    hub = FanoutHub(max_instruments=2)
    hub.dispatch([rec("A", 1), rec("B", 1), rec("C", 1)])
    assert set(hub.latest) == {"A", "B"} and hub.dropped_instruments == 1


@pytest.mark.parametrize("rate", [1, 20])
def test_token_bucket_allows_bursts_then_says_when(rate: int) -> None:
    bucket = TokenBucket(rate=rate, burst=2 * rate, now=0.0)
    assert all(bucket.take(0.0) == 0 for _ in range(2 * rate))
    wait = bucket.take(0.0)
    assert wait == pytest.approx(1 / rate)
    assert bucket.take(wait) == 0


async def test_clients_follow_the_preferred_provider_and_switch_when_it_falls_silent() -> None:
    hub = FanoutHub(preference=("fyers", "upstox"), standby=1.0)
    c = Client()
    f = feed_for(c)
    hub.user_state(1, LIMITS)
    hub.attach(1, f)
    hub.subscribe(f, ["K"], Mode.LTP)
    second = 1_000_000_000

    def at(seconds: float, provider: str, ltp: int) -> dict:
        return {"key": "K", "provider": provider, "ltp": ltp, "scale": 2,
                "recv_ns": int(seconds * second)}  # fmt: skip

    for when, provider, ltp in [(0.0, "fyers", 100), (0.1, "upstox", 101), (0.5, "fyers", 102),
                                (0.9, "upstox", 103), (1.6, "upstox", 104)]:  # fmt: skip
        hub.dispatch([at(when, provider, ltp)])
        await settle()
    sent = [(i["provider"], i["ltp"]) for i in c.items()]
    # Upstox is held back while FYERS ticks, and goes out once FYERS was silent for 1 s.
    assert sent == [("fyers", 1.0), ("fyers", 1.02), ("upstox", 1.04)]
    assert set(hub.latest["K"]) == {"fyers", "upstox"} and hub.standby_held == 2
    await hub.detach(1, f)


async def test_every_sent_update_is_timed_from_receipt_and_from_the_exchange_stamp() -> None:
    hub = FanoutHub()
    client = Client()
    feed = feed_for(client)
    hub.user_state(1, LIMITS)
    hub.attach(1, feed)
    assert feed.stats is hub.stats  # the hub's, so the figures outlive the client
    hub.subscribe(feed, ["NSE:SBIN", "NSE:INFY", "NSE:TCS"], Mode.LTP)
    now_ns = time.time_ns()
    hub.dispatch([
        {**rec("NSE:SBIN", 1), "recv_ns": now_ns - 30_000_000,  # received 30 ms ago
         "exchange_ts": now_ns // 1_000_000 - 1_000},  # stamped a second ago
        {**rec("NSE:INFY", 2, "upstox"), "recv_ns": now_ns + 5_000_000_000},  # a clock ahead
        {**rec("NSE:TCS", 3), "recv_ns": 0},  # no receive time: not timed
    ])  # fmt: skip
    await settle()
    assert len(client.items()) == 3
    snapshot = hub.perf_snapshot()
    assert snapshot["clients"] == 1 and snapshot["subscriptions"] == 3
    assert snapshot["items_sent"] == 3 and snapshot["messages_sent"] == 1
    receive = hub.stats.receive
    assert receive.total == 2
    assert receive.counts[0] == 1  # the clock ahead counts as 0 ms, never below
    assert 30 <= receive.sum_ms < 30 + 1_000  # the other one: 30 ms and the test's own time
    [(provider, exchange)] = hub.stats.exchange.items()
    assert provider == "fyers" and exchange.total == 1 and 1_000 <= exchange.sum_ms < 2_000
