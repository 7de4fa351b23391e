"""Fuzz the Upstox V3 codecs: every input must decode or raise FrameError, nothing else.

    .venv/bin/python bench/fuzz_upstox.py --seconds 30 --seed 1

Mutates a corpus of valid FeedResponse frames (byte-level and protobuf-aware mutations) and
random bytes through ``UpstoxDecoder.feed``, and mutated request JSON through
``decode_request``. A crash is any other exception, or a FrameError that changed the
decoder's state; the first few are printed with their input, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from feeds.providers.errors import FrameError
from feeds.providers.ticks import DepthLevel, ProviderName, Tick
from feeds.providers.upstox.codec import UpstoxDecoder, encode_request
from feeds.providers.upstox.proto import MarketDataFeedV3_pb2 as pb
from feeds.providers.upstox.server_codec import (
    decode_request,
    encode_feed,
    encode_market_info,
)

TS = 1732775008661
MAX_CRASH_REPORTS = 5


def sample_tick(symbol: str, levels: int, rnd: random.Random) -> Tick:
    ltp = rnd.randrange(100, 10_000_000)
    return Tick(
        ProviderName.UPSTOX,
        symbol,
        ltp,
        4 if symbol.startswith(("NCD_FO|", "BCD_FO|")) else 2,
        0,
        ltt=TS - rnd.randrange(10_000),
        ltq=rnd.randrange(1, 1000),
        prev_close=ltp - 50,
        open=ltp - 10,
        high=ltp + 20,
        low=ltp - 30,
        atp=ltp - 5,
        volume=rnd.randrange(10**9),
        oi=rnd.randrange(10**7),
        total_buy_qty=rnd.randrange(10**6),
        total_sell_qty=rnd.randrange(10**6),
        iv=rnd.random(),
        delta=rnd.random(),
        theta=-rnd.random(),
        gamma=rnd.random() / 100,
        vega=rnd.random() * 10,
        rho=rnd.random(),
        bids=tuple(DepthLevel(ltp - 5 * (i + 1), 10 * (i + 1)) for i in range(levels)),
        asks=tuple(DepthLevel(ltp + 5 * (i + 1), 10 * (i + 1)) for i in range(levels)),
    )


def build_corpus(rnd: random.Random) -> list[bytes]:
    eq, opt, idx, cur = "NSE_EQ|INE062A01020", "NSE_FO|45450", "NSE_INDEX|Nifty 50", "NCD_FO|1"
    corpus = [
        encode_market_info(
            current_ts=TS,
            segment_status={"NSE_EQ": "NORMAL_OPEN", "NSE_FO": "PRE_OPEN_START"},
            pre_open={"NSE_EQ": ("PRE_OPEN_END", TS)},
            cas={"NSE_EQ": ("CAS", TS)},
        )
    ]
    for mode, keys, levels in (
        ("ltpc", [eq, opt, idx, cur], 0),
        ("full", [eq, opt, cur], 5),
        ("full", [idx], 0),
        ("option_greeks", [opt], 1),
        ("full_d30", [opt], 30),
    ):
        for kind in ("initial", "live"):
            ticks = [sample_tick(k, levels, rnd) for k in keys]
            corpus.append(
                encode_feed(
                    ticks=ticks,
                    modes=dict.fromkeys(keys, mode),
                    kind=kind,
                    current_ts=TS,
                    index_keys=frozenset({idx}),
                )
            )
    return corpus


# --------------------------------------------------------------------------- mutators

INTERESTING_BYTES = b"\x00\x01\x7f\x80\xff\x08\x0a\x12\x1a\x22\x2a\x78\x7b\x7c"


def flip_bits(data: bytes, rnd: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rnd.randint(1, 8)):
        if out:
            out[rnd.randrange(len(out))] ^= 1 << rnd.randrange(8)
    return bytes(out)


def set_bytes(data: bytes, rnd: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        if out:
            out[rnd.randrange(len(out))] = rnd.choice(INTERESTING_BYTES)
    return bytes(out)


def truncate(data: bytes, rnd: random.Random) -> bytes:
    return data[: rnd.randrange(len(data) + 1)]


def delete_range(data: bytes, rnd: random.Random) -> bytes:
    a = rnd.randrange(len(data) + 1)
    return data[:a] + data[a + rnd.randint(1, 16) :]


def insert_random(data: bytes, rnd: random.Random) -> bytes:
    a = rnd.randrange(len(data) + 1)
    return data[:a] + rnd.randbytes(rnd.randint(1, 16)) + data[a:]


def duplicate_range(data: bytes, rnd: random.Random) -> bytes:
    a = rnd.randrange(len(data) + 1)
    b = min(len(data), a + rnd.randint(1, 64))
    return data[:b] + data[a:b] * rnd.randint(1, 50) + data[b:]


def random_bytes(data: bytes, rnd: random.Random) -> bytes:
    return rnd.randbytes(rnd.randint(0, 256))


def field_soup(data: bytes, rnd: random.Random) -> bytes:
    """Random but well-formed tags: exercises unknown fields and wrong wire types."""
    out = bytearray()
    for _ in range(rnd.randint(1, 12)):
        field, wire = rnd.randint(1, 20), rnd.choice((0, 1, 2, 5))
        out.append((field << 3 | wire) & 0x7F)
        if wire == 0:
            out += b"\x96\x01"
        elif wire == 1:
            out += rnd.randbytes(8)
        elif wire == 5:
            out += rnd.randbytes(4)
        else:
            body = rnd.choice((b"", rnd.randbytes(rnd.randint(1, 20)), data[:40]))
            out += bytes([len(body)]) + body
    return bytes(out)


NASTY_DOUBLES = (float("nan"), float("inf"), float("-inf"), -0.0, 1e308, -1e308, 5e-324)
NASTY_INTS = (0, -1, 2**63 - 1, -(2**63), 1)


def proto_aware(data: bytes, rnd: random.Random) -> bytes:
    """Parse a valid frame and plant extreme values, odd enums, empty members, big lists."""
    try:
        msg = pb.FeedResponse.FromString(data)
    except Exception:  # a mutated input is not ours to parse; start from empty
        msg = pb.FeedResponse()
    choice = rnd.randrange(8)
    if choice == 0:
        msg.type = rnd.choice((3, 7, 2**31 - 1, -1))
    elif choice == 1:
        msg.marketInfo.segmentStatus[rnd.choice(("NSE_EQ", "X" * 300, ""))] = rnd.randrange(-5, 50)
    key = rnd.choice(("NSE_EQ|X", "NCD_FO|1", "", "é|ü"))
    feed = msg.feeds[key]
    if choice == 2:
        feed.ltpc.ltp = rnd.choice(NASTY_DOUBLES)
        feed.ltpc.ltt = rnd.choice(NASTY_INTS)
    elif choice == 3:
        feed.fullFeed.marketFF.ltpc.cp = rnd.choice(NASTY_DOUBLES)
        feed.fullFeed.marketFF.oi = rnd.choice(NASTY_DOUBLES)
    elif choice == 4:
        quotes = feed.fullFeed.marketFF.marketLevel.bidAskQuote
        for _ in range(rnd.choice((1, 30, 51, 500))):
            quotes.add(bidP=rnd.choice(NASTY_DOUBLES), bidQ=rnd.choice(NASTY_INTS))
        feed.fullFeed.marketFF.ltpc.ltp = 1.0
    elif choice == 5:
        bars = feed.fullFeed.indexFF.marketOHLC.ohlc
        for _ in range(rnd.choice((1, 3, 33, 200))):
            bars.add(interval=rnd.choice(("1d", "I1", "")), open=rnd.choice(NASTY_DOUBLES))
        feed.fullFeed.indexFF.ltpc.SetInParent()
    elif choice == 6:
        feed.firstLevelWithGreeks.optionGreeks.delta = rnd.choice(NASTY_DOUBLES)
        feed.firstLevelWithGreeks.firstDepth.askP = rnd.choice(NASTY_DOUBLES)
        if rnd.random() < 0.5:
            feed.firstLevelWithGreeks.ltpc.SetInParent()
    else:
        feed.requestMode = rnd.randrange(-2, 10)  # maybe no oneof member at all
    return msg.SerializeToString()


def splice(data: bytes, rnd: random.Random, corpus: list[bytes]) -> bytes:
    other = rnd.choice(corpus)
    return data[: rnd.randrange(len(data) + 1)] + other[rnd.randrange(len(other) + 1) :]


BYTE_MUTATORS: list[Callable[[bytes, random.Random], bytes]] = [
    flip_bits,
    set_bytes,
    truncate,
    delete_range,
    insert_random,
    duplicate_range,
    random_bytes,
    field_soup,
    proto_aware,
]


def mutate_frame(rnd: random.Random, corpus: list[bytes]) -> bytes | str:
    data = rnd.choice(corpus)
    if rnd.random() < 0.02:
        return data.decode("latin-1")  # a text frame
    for _ in range(rnd.choice((1, 1, 1, 2, 3))):
        if rnd.random() < 0.1:
            data = splice(data, rnd, corpus)
        else:
            data = rnd.choice(BYTE_MUTATORS)(data, rnd)
    return data


JSON_JUNK = [None, True, 0, -1, 1.5, "", "sub", "ltpc", [], {}, ["NSE_EQ|X"], {"a": 1}, "[" * 50]


def mutate_request(rnd: random.Random) -> bytes | str:
    mode = rnd.choice(("ltpc", "full", "full_d30", "option_greeks"))
    method = rnd.choice(("sub", "change_mode", "unsub"))
    raw = encode_request(method, ["NSE_EQ|X", "NSE_FO|1"], None if method == "unsub" else mode)
    roll = rnd.random()
    if roll < 0.4:
        obj = json.loads(raw)
        target = obj if rnd.random() < 0.5 or not isinstance(obj.get("data"), dict) else obj["data"]
        key = rnd.choice([*target, "instrumentKeys", "mode", "guid", "extra"])
        if rnd.random() < 0.3:
            target.pop(key, None)
        else:
            target[key] = rnd.choice(JSON_JUNK)
        return json.dumps(obj).encode()
    if roll < 0.45:
        return raw.decode()  # a text frame
    if roll < 0.5:
        return b"[" * rnd.randint(1, 5000)
    return rnd.choice(BYTE_MUTATORS[:7])(raw, rnd)


# --------------------------------------------------------------------------- driver


def state(decoder: UpstoxDecoder) -> tuple:
    return (decoder.frames, decoder.ticks, dict(decoder.segment_status), decoder.current_ts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    rnd = random.Random(args.seed)
    corpus = build_corpus(rnd)
    decoder = UpstoxDecoder()
    for frame in corpus:  # the corpus itself must decode
        decoder.feed(frame)

    tried = Counter[str]()
    decoded = Counter[str]()
    frame_errors = Counter[str]()
    request_errors = Counter[str]()
    crashes: list[tuple[str, object, str]] = []
    deadline = time.monotonic() + args.seconds

    while time.monotonic() < deadline:
        for _ in range(200):
            if rnd.random() < 0.8:
                tried["frames"] += 1
                frame = mutate_frame(rnd, corpus)
                before = state(decoder)
                try:
                    decoder.feed(frame)
                    decoded["frames"] += 1
                except FrameError as exc:
                    frame_errors[exc.reason] += 1
                    if state(decoder) != before:
                        crashes.append(("state changed on FrameError", frame, repr(exc)))
                except Exception:
                    crashes.append(("decoder", frame, traceback.format_exc()))
            else:
                tried["requests"] += 1
                request = mutate_request(rnd)
                try:
                    decode_request(request)  # type: ignore[arg-type]
                    decoded["requests"] += 1
                except FrameError as exc:
                    request_errors[exc.reason] += 1
                except Exception:
                    crashes.append(("decode_request", request, traceback.format_exc()))

    print(f"fuzz_upstox: seed {args.seed}, {args.seconds:g} s, corpus {len(corpus)} frames")
    print(
        f"inputs tried: {sum(tried.values())} ({tried['frames']} frames, "
        f"{tried['requests']} requests)"
    )
    print(f"decoded without error: {decoded['frames']} frames, {decoded['requests']} requests")
    print("decoder FrameErrors by reason:")
    for reason, count in frame_errors.most_common():
        print(f"  {reason:20s} {count}")
    print("decode_request FrameErrors by reason:")
    for reason, count in request_errors.most_common():
        print(f"  {reason:20s} {count}")
    print(
        f"decoder counters: frames={decoder.frames} ticks={decoder.ticks} "
        f"errors={sum(decoder.errors.values())}"
    )
    print(f"crashes: {len(crashes)}")
    for what, data, trace in crashes[:MAX_CRASH_REPORTS]:
        shown = data.hex() if isinstance(data, bytes) else repr(data)
        print(f"--- crash in {what}; input ({len(data)}): {shown[:400]}")
        print(trace)
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
