"""Decode throughput: our FYERS / Upstox decoders against the official SDKs' own parsers.

    .venv/bin/python bench/decode_vs_sdk.py [--cases fyers_lite,...] [--min-seconds 1.0]

(Plain ``python`` works too: it re-runs itself with the project venv when it lacks the
project's dependencies.) The SDK virtualenvs are built first if needed (tests/sdk/venvs.py).

Frames are built once with our server codecs and written to a temporary directory:

* FYERS (``feeds.providers.fyers.server_codec``), after one frame of ``S`` snapshots:
  ``fyers_lite`` 100 ``L`` packets per frame, ``fyers_full`` 100 21-field ``U`` packets,
  ``fyers_depth`` 50 30-field depth ``U`` packets (primed with the 50 symbols' ``sf`` and
  ``dp`` snapshots: our decoder folds a depth update into the symbol's quote Tick). Two
  frames alternate so that every packet changes its value (the SDK calls back only on a
  change).
* Upstox (``feeds.providers.upstox.server_codec``): ``FeedResponse`` frames of 100 ``ltpc``,
  100 ``full`` (5 levels), 50 ``full_d30`` and 100 ``option_greeks`` instruments.

Each side decodes the same frames the same number of times in its own process (best of 3):
ours with ``FyersDecoder.feed`` / ``UpstoxDecoder.feed`` in the project venv; the SDKs with
their own code in their venvs: FYERS ``FyersDataSocket``'s private message handler (the
websocket ``on_message`` path: ``__response_msg`` -> parse -> ``__response_output`` -> the
user's ``on_message``), primed the way ``subscribe()`` primes it; Upstox
``FeedResponse.FromString`` + ``MessageToDict`` with the SDK's generated module (what
``MarketDataStreamerV3.handle_message`` does). The iteration count is calibrated so the
faster side runs at least ``--min-seconds`` per repetition.

Only the standard library is imported at module level: the SDK workers run this same file
with an SDK venv's interpreter and must not see the project.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
FYERS_CASES = ("fyers_lite", "fyers_full", "fyers_depth")
UPSTOX_CASES = ("upstox_ltpc", "upstox_full", "upstox_full_d30", "upstox_option_greeks")
ALL_CASES = FYERS_CASES + UPSTOX_CASES
WORKER_TIMEOUT = 1800.0


# --- frame files (stdlib only: read by every worker) ----------------------------------------


def write_frames(path: Path, frames: list[bytes]) -> None:
    with open(path, "wb") as out:
        for frame in frames:
            out.write(struct.pack(">I", len(frame)))
            out.write(frame)


def read_frames(path: Path) -> list[bytes]:
    data = path.read_bytes()
    frames, off = [], 0
    while off < len(data):
        (size,) = struct.unpack_from(">I", data, off)
        frames.append(data[off + 4 : off + 4 + size])
        off += 4 + size
    return frames


# --- building the frames (project venv) -----------------------------------------------------


def build_fyers(directory: Path) -> dict[str, Any]:
    from feeds.providers.fyers import server_codec as sc

    def sf_values(i: int, v: int) -> list[int | None]:
        ltp = 50_000 + 37 * i + v
        return [
            ltp, 100_000 + i + v, 1_732_775_008 + v, 1_732_775_008 + v, 10 + v, 20 + v,
            ltp - 5, ltp + 5, 1 + v, 50_000 + v, 60_000 + v, ltp - 1, 0, ltp - 300, ltp + 300,
            None, None, ltp - 5_000, ltp + 5_000, ltp - 100, ltp - 200,
        ]  # fmt: skip

    def dp_values(i: int, v: int) -> list[int | None]:
        base = 50_000 + 37 * i + v
        prices = [base - 5 * k for k in range(5)] + [base + 5 + 5 * k for k in range(5)]
        return prices + [100 + k + v for k in range(10)] + [1 + k + v for k in range(10)]

    manifest: dict[str, Any] = {}
    # case -> (packets per timed frame, lite, depth): the depth case also primes each
    # symbol's sf topic (ids 1..50; dp ids 51..100): a depth update alone makes no Tick of
    # ours, it refreshes the book of the symbol's quote.
    specs: dict[str, tuple[int, bool, bool]] = {
        "fyers_lite": (100, True, False),
        "fyers_full": (100, False, False),
        "fyers_depth": (50, False, True),
    }
    for case, (count, lite, depth) in specs.items():
        sf = {f"sf|nse_cm|{10_000 + i}": f"NSE:BENCH{i}-EQ" for i in range(count)}
        dp = {f"dp|nse_cm|{10_000 + i}": f"NSE:BENCH{i}-EQ" for i in range(count)} if depth else {}
        prime = [
            sc.snapshot_packet(i + 1, topic, sf_values(i, 0), precision=2, token=topic[10:])
            for i, topic in enumerate(sf)
        ] + [
            sc.snapshot_packet(count + i + 1, topic, dp_values(i, 0), precision=2, token=topic[10:])
            for i, topic in enumerate(dp)
        ]
        timed = []
        for n, v in enumerate((1, 0)):  # alternate: every packet changes every value
            if lite:
                packets = [sc.lite_packet(i + 1, 50_000 + 37 * i + v) for i in range(count)]
            elif depth:
                packets = [sc.update_packet(count + i + 1, dp_values(i, v)) for i in range(count)]
            else:
                packets = [sc.update_packet(i + 1, sf_values(i, v)) for i in range(count)]
            timed.append(sc.encode_data_frame(2 + n, packets))
        write_frames(directory / f"{case}.prime", [sc.encode_data_frame(1, prime)])
        write_frames(directory / f"{case}.timed", timed)
        manifest[case] = {"topics": {**sf, **dp}, "lite": lite, "packets_per_frame": count}
    return manifest


def build_upstox(directory: Path) -> dict[str, Any]:
    from feeds.providers.ticks import DepthLevel, ProviderName, Tick
    from feeds.providers.upstox import server_codec as sc

    def tick(key: str, i: int, v: int, levels: int) -> Tick:
        ltp = 50_000 + 37 * i + v
        t = Tick(ProviderName.UPSTOX, key, ltp, 2, 0)
        t.ltt = t.exchange_ts = 1_732_775_008_000 + v
        t.ltq, t.volume, t.prev_close = 1 + v, 100_000 + i, ltp - 200
        t.open, t.high, t.low, t.atp = ltp - 100, ltp + 300, ltp - 300, ltp - 1
        t.bid, t.ask, t.bid_qty, t.ask_qty = ltp - 5, ltp + 5, 10 + v, 20 + v
        t.total_buy_qty, t.total_sell_qty, t.oi = 50_000 + v, 60_000 + v, 1_000 + i
        t.iv, t.delta, t.theta, t.gamma, t.vega, t.rho = 0.15, 0.5, -2.5, 0.001, 8.2, 1.1
        if levels:
            t.bids = tuple(DepthLevel(ltp - 5 * (k + 1), 10 + k, 1 + k) for k in range(levels))
            t.asks = tuple(DepthLevel(ltp + 5 * (k + 1), 20 + k, 1 + k) for k in range(levels))
        return t

    manifest: dict[str, Any] = {}
    specs = {
        "upstox_ltpc": ("ltpc", 100, 0, "NSE_EQ|BENCH{:05d}"),
        "upstox_full": ("full", 100, 5, "NSE_EQ|BENCH{:05d}"),
        "upstox_full_d30": ("full_d30", 50, 30, "NSE_EQ|BENCH{:05d}"),
        "upstox_option_greeks": ("option_greeks", 100, 1, "NSE_FO|{:05d}"),
    }
    for case, (mode, count, levels, key_format) in specs.items():
        keys = [key_format.format(40_000 + i) for i in range(count)]
        timed = [
            sc.encode_feed(
                ticks=[tick(key, i, v, levels) for i, key in enumerate(keys)],
                modes=dict.fromkeys(keys, mode),
                kind="live",
                current_ts=1_732_775_008_661 + v,
            )
            for v in (0, 1)
        ]
        write_frames(directory / f"{case}.prime", [])
        write_frames(directory / f"{case}.timed", timed)
        manifest[case] = {"mode": mode, "packets_per_frame": count}
    return manifest


# --- the decode loops, one per side -----------------------------------------------------------


def _time_loop(
    handle: Callable[[bytes], int], timed: list[bytes], iterations: int, repeats: int
) -> dict[str, Any]:
    """Decode ``timed`` round-robin ``iterations`` times; ``handle`` returns ticks emitted."""
    times, ticks = [], 0
    for _ in range(repeats):
        count = 0
        n = len(timed)
        started = time.perf_counter()
        for i in range(iterations):
            count += handle(timed[i % n])
        times.append(time.perf_counter() - started)
        ticks = count
    return {"times": times, "best": min(times), "ticks": ticks}


def ours_handler(case: str, info: dict[str, Any], prime: list[bytes]) -> Callable[[bytes], int]:
    if case.startswith("fyers"):
        from feeds.providers.fyers.codec import DataFrame, FyersDecoder

        decoder = FyersDecoder()
        decoder.expect(info["topics"])
        for frame in prime:
            decoder.feed(frame)

        def fyers(frame: bytes) -> int:
            return sum(len(e.ticks) for e in decoder.feed(frame) if isinstance(e, DataFrame))

        return fyers
    from feeds.providers.upstox.codec import FeedBatch, UpstoxDecoder

    udecoder = UpstoxDecoder()

    def upstox(frame: bytes) -> int:
        return sum(len(e.ticks) for e in udecoder.feed(frame) if isinstance(e, FeedBatch))

    return upstox


def fyers_sdk_handler(info: dict[str, Any], prime: list[bytes]) -> Callable[[bytes], int]:
    """FyersDataSocket's own frame handler, primed as subscribe() + the snapshots would."""
    from fyers_apiv3.FyersWebsocket import data_ws

    data_ws.FyersDataSocket._instance = None
    emitted = [0]

    def on_message(message: dict[str, Any]) -> None:
        emitted[0] += 1

    sock = data_ws.FyersDataSocket(
        access_token="BENCH-100:x.y.z",
        litemode=info["lite"],
        log_path=tempfile.mkdtemp(prefix="fyers-bench-"),
        on_message=on_message,
        on_error=lambda message: None,
    )
    # subscribe() stores {topic: symbol} in symbol_token; each S snapshot then maps its
    # topic id (scrips_sym / dp_sym) and looks the symbol up there.
    sock.symbol_token.update(info["topics"])
    sock.scrips_per_channel[sock.channel_num] += list(info["topics"])
    handle = sock._FyersDataSocket__response_msg  # what websocket on_message calls
    for frame in prime:
        handle(frame)
    if emitted[0] != len(info["topics"]):
        raise SystemExit(f"SDK emitted {emitted[0]} snapshot records, wanted {len(info['topics'])}")

    def run(frame: bytes) -> int:
        before = emitted[0]
        handle(frame)
        return emitted[0] - before

    return run


