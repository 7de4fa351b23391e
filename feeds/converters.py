"""URL converters for the feeds app's pages."""

from __future__ import annotations


class InstrumentKeyConverter:
    """A canonical key in a path: ``NSE:SBIN``, ``NSE:NIFTY-20261229-24000-CE``, ``NSE:M&M``.

    The default ``str`` converter would take these too, but spelling the shape out keeps
    ``/instruments/<key>/`` from swallowing unrelated paths: an exchange, a colon, then any
    characters but a slash.
    """

    regex = r"[A-Z][A-Z0-9]*:[^/]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value
