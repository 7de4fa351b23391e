"""The live pages (watchlist, instrument) and the small JSON API they call.

Prices never pass through these views: the pages' scripts take them straight from the
WebSocket API (docs/websocket-api.md). The views only render the page shells and read or
change the user's watchlist through the selectors and services.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.csrf import csrf_failure as django_csrf_failure

from feeds.models import Instrument
from feeds.selectors import instrument_get, instruments_search, watchlist_get
from feeds.services import watchlist_item_add, watchlist_item_remove

# The WebSocket API's path (feeds/routing.py); the pages connect to it on their own origin.
MARKET_SOCKET_PATH = "/ws/v1/market/"
SEARCH_LIMIT = 20

View = Callable[..., HttpResponse]


def price_decimals(tick_size: Decimal | None) -> int:
    """Decimals to show prices with: the tick size's (0.0025 -> 4), at least two."""
    if not tick_size:
        return 2
    exponent = tick_size.normalize().as_tuple().exponent
    return max(2, -exponent) if isinstance(exponent, int) else 2


def instrument_json(instrument: Instrument) -> dict[str, Any]:
    return {
        "key": instrument.key,
        "name": instrument.name,
        "exchange": instrument.exchange,
        "instrument_type": instrument.instrument_type,
        "fyers_symbol": instrument.fyers_symbol,
        "upstox_key": instrument.upstox_key,
        "enabled": instrument.enabled,
        "data_mode": instrument.data_mode,
        "tick_size": str(instrument.tick_size.normalize()) if instrument.tick_size else None,
        "decimals": price_decimals(instrument.tick_size),
        "url": reverse("feeds:instrument", kwargs={"key": instrument.key}),
    }


# --- pages ----------------------------------------------------------------------------------


@login_required
def watchlist_page(request: HttpRequest) -> HttpResponse:
    items = [instrument_json(item.instrument) for item in watchlist_get(user=request.user)]
    config = {
        "socketPath": MARKET_SOCKET_PATH,
        "searchUrl": reverse("feeds:api-instruments-search"),
        "addUrl": reverse("feeds:api-watchlist-add"),
        "removeUrl": reverse("feeds:api-watchlist-remove"),
    }
    return render(request, "feeds/watchlist.html", {"items": items, "page_config": config})


@login_required
def instrument_page(request: HttpRequest, key: str) -> HttpResponse:
    instrument = instrument_get(key=key)
    if instrument is None:
        raise Http404(f"no instrument {key}")
    info = instrument_json(instrument)
    config = {"socketPath": MARKET_SOCKET_PATH, "instrument": info}
    return render(
        request,
        "feeds/instrument.html",
        {"instrument": instrument, "info": info, "page_config": config},
    )


# --- JSON API -------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def api_error_response(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def json_api(*methods: str) -> Callable[[View], View]:
    """Session-authenticated JSON endpoint: answers 401/405 as JSON instead of redirecting to
    the login page, and turns an ``ApiError`` into its JSON response.

    CSRF stays with Django's middleware; its refusals come back as JSON through
    :func:`csrf_failure`, which recognises these views by ``json_api``.
    """

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return api_error_response(401, "not_authenticated", "log in first")
            if request.method not in methods:
                response = api_error_response(
                    405, "method_not_allowed", f"{request.method} not allowed; use {methods[0]}"
                )
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return view(request, *args, **kwargs)
            except ApiError as error:
                return api_error_response(error.status, error.code, error.message)

        wrapper.json_api = True  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "malformed_request", "the body must be JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "malformed_request", "the body must be a JSON object")
    return body


def _instrument_field(body: dict[str, Any]) -> str:
    key = body.get("instrument")
    if not isinstance(key, str) or not key.strip():
        raise ApiError(
            400, "malformed_request", "'instrument' must be a canonical key, e.g. NSE:SBIN"
        )
    return key.strip()


@json_api("GET")
def instruments_search_api(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "")
    try:
        limit = int(request.GET.get("limit", SEARCH_LIMIT))
    except ValueError:
        raise ApiError(400, "malformed_request", "'limit' must be an integer") from None
    watched = {item.instrument.key for item in watchlist_get(user=request.user)}
    results = [
        {**instrument_json(instrument), "on_watchlist": instrument.key in watched}
        for instrument in instruments_search(query=query, limit=limit)
    ]
    return JsonResponse({"query": query, "results": results})


@json_api("POST")
def watchlist_item_add_api(request: HttpRequest) -> HttpResponse:
    key = _instrument_field(_json_body(request))
    try:
        item, created = watchlist_item_add(user=request.user, instrument_key=key)
    except Instrument.DoesNotExist as missing:
        raise ApiError(404, "unknown_instrument", str(missing)) from None
    return JsonResponse(
        {"item": instrument_json(item.instrument), "created": created},
        status=201 if created else 200,
    )


@json_api("POST")
def watchlist_item_remove_api(request: HttpRequest) -> HttpResponse:
    key = _instrument_field(_json_body(request))
    try:
        removed = watchlist_item_remove(user=request.user, instrument_key=key)
    except Instrument.DoesNotExist as missing:
        raise ApiError(404, "unknown_instrument", str(missing)) from None
    return JsonResponse({"instrument": key, "removed": removed})


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """``CSRF_FAILURE_VIEW``: JSON for the JSON API, Django's page for everything else."""
    match = request.resolver_match
    if match is not None and getattr(match.func, "json_api", False):
        return api_error_response(403, "csrf_failed", f"CSRF check failed: {reason}")
    return django_csrf_failure(request, reason=reason)