def upstox_sdk_handler() -> Callable[[bytes], int]:
    from google.protobuf import json_format
    from upstox_client.feeder.proto import MarketDataFeedV3_pb2

    from_string = MarketDataFeedV3_pb2.FeedResponse.FromString
    to_dict = json_format.MessageToDict

    def run(frame: bytes) -> int:  # MarketDataStreamerV3.handle_message minus the emit
        return len(to_dict(from_string(frame)).get("feeds", ()))

    return run


def worker(side: str, directory: Path, cases: list[str], iterations: int, repeats: int) -> None:
    manifest = json.loads((directory / "manifest.json").read_text())
    results = {}
    for case in cases:
        info = manifest[case]
        prime = read_frames(directory / f"{case}.prime")
        timed = read_frames(directory / f"{case}.timed")
        if side == "ours":
            handle = ours_handler(case, info, prime)
        elif case.startswith("fyers"):
            handle = fyers_sdk_handler(info, prime)
        else:
            handle = upstox_sdk_handler()
        results[case] = _time_loop(handle, timed, iterations, repeats)
    print(json.dumps(results))


# --- orchestration (project venv) ---------------------------------------------------------------


def _run_worker(
    python: Path, side: str, directory: Path, cases: list[str], iterations: int, repeats: int
) -> dict[str, Any]:
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", side, "--dir", str(directory)]
    cmd += ["--cases", ",".join(cases), "--iterations", str(iterations)]
    cmd += ["--repeats", str(repeats)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if side == "ours":
        env["PYTHONPATH"] = str(REPO_ROOT)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT, env=env, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"{side} worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Decode throughput: ours vs the SDKs.")
    parser.add_argument("--cases", default=",".join(ALL_CASES))
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", choices=["ours", "fyers-sdk", "upstox-sdk"])
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--iterations", type=int, default=0)
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    if unknown := set(cases) - set(ALL_CASES):
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    if args.worker:
        worker(args.worker, args.dir, cases, args.iterations, args.repeats)
        return

    sys.path.insert(0, str(REPO_ROOT))
    from tests.sdk import venvs

    pythons = {}
    for name in ("fyers", "upstox"):
        if any(c.startswith(name) for c in cases):
            try:
                pythons[name] = venvs.ensure_venv(name, log=lambda t: print(t, file=sys.stderr))
            except venvs.SdkVenvError as exc:
                raise SystemExit(f"cannot build the {name} SDK venv: {exc}") from None
    ours_python = Path(sys.executable)

    with tempfile.TemporaryDirectory(prefix="decode-bench-") as tmp:
        directory = Path(tmp)
        manifest = {**build_fyers(directory), **build_upstox(directory)}
        (directory / "manifest.json").write_text(json.dumps(manifest))

        rows = []
        for case in cases:
            sdk_side, sdk_python = (
                ("fyers-sdk", pythons["fyers"])
                if case.startswith("fyers")
                else ("upstox-sdk", pythons["upstox"])
            )
            # Calibrate on a short pilot: the faster side must run >= min-seconds.
            pilot = 200
            per_iter = min(
                _run_worker(py, side, directory, [case], pilot, 1)[case]["best"] / pilot
                for py, side in ((ours_python, "ours"), (sdk_python, sdk_side))
            )
            iterations = max(pilot, math.ceil(args.min_seconds / per_iter * 1.1))
            # Whole cycles of the two alternating frames, so each repetition starts on a
            # frame that differs from where the last one stopped (the FYERS SDK calls back
            # only on a change).
            iterations += iterations % 2
            ours = _run_worker(ours_python, "ours", directory, [case], iterations, args.repeats)
            sdk = _run_worker(sdk_python, sdk_side, directory, [case], iterations, args.repeats)
            rows.append((case, iterations, ours[case], sdk[case]))
            print(f"  {case}: done ({iterations} frames per run)", file=sys.stderr)

    print()
    header = f"{'case':<22}{'frames/run':>11}{'ticks/frame':>12}"
    header += f"{'ours ticks/s':>15}{'SDK ticks/s':>14}{'ours/SDK':>10}"
    print(header)
    print("-" * len(header))
    for case, iterations, ours, sdk in rows:
        ours_rate = ours["ticks"] / ours["best"]
        sdk_rate = sdk["ticks"] / sdk["best"]
        per_frame = ours["ticks"] / iterations
        note = "" if ours["ticks"] == sdk["ticks"] else f"  (SDK emitted {sdk['ticks']} ticks)"
        print(
            f"{case:<22}{iterations:>11}{per_frame:>12.0f}"
            f"{ours_rate:>15,.0f}{sdk_rate:>14,.0f}{ours_rate / sdk_rate:>9.1f}x{note}"
        )
    print(
        f"\nbest of {args.repeats}; {sys.implementation.name} "
        f"{'.'.join(map(str, sys.version_info[:3]))}; protobuf runtime per venv as installed"
    )


def _reexec_with_project_venv() -> None:
    """``python bench/decode_vs_sdk.py`` with a bare interpreter: use the project venv."""
    if "--worker" in sys.argv:
        return
    try:
        import google.protobuf  # noqa: F401  (a project dependency)
    except ImportError:
        venv = REPO_ROOT / ".venv"
        venv_python = venv / "bin" / "python"
        if venv_python.exists() and Path(sys.prefix).resolve() != venv.resolve():
            os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])
        raise SystemExit(
            "run with the project venv: .venv/bin/python bench/decode_vs_sdk.py"
        ) from None


if __name__ == "__main__":
    _reexec_with_project_venv()
    main()
