"""``GET /metrics``: the whole hub in Prometheus's text format (``monitoring.metrics``).

Not public: it shows the hub's insides (pools, workers, load, alerts). Prometheus sends
``Authorization: Bearer <MDHUB_METRICS_TOKEN>``; a staff user's browser session works too.
With no token set, token access is off and only staff sessions get in.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from monitoring.access import monitor_access_allowed
from monitoring.metrics import metrics_render


def _bearer_token(request: HttpRequest) -> str | None:
    """The token of an ``Authorization: Bearer`` header; None without one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _token_valid(presented: str) -> bool:
    expected = settings.MONITORING.get("METRICS_TOKEN") or ""
    # Constant time, so the response time does not tell how much of a guess was right.
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """200 with the metrics for a valid bearer token or a staff session; 401 (with the
    challenge) for a request without credentials; 403 for a wrong token or a non-staff user.
    The token is never logged."""
    token = _bearer_token(request)
    if (token is not None and _token_valid(token)) or monitor_access_allowed(request.user):
        return HttpResponse(metrics_render(), content_type=CONTENT_TYPE_LATEST)
    if token is None and not request.user.is_authenticated:
        response = HttpResponse("Authentication required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="mdhub metrics"'
        return response
    return HttpResponse("Forbidden.\n", status=403, content_type="text/plain")
