"""Reads the environment for settings. Every variable has an embedded default (see README)."""

from __future__ import annotations

import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


def secret_key_from_file(path: Path) -> str:
    """Return the key kept in ``path``, creating it (mode 0600) on first use.

    Used only when SECRET_KEY is not in the environment, so a fresh checkout runs with a
    stable per-machine key that never enters the repository (``var/`` is git-ignored).
    """
    from django.core.management.utils import get_random_secret_key

    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = ""
    if key:
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = get_random_secret_key()
    # O_EXCL: when two processes start together, exactly one writes; the other reads it.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip() or key
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key
