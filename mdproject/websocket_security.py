"""Origin check for WebSocket handshakes.

Cross-site WebSocket hijacking needs a browser, and browsers always send ``Origin``: when one
is sent it must be this site's (``ALLOWED_HOSTS``, or ``CSRF_TRUSTED_ORIGINS`` for a site behind
a proxy). Programs send none and authenticate with an API token, so a handshake without
``Origin`` goes through. Channels' ``AllowedHostsOriginValidator`` refuses those, which would
shut out every API client.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import ParseResult

from channels.security.websocket import OriginValidator
from django.conf import settings


class BrowserOriginValidator(OriginValidator):
    def __init__(self, application: Any) -> None:
        allowed = [*settings.ALLOWED_HOSTS, *settings.CSRF_TRUSTED_ORIGINS]
        if settings.DEBUG and not settings.ALLOWED_HOSTS:
            allowed += ["localhost", "127.0.0.1", "[::1]"]  # Django's own DEBUG default
        super().__init__(application, allowed)

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)
