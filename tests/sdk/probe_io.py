"""What both SDK probes share: SDK prints captured as events, and a hard exit.

Standard library only: the probes run inside the SDKs' own virtualenvs, never the project's.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from typing import Any, TextIO


class PrintCapture(io.TextIOBase):
    """sys.stdout replacement: each line the SDK prints becomes a "print" event."""

    def __init__(self, emit: Callable[[str, Any], None]) -> None:
        self._emit = emit
        self._buf = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._buf += text
            *lines, self._buf = self._buf.split("\n")
        for line in lines:
            if line.strip():
                self._emit("print", line)
        return len(text)


def exit_now(emit: Callable[[str, Any], None], out: TextIO, code: int = 0) -> None:
    emit("done", {"code": code})
    out.flush()
    os._exit(code)  # the SDKs' socket and ping threads are not daemons: do not wait for them
