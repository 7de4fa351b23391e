"""Shared by ``delivery_e2e.py`` and its child processes (simulators, naive worker, naive
ASGI app, load clients): instrument names, subscription layout, /proc figures and the
stdin/stdout line protocol the children answer.

No Django and nothing from the project: every child imports this before setting Django up.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import _hub  # bench/ is on sys.path for every script that imports this module

PREFIX = "NSE:BENCH"  # bench/_hub.py's generated instruments: NSE:BENCH00000, ...
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def instrument_key(n: int) -> str:
    return f"{PREFIX}{n:05d}"


def client_symbols(client: int, per_client: int, instruments: int) -> list[int]:
    """The instruments client number ``client`` subscribes: a consecutive run of
    ``per_client`` starting at ``client * per_client``, wrapping around the universe. Over
    ``c`` clients every instrument then has floor or ceil of ``c * per_client / instruments``
    subscribers (exactly that number when it divides)."""
    start = client * per_client
    return [(start + j) % instruments for j in range(per_client)]


def subscriber_counts(clients: int, per_client: int, instruments: int) -> list[int]:
    counts = [0] * instruments
    for client in range(clients):
        for n in client_symbols(client, per_client, instruments):
            counts[n] += 1
    return counts


def naive_group(key: str) -> str:
    """The baseline's per-symbol group (Channels allows only ASCII letters, digits, '-', '_'
    and '.' in group names, so the ':' of a key becomes '_')."""
    return "sym." + key.replace(":", "_")


# --- /proc ------------------------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat; 0 if gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def proc_status_kb(pid: int | str, field: str) -> int:
    """A /proc/<pid>/status figure in kB (VmRSS, VmHWM); 0 if gone."""
    return _hub.proc_status_kb(field, pid=pid)


def machine_cpu() -> tuple[float, float]:
    """(busy, total) seconds of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return (total - idle) / CLK_TCK, total / CLK_TCK


# --- the children's line protocol -------------------------------------------------------------


def answer(payload: dict[str, Any]) -> None:
    """One JSON line to the parent."""
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def serve_commands(
    handle: Callable[[str, list[str]], Awaitable[dict[str, Any] | None]],
) -> None:
    """Read commands (one per line: a word and arguments) from stdin until it ends or
    ``quit``; answer each with the JSON ``handle`` returns (``None``: no answer)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        words = line.decode().split()
        if not words:
            continue
        if words[0] == "quit":
            break
        try:
            reply = await handle(words[0], words[1:])
        except Exception as exc:  # the parent shows it; the child goes on
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        if reply is not None:
            answer(reply)
