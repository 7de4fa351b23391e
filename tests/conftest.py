from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: all held open while choosing, since one at a time the
    system may hand back the same port twice."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def subprocess_env(**overrides: str) -> dict[str, str]:
    """A minimal environment for child processes: no inherited settings variables."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(overrides)
    return env


PYTHON = sys.executable


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    """The manifest storage needs collectstatic first; tests render pages without it."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def sample_import(db):
    """The shipped sample masters, imported."""
    from feeds.management.commands.import_instruments import (
        import_master_files,
        sample_master_files,
    )

    fyers_files, upstox_files = sample_master_files()
    return import_master_files(fyers_files=fyers_files, upstox_files=upstox_files)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private, throwaway redis-server for this session."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not on PATH; the Redis tests need it "
            "(Debian/Ubuntu: apt-get install redis-server)",
            pytrace=False,
        )
    workdir = tmp_path_factory.mktemp("redis")
    port = free_port()
    log = workdir / "redis.log"
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--logfile", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"redis-server exited ({proc.returncode}):\n{_tail(log)}")
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not answer on port {port}:\n{_tail(log)}")
                time.sleep(0.02)
        yield url
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(path: Any) -> str:
    try:
        return "\n".join(path.read_text().splitlines()[-20:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def simulator_process(
    *, ticks_per_second: float, step_interval: float = 0.05
) -> Iterator[dict[str, Any]]:
    """Both simulators in their own process on free ports; yields the JSON line describing
    them (URLs and a token per provider)."""
    sims = subprocess.Popen(
        [PYTHON, "-m", "feeds.providers.simulation.run", "--fyers-rest-port", "0",
         "--fyers-socket-port", "0", "--upstox-rest-port", "0", "--upstox-feed-port", "0",
         "--ticks-per-second", str(ticks_per_second), "--step-interval", str(step_interval)],
        cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert sims.stdout is not None
        yield json.loads(sims.stdout.readline())
    finally:
        sims.terminate()
        sims.wait(timeout=10)


def simulator_env(described: dict[str, Any]) -> dict[str, str]:
    """The settings variables that point a hub process at ``simulator_process``."""
    return {
        "FYERS_API_URL": described["fyers"]["api_url"],
        "FYERS_SOCKET_URL": described["fyers"]["socket_url"],
        "UPSTOX_API_URL": described["upstox"]["api_url"],
        "UPSTOX_FEED_URL": described["upstox"]["feed_url"],
        "FYERS_ACCESS_TOKEN": described["fyers"]["token"],
        "UPSTOX_ACCESS_TOKEN": described["upstox"]["token"],
    }


def simulators_point_at(described: dict[str, Any], settings: Any, monkeypatch: Any) -> None:
    """Point the settings and the token variables at the simulators ``described``."""
    settings.FYERS = {**settings.FYERS, "API_URL": described["fyers"]["api_url"],
                      "SOCKET_URL": described["fyers"]["socket_url"]}  # fmt: skip
    settings.UPSTOX = {**settings.UPSTOX, "API_URL": described["upstox"]["api_url"],
                       "FEED_URL": described["upstox"]["feed_url"]}  # fmt: skip
    # The simulators trade around the clock, whatever the mode under test.
    settings.VALIDATION = {**settings.VALIDATION, "MARKET_HOURS": "always"}
    monkeypatch.setenv("FYERS_ACCESS_TOKEN", described["fyers"]["token"])
    monkeypatch.setenv("UPSTOX_ACCESS_TOKEN", described["upstox"]["token"])


@contextlib.asynccontextmanager
async def simulators_running(
    settings: Any, monkeypatch: Any, *, ticks_per_second: float = 2, step_interval: float = 0.05
) -> AsyncIterator[Any]:
    """Both simulators over the sample instruments, on real sockets, with the settings and
    token variables pointed at them (the sample instruments must be imported)."""
    from feeds import services
    from feeds.providers.simulation.run import start_simulators
    from tests.feeds.live import universe

    await sync_to_async(services.provider_accounts_ensure_defaults)()
    sims = await start_simulators(
        await sync_to_async(universe)(), seed=3, ticks_per_second=ticks_per_second,
        step_interval=step_interval,
    )  # fmt: skip
    simulators_point_at(sims.describe("127.0.0.1"), settings, monkeypatch)
    try:
        yield sims
    finally:
        await sims.stop()


@pytest.fixture
async def sims(sample_import, settings, monkeypatch) -> AsyncIterator[Any]:
    """Both simulators, 2 ticks/s per instrument (``simulators_running``)."""
    async with simulators_running(settings, monkeypatch) as sims:
        yield sims
