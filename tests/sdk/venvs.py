"""Isolated virtualenvs for the brokers' official SDKs, built once and cached.

The SDKs pin old dependencies that clash with the project's (fyers-apiv3 3.2.0 wants
requests 2.31.0, websocket-client 1.6.1, aiohttp 3.9.3, aws_lambda_powertools 1.25.5 and
setuptools 68 for ``pkg_resources``), so each gets its own venv under ``.venv-sdk/<name>/``
(git-ignored), made with ``python -m venv`` from the same base interpreter as the tests and
filled by pip from PyPI, letting pip resolve each SDK's own pins.

A stamp file (``.venv-sdk/<name>/sdk-stamp.json``) records what the venv was built for: the
requirement pins and the interpreter version. It is written last, after an import check, so
an interrupted build is redone; a venv is rebuilt only when the stamp does not match. A file
lock serialises builds between concurrent test sessions and the benchmark.

    python tests/sdk/venvs.py [--force] [fyers] [upstox]     # build (or check) and print paths
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_ROOT = REPO_ROOT / ".venv-sdk"
STAMP = "sdk-stamp.json"
PIP_TIMEOUT = 900.0  # seconds for one pip run (a cold install takes ~15 s here)


@dataclass(frozen=True, slots=True)
class SdkSpec:
    name: str
    requirements: tuple[str, ...]  # exact pins; their dependencies are left to pip
    check: str  # a statement that must run in the venv once installed


SPECS: dict[str, SdkSpec] = {
    "fyers": SdkSpec(
        "fyers",
        # Its own pins resolve on CPython 3.11: aiohttp 3.9.3 ships a cp311 manylinux wheel.
        ("fyers-apiv3==3.2.0",),
        "import fyers_apiv3.fyersModel, fyers_apiv3.FyersWebsocket.data_ws",
    ),
    "upstox": SdkSpec(
        "upstox",
        ("upstox-python-sdk==2.30.0",),
        "import upstox_client, upstox_client.feeder.proto.MarketDataFeedV3_pb2",
    ),
}


class SdkVenvError(RuntimeError):
    """A venv could not be built; the message says which step failed and pip's output."""


def base_python() -> Path:
    """The interpreter the project venv was made from (sys.executable's base)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        Path(sys.base_prefix) / "bin" / version,
        Path(sys.base_prefix) / "bin" / "python3",
        Path(getattr(sys, "_base_executable", sys.executable)),
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise SdkVenvError(f"no base interpreter found under {sys.base_prefix}")


def venv_dir(name: str) -> Path:
    return VENV_ROOT / name


def venv_python(name: str) -> Path:
    return venv_dir(name) / "bin" / "python"


def _wanted_stamp(spec: SdkSpec) -> dict[str, object]:
    return {
        "name": spec.name,
        "requirements": list(spec.requirements),
        "python": ".".join(map(str, sys.version_info[:3])),
    }


def _read_stamp(name: str) -> dict[str, object] | None:
    try:
        return json.loads((venv_dir(name) / STAMP).read_text())
    except (OSError, ValueError):
        return None


def is_current(name: str) -> bool:
    stamp = _read_stamp(name)
    if stamp is None or not venv_python(name).exists():
        return False
    wanted = _wanted_stamp(SPECS[name])
    return all(stamp.get(k) == v for k, v in wanted.items())


@contextmanager
def _build_lock() -> Iterator[None]:
    VENV_ROOT.mkdir(parents=True, exist_ok=True)
    with open(VENV_ROOT / ".build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(step: str, cmd: list[str], timeout: float) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise SdkVenvError(f"{step}: timed out after {timeout:.0f} s: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip().splitlines()
        relevant = [line for line in output if "is ignored: it is neither" not in line]
        tail = "\n".join(relevant[-40:])
        raise SdkVenvError(f"{step} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return proc.stdout


def ensure_venv(name: str, *, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """The venv's python, building the venv first if it is missing or stale."""
    if name not in SPECS:
        raise SdkVenvError(f"unknown SDK venv {name!r}; known: {', '.join(SPECS)}")
    spec = SPECS[name]
    if not force and is_current(name):
        return venv_python(name)
    with _build_lock():
        if not force and is_current(name):  # built by someone else while we waited
            return venv_python(name)
        target = venv_dir(name)
        started = time.monotonic()
        log(f"building SDK venv {name} at {target} ({', '.join(spec.requirements)})")
        if target.exists():
            shutil.rmtree(target)
        _run("create venv", [str(base_python()), "-m", "venv", str(target)], 300.0)
        python = str(venv_python(name))
        pip = [python, "-m", "pip", "--disable-pip-version-check", "--no-input"]
        _run("pip install", [*pip, "install", *spec.requirements], PIP_TIMEOUT)
        _run("import check", [python, "-c", spec.check], 120.0)
        frozen = _run("pip freeze", [*pip, "freeze", "--all"], 120.0).split()
        stamp = {**_wanted_stamp(spec), "installed": frozen, "built_at": time.time()}
        (target / STAMP).write_text(json.dumps(stamp, indent=1) + "\n")
        log(f"built SDK venv {name} in {time.monotonic() - started:.1f} s")
        return venv_python(name)


def installed(name: str) -> list[str]:
    """``pip freeze`` of a built venv, from its stamp."""
    stamp = _read_stamp(name) or {}
    return list(stamp.get("installed", []))  # type: ignore[call-overload]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the SDK virtualenvs.")
    parser.add_argument("names", nargs="*", default=list(SPECS))
    parser.add_argument("--force", action="store_true", help="rebuild even if current")
    args = parser.parse_args(argv)
    for name in args.names:
        try:
            python = ensure_venv(name, force=args.force)
        except SdkVenvError as exc:
            sys.exit(f"error: {exc}")
        print(f"{name}: {python}")
        for line in installed(name):
            print(f"    {line}")


if __name__ == "__main__":
    main()
