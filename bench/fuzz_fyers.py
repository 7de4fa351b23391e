"""Fuzz the FYERS HSM codec's two decoders with mutated valid frames and random bytes.

    .venv/bin/python bench/fuzz_fyers.py --seconds 30 --seed 1

Every input goes to the client decoder (``FyersDecoder``, primed with snapshots so updates
are meaningful) and to the server-side ``decode_client_frame``. Anything other than a
``FrameError`` is a crash, and so is a FrameError that changed the decoder's state. Prints
the inputs tried, FrameError counts by reason, and the first crashes; exits 1 on any crash.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from feeds.providers.errors import FrameError
from feeds.providers.fyers import codec, server_codec

SF, IF, DP, SF2 = "sf|nse_cm|999001", "if|nse_cm|Nifty 50", "dp|nse_cm|999001", "sf|nse_cm|3045"
EXPECTED = {SF: "NSE:TESTSYM-EQ", IF: "NSE:NIFTY50-INDEX", DP: "NSE:TESTSYM-EQ", SF2: "NSE:SBIN-EQ"}
TIDS = {SF: 1, IF: 2, DP: 3, SF2: 4}
SF_VALUES = [123455, 1000, 1700000000, 1700000001, 10, 20, 123450, 123460, 5, 900, 800]
SF_VALUES += [123000, 77, 120500, 125000, 130000, 100000, 111110, 135800, 121000, 120000]
IF_VALUES = [2451000, 2440000, 1700000001, 2460000, 2430000, 2445000]
DP_VALUES = [123450 - 5 * i for i in range(5)] + [123460 + 5 * i for i in range(5)]
DP_VALUES += list(range(10, 30))  # sizes and order counts


def snapshots() -> bytes:
    return server_codec.encode_data_frame(
        1,
        [
            server_codec.snapshot_packet(TIDS[SF], SF, SF_VALUES, token="999001"),
            server_codec.snapshot_packet(TIDS[IF], IF, IF_VALUES, token="Nifty 50"),
            server_codec.snapshot_packet(TIDS[DP], DP, DP_VALUES, precision=2, multiplier=1),
            server_codec.snapshot_packet(TIDS[SF2], SF2, [80000], multiplier=4, precision=4),
        ],
    )


def server_corpus() -> list[bytes]:
    upd, lite = server_codec.update_packet, server_codec.lite_packet
    frame = server_codec.encode_data_frame
    return [
        snapshots(),
        frame(2, [upd(TIDS[SF], [123460])]),
        frame(3, [upd(TIDS[SF], SF_VALUES)]),
        frame(4, [upd(TIDS[IF], [2451500, None, 1700000009])]),
        frame(5, [upd(TIDS[DP], [123451, *[None] * 9, 15])]),
        frame(6, [lite(TIDS[SF], 123470), lite(TIDS[IF], 1), lite(TIDS[SF2], 80001)]),
        frame(7, [upd(TIDS[DP], DP_VALUES), upd(TIDS[SF2], [None, 5])]),
        frame(8, []),
        server_codec.encode_auth_reply(True, ack_count=3),
        server_codec.encode_auth_reply(False),
        server_codec.encode_reply(4, True),
        server_codec.encode_reply(5, False),
        server_codec.encode_reply(7, True),
        server_codec.encode_reply(8, True),
        server_codec.encode_reply(12, True),
        server_codec.encode_server_message(51001, "Symbol limit exceeded", 4),
        b"\x00\x01\x0b",
    ]


def client_corpus() -> list[bytes]:
    topics = [SF, IF, DP, SF2]
    return [
        codec.encode_auth("abc123"),
        codec.encode_mode(lite=True),
        codec.encode_mode(lite=False, channel=3),
        codec.encode_subscribe(topics, token_len=111),
        codec.encode_unsubscribe(topics[:1], channel=30, token_len=0),
        codec.encode_pause(11),
        codec.encode_resume(11),
        codec.encode_ack(7),
        codec.encode_ping(),
    ]


INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x4C, 0x53, 0x55, 0x06, 0x0B, 0x33]


def mutate(rng: random.Random, corpus: list[bytes]) -> bytes:
    data = bytearray(rng.choice(corpus))
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(9)
        n = len(data)
        if op == 0 and n:  # truncate
            del data[rng.randrange(n) :]
        elif op == 1:  # extend
            data += rng.randbytes(rng.randint(1, 32))
        elif op == 2 and n:  # flip bits
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 3:  # splice with another frame
            other = rng.choice(corpus)
            data = data[: rng.randint(0, n)] + other[rng.randint(0, len(other)) :]
        elif op == 4 and n > 3:  # random field count
            data[3] = rng.randrange(256)
        elif op == 5 and n > 8:  # random packet count / 16-bit length somewhere
            at = rng.choice([0, 7, rng.randrange(n - 1)])
            data[at : at + 2] = rng.randrange(0x10000).to_bytes(2, "big")
        elif op == 6 and n:  # an interesting byte
            data[rng.randrange(n)] = rng.choice(INTERESTING)
        elif op == 7 and n:  # duplicate a slice (repeated packets / fields)
            a = rng.randrange(n)
            b = rng.randint(a, n)
            data[b:b] = data[a:b]
        elif op == 8 and n:  # delete a slice
            a = rng.randrange(n)
            del data[a : rng.randint(a, n)]
    return bytes(data)


def random_valid(rng: random.Random) -> bytes:
    packets = []
    for _ in range(rng.randint(0, 6)):
        topic = rng.choice(list(TIDS))
        size = {"sf": 21, "if": 6, "dp": 30}[topic[:2]]
        values = [
            None if rng.random() < 0.3 else rng.randint(-(2**31) + 1, 2**31 - 1)
            for _ in range(rng.randint(0, size))
        ]
        if topic[:2] != "dp" and rng.random() < 0.3:
            packets.append(server_codec.lite_packet(TIDS[topic], rng.randint(0, 2**31 - 1)))
        else:
            packets.append(server_codec.update_packet(TIDS[topic], values))
    return server_codec.encode_data_frame(rng.randrange(2**32), packets)


def primed() -> codec.FyersDecoder:
    dec = codec.FyersDecoder(recv_clock=lambda: 0)
    dec.expect(EXPECTED)
    dec.feed(snapshots())
    return dec


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--show", type=int, default=3, help="tracebacks to print")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    scorpus, ccorpus = server_corpus(), client_corpus()
    both = scorpus + ccorpus
    generators: list[Callable[[], bytes]] = [
        lambda: mutate(rng, scorpus),
        lambda: mutate(rng, ccorpus),
        lambda: mutate(rng, both),
        lambda: rng.randbytes(rng.randint(0, 64)),
        lambda: (
            b"\x00\x00"
            + bytes((rng.choice([1, 3, 4, 5, 6, 7, 8, 11, 12, 51]),))
            + rng.randbytes(rng.randint(0, 48))
        ),
        lambda: random_valid(rng),
    ]
    weights = [40, 20, 10, 10, 10, 10]

    dec = primed()
    tried = 0
    ok = Counter[str]()
    reasons: dict[str, Counter[str]] = {"client decoder": Counter(), "server decoder": Counter()}
    crashes: list[tuple[str, bytes, str]] = []
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        for _ in range(200):
            tried += 1
            if tried % 2000 == 0:
                dec = primed()  # keep most updates pointing at known topics
            data = rng.choices(generators, weights)[0]()
            before = dec.state_snapshot()
            try:
                dec.feed(data)
                ok["client decoder"] += 1
            except FrameError as exc:
                reasons["client decoder"][exc.reason] += 1
                if dec.state_snapshot() != before:
                    crashes.append(("client decoder: state changed by a bad frame", data, ""))
                    dec = primed()
            except Exception:  # anything else is what we are looking for
                crashes.append(("client decoder", data, traceback.format_exc()))
                dec = primed()
            try:
                server_codec.decode_client_frame(data)
                ok["server decoder"] += 1
            except FrameError as exc:
                reasons["server decoder"][exc.reason] += 1
            except Exception:
                crashes.append(("server decoder", data, traceback.format_exc()))

    print(f"seed {args.seed}, {args.seconds:g} s: {tried} inputs tried")
    for name, counter in reasons.items():
        print(f"{name}: {ok[name]} decoded, {sum(counter.values())} FrameError")
        for reason, count in counter.most_common():
            print(f"  {reason:16} {count}")
    print(f"crashes: {len(crashes)}")
    for where, data, tb in crashes[: args.show]:
        print(f"--- {where}: {data.hex()}")
        if tb:
            print(tb, end="")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
