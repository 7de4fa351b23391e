"""Operator-facing setup."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model


def operator_ensure(*, username: str = "admin") -> str | None:
    """Create a superuser when none exists; return its one-time password, else None.

    The password is random and shown once by the caller; nothing stores it.
    """
    user_model = get_user_model()
    if user_model.objects.filter(is_superuser=True).exists():
        return None
    password = secrets.token_urlsafe(12)
    user_model.objects.create_superuser(username=username, email="", password=password)
    return password
