"""Typed errors shared by all providers. Each carries what a caller needs to act on it."""

from __future__ import annotations


class ProviderError(Exception):
    """Base class for everything a provider package raises on purpose."""


class FrameError(ProviderError):
    """A frame that cannot be decoded. The decoder's state is unchanged by it.

    ``reason`` is a short stable identifier for counting (e.g. "truncated", "unknown_topic"),
    ``detail`` a human-readable explanation.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class AuthError(ProviderError):
    """The provider refused our credentials (bad, expired or missing token)."""


class CapExceeded(ProviderError):
    """A request would go past a provider limit; refused locally, nothing was sent."""

    def __init__(self, what: str, limit: int, requested: int) -> None:
        super().__init__(f"{what}: limit {limit}, requested {requested}")
        self.what = what
        self.limit = limit
        self.requested = requested


class RateLimited(ProviderError):
    """A REST call does not fit the client-side rate budget (or the provider said 429)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or answered with a server error."""
