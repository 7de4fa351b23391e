"""A client that stops reading, next to clients that read, on the real server.

Separate processes, real sockets: the simulators ticking fast, ``manage.py runhub`` (Daphne,
the feed worker and the fan-out on one loop), and clients using the ``websockets`` library.
The slow client's socket has a tiny receive buffer and it does not read, so the server's
buffers fill within seconds. What the issue asks: the server's memory stays bounded, the
reading clients are not slowed, and the slow one is conflated, then closed with 4008.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import websockets

from tests.conftest import (
    PYTHON,
    REPO_ROOT,
    free_port,
    simulator_env,
    simulator_process,
    subprocess_env,
)

MAX_LAG, PATIENCE = 0.5, 2.0


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str, int]]:
    with simulator_process(ticks_per_second=10) as described:
        env = subprocess_env(
            DJANGO_SETTINGS_MODULE="mdproject.settings",
            MDHUB_VAR_DIR=str(tmp_path),
            **simulator_env(described),
            MDHUB_CLIENT_MAX_LAG=str(MAX_LAG),
            MDHUB_CLIENT_PATIENCE=str(PATIENCE),
        )
        for command in (["migrate", "--noinput"], ["setup_hub"]):
            subprocess.run([PYTHON, "manage.py", *command], cwd=REPO_ROOT, env=env, check=True,
                           capture_output=True, timeout=180)  # fmt: skip
        made = subprocess.run(
            [PYTHON, "manage.py", "shell", "-c",
             "from django.contrib.auth.models import User\n"
             "from feeds.services import api_token_create\n"
             "from feeds.models import Instrument\n"
             "u = User.objects.create_user('reader')\n"
             "print(api_token_create(user=u, name='t')[1])\n"
             "keys = Instrument.objects.filter(enabled=True).values_list('key', flat=True)\n"
             "print(','.join(keys))"],
            cwd=REPO_ROOT, env=env, check=True, capture_output=True, text=True, timeout=60,
        ).stdout.split()  # fmt: skip
        token, keys = made[-2], made[-1]
        port = free_port()
        log_path = tmp_path / "hub.log"
        with log_path.open("w") as log:
            hub = subprocess.Popen(
                [PYTHON, "manage.py", "runhub", "--port", str(port), "--no-simulators"],
                cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while "subscriptions ticking" not in log_path.read_text():
                assert hub.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "the hub did not start ticking"
                time.sleep(0.2)
            yield f"ws://127.0.0.1:{port}/ws/v1/market/", token + " " + keys, hub.pid
        finally:
            os.killpg(hub.pid, signal.SIGTERM)
            hub.wait(timeout=20)


async def _subscribe(ws: websockets.ClientConnection, keys: list[str], mode: str) -> None:
    await ws.send(json.dumps({"action": "subscribe", "mode": mode, "symbols": keys}))


async def test_slow_client_is_conflated_then_closed_and_nobody_else_notices(server) -> None:
    url, secrets, pid = server
    token, keys = secrets.split(" ")
    symbols = keys.split(",")
    headers = {"Authorization": f"Token {token}"}

    # The slow client: a 4 KiB receive buffer, and no reading (max_queue=1 stops the
    # library from reading on our behalf once one frame is waiting).
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = url.split("//")[1].split("/")[0].split(":")
    raw.connect((host, int(port)))
    slow = await websockets.connect(url, sock=raw, additional_headers=headers, max_queue=1,
                                    max_size=None)  # fmt: skip
    await _subscribe(slow, symbols, "depth")  # big messages: its buffers fill in seconds

    fast_latency: list[float] = []
    fast_gaps: list[float] = []
    stop = asyncio.Event()

    async def fast_reader() -> None:
        async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
            await _subscribe(ws, symbols, "quote")
            last = None
            while not stop.is_set():
                message = orjson.loads(await ws.recv())
                now = time.time()
                if message["type"] != "update":
                    continue
                fast_latency.extend(now * 1000 - i["recv_ts"] for i in message["data"])
                if last is not None:
                    fast_gaps.append(now - last)
                last = now

    conflated, seqs, closing, jumps = 0, {}, None, 0

    def note(message: dict) -> None:
        nonlocal conflated, closing, jumps
        if message["type"] == "update":
            conflated += message["conflated"]
            for item in message["data"]:
                jumps += item["seq"] - seqs.get(item["symbol"], 0) > 1
                seqs[item["symbol"]] = item["seq"]
        elif message["type"] == "closing":
            closing = message

    readers = [asyncio.create_task(fast_reader()) for _ in range(2)]
    await asyncio.sleep(1.0)
    rss_before = _rss_mb(pid)
    # First the slow client reads rarely: three messages a second, far less than it is
    # sent. It is conflated: fewer, newer values. Reading, it is not "too far behind".
    for _ in range(4):
        await asyncio.sleep(1.0)
        for _ in range(3):
            note(orjson.loads(await slow.recv()))
    assert closing is None
    # Then it stops reading: behind by MAX_LAG for PATIENCE, closed within 6 s.
    await asyncio.sleep(MAX_LAG + PATIENCE + 3.5)
    rss_after = _rss_mb(pid)
    stop.set()

    # Now it reads everything that was buffered for it, up to the close.
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(30):
            while True:
                note(orjson.loads(await slow.recv()))
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)

    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4008
    assert closing is not None and closing["code"] == 4008 and "too slow" in closing["reason"]
    assert conflated > 0 and jumps > 0  # it was sent fewer, newer values, and can tell
    assert rss_after - rss_before < 30, (rss_before, rss_after)  # bounded, not a backlog
    fast_latency.sort()
    p99 = fast_latency[int(len(fast_latency) * 0.99)]
    assert len(fast_latency) > 1000
    # Loose on purpose (CI machines are shared): a fast client held up by the slow one would
    # wait seconds, as long as the slow one stalls.
    assert p99 < 500, f"fast clients' p99 {p99:.0f} ms while one client stalled"
    assert max(fast_gaps) < 1.0  # never held up
