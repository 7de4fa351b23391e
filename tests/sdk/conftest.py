"""Fixtures for the conformance tests against the brokers' official SDKs.

* ``fyers_python`` / ``upstox_python`` (session): the SDK virtualenvs of ``venvs.py``; a venv
  that cannot be built fails the tests that need it, with pip's output.
* ``sim`` (function): a real simulator process (``feeds.providers.simulation.run``, both
  providers, run by the project venv) on free ports, stopped with SIGTERM (SIGKILL if it
  lingers) with its whole process group; ``Simulator`` wraps its ``/_sim/`` control API and
  the REST calls a test compares the SDKs' values with.
* ``fyers_probe`` / ``upstox_probe`` (function): start ``*_probe.py`` inside an SDK venv and
  read its JSON lines as they come (``ProbeRun``); every probe is killed at teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, subprocess_env
from tests.sdk import venvs

SDK_DIR = Path(__file__).resolve().parent
PROJECT_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
SIM_START_TIMEOUT = 30.0
Event = dict[str, Any]


# --- HTTP -------------------------------------------------------------------------------------


def http_json(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any]:
    """(status, parsed JSON body) of one request; HTTP errors are returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


# --- the simulator process --------------------------------------------------------------------


class Simulator:
    """A running ``feeds.providers.simulation.run`` and helpers for its HTTP side."""

    def __init__(self, process: subprocess.Popen[bytes], info: dict[str, Any], log: Path) -> None:
        self.process = process
        self.info = info
        self.log = log
        self.fyers_api: str = info["fyers"]["api_url"]
        self.fyers_socket: str = info["fyers"]["socket_url"]
        self.upstox_api: str = info["upstox"]["api_url"]
        self.upstox_feed: str = info["upstox"]["feed_url"]

    def api(self, provider: str) -> str:
        return self.fyers_api if provider == "fyers" else self.upstox_api

    def control(self, provider: str, method: str, path: str, body: Any = None) -> Any:
        """One ``/_sim/`` call; asserts it succeeded and returns its JSON."""
        # 30 s: a clean close waits for the client's side of the TCP close (see the report).
        status, data = http_json(method, f"{self.api(provider)}/_sim/{path}", body, timeout=30.0)
        assert status == 200, f"/_sim/{path} on {provider}: HTTP {status} {data}"
        return data

    def token(self, provider: str) -> str:
        return str(self.control(provider, "POST", "token")["token"])

    def connections(self, provider: str) -> list[dict[str, Any]]:
        return list(self.control(provider, "GET", "connections"))

    def set_market(self, open_: bool) -> None:
        # One market behind both providers: either control API freezes it for both.
        assert self.control("fyers", "POST", "market", {"open": open_}) == {"open": open_}

    def fyers_get(self, path: str, token: str, **query: str) -> Any:
        url = f"{self.fyers_api}{path}?{urllib.parse.urlencode(query)}"
        status, data = http_json("GET", url, headers={"Authorization": token})
        assert status == 200 and data["s"] == "ok", f"GET {path}: HTTP {status} {data}"
        return data

    def upstox_get(self, path: str, token: str, **query: str) -> Any:
        url = f"{self.upstox_api}{path}?{urllib.parse.urlencode(query)}"
        status, data = http_json("GET", url, headers={"Authorization": f"Bearer {token}"})
        assert status == 200 and data["status"] == "success", f"GET {path}: {status} {data}"
        return data["data"]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _read_line(stream: Any, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    buffer = b""
    while not buffer.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([stream], [], [], remaining)
        if not ready:
            break
        chunk = os.read(stream.fileno(), 65536)
        if not chunk:
            break
        buffer += chunk
    return buffer


def _stop_group(process: subprocess.Popen[Any], grace: float = 5.0) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(grace)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(grace)
    else:  # the leader is gone; make sure nothing it started lingers
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def start_simulator(log: Path, *extra: str) -> Simulator:
    python = PROJECT_PYTHON if PROJECT_PYTHON.exists() else Path(sys.executable)
    cmd = [str(python), "-m", "feeds.providers.simulation.run", "--seed", "1"]
    for option in ("fyers-rest", "fyers-socket", "upstox-rest", "upstox-feed"):
        cmd += [f"--{option}-port", "0"]
    cmd += ["--ticks-per-second", "5", *extra]
    with open(log, "wb") as err:
        process = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=subprocess_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
    line = _read_line(process.stdout, SIM_START_TIMEOUT)
    try:
        info = json.loads(line)
    except ValueError:
        _stop_group(process)
        tail = log.read_text(errors="replace")[-3000:]
        pytest.fail(f"simulator did not start: stdout {line[:500]!r}\nstderr:\n{tail}")
    return Simulator(process, info, log)


@pytest.fixture
def sim(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Simulator]:
    """A simulator per test; extra command-line options come from an indirect parameter:
    ``@pytest.mark.parametrize("sim", [["--upstox-snapshot", "initial"]], indirect=True)``."""
    extra = getattr(request, "param", ())
    simulator = start_simulator(tmp_path / "simulator.log", *extra)
    try:
        yield simulator
    finally:
        _stop_group(simulator.process)
        if simulator.process.stdout is not None:
            simulator.process.stdout.close()


# --- SDK venvs --------------------------------------------------------------------------------


def _sdk_python(name: str) -> Path:
    try:
        return venvs.ensure_venv(name, log=lambda text: print(text, file=sys.stderr))
    except venvs.SdkVenvError as exc:
        pytest.fail(f"cannot build the {name} SDK virtualenv: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def fyers_python() -> Path:
    return _sdk_python("fyers")


@pytest.fixture(scope="session")
def upstox_python() -> Path:
    return _sdk_python("upstox")


# --- probes -----------------------------------------------------------------------------------


def _probe_env() -> dict[str, str]:
    """No PYTHONPATH: a probe sees its SDK venv and the standard library, never our code."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }


class ProbeRun:
    """A probe process; its JSON lines are collected (each gets its index as ``"i"``)."""

    def __init__(self, python: Path, script: str, args: list[str], workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.stderr_path = workdir / "stderr.txt"
        self.events: list[Event] = []
        self.exited = False
        self._cond = threading.Condition()
        with open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [str(python), str(SDK_DIR / script), *args],
                cwd=workdir,
                env=_probe_env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                event = {"t": time.monotonic(), "ev": "raw", "data": raw.decode(errors="replace")}
            with self._cond:
                event["i"] = len(self.events)
                self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self.exited = True
            self._cond.notify_all()

    def describe(self, last: int = 25) -> str:
        with self._cond:
            tail = [json.dumps(e)[:400] for e in self.events[-last:]]
        stderr = self.stderr_path.read_text(errors="replace")[-2000:]
        return "last events:\n" + "\n".join(tail) + f"\nprobe stderr:\n{stderr}"

    def wait_for(
        self, predicate: Callable[[Event], bool], timeout: float, what: str, *, after: int = -1
    ) -> Event:
        """The first event after index ``after`` that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        index = after + 1
        with self._cond:
            while True:
                while index < len(self.events):
                    if predicate(self.events[index]):
                        return self.events[index]
                    index += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.exited:
                    break
                self._cond.wait(remaining)
        raise AssertionError(f"no {what} within {timeout:g} s\n{self.describe()}")

    def wait_count(
        self, predicate: Callable[[Event], bool], count: int, timeout: float, what: str
    ) -> list[Event]:
        deadline = time.monotonic() + timeout
        after = -1
        found = []
        for _ in range(count):
            event = self.wait_for(
                predicate, max(0.0, deadline - time.monotonic()), what, after=after
            )
            found.append(event)
            after = event["i"]
        return found

    def select(self, predicate: Callable[[Event], bool], *, after: int = -1) -> list[Event]:
        with self._cond:
            return [e for e in self.events[after + 1 :] if predicate(e)]

    def send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write((json.dumps(command) + "\n").encode())
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # it has exited; finish() reports what it did

    def finish(self, timeout: float) -> list[Event]:
        """Wait for the probe to exit by itself (bounded); kill it if it does not."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            message = f"probe still running after {timeout:g} s\n{self.describe()}"
            raise AssertionError(message) from None
        self._reader.join(5.0)
        return list(self.events)

    def stop(self, timeout: float = 20.0) -> list[Event]:  # > the probe's 10 s on_close wait
        self.send({"cmd": "stop"})
        return self.finish(timeout)

    def kill(self) -> None:
        _stop_group(self.process, grace=2.0)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _probe_factory(
    python: Path, script: str, base_args: Callable[[Path], list[str]], tmp_path: Path
) -> Iterator[Callable[..., ProbeRun]]:
    runs: list[ProbeRun] = []

    def start(*args: str, duration: float = 30.0) -> ProbeRun:
        workdir = tmp_path / f"{Path(script).stem}-{len(runs)}"
        full = [*base_args(workdir), *args, "--duration", str(duration)]
        run = ProbeRun(python, script, full, workdir)
        runs.append(run)
        return run

    try:
        yield start
    finally:
        for run in runs:
            run.kill()


@pytest.fixture
def fyers_probe(fyers_python: Path, sim: Simulator, tmp_path: Path) -> Iterator[Any]:
    """``fyers_probe(*args, duration=...)`` -> ProbeRun; the simulator's URLs are given."""

    def base(workdir: Path) -> list[str]:
        return [
            "--api-url", sim.fyers_api, "--socket-url", sim.fyers_socket,
            "--log-dir", str(workdir),
        ]  # fmt: skip

    yield from _probe_factory(fyers_python, "fyers_probe.py", base, tmp_path)


@pytest.fixture
def upstox_probe(upstox_python: Path, sim: Simulator, tmp_path: Path) -> Iterator[Any]:
    def base(workdir: Path) -> list[str]:
        return ["--api-url", sim.upstox_api, "--feed-url", sim.upstox_feed]

    yield from _probe_factory(upstox_python, "upstox_probe.py", base, tmp_path)
