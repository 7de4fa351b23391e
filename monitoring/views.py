from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from monitoring.access import monitor_access_allowed
from monitoring.consumers import push_interval
from monitoring.selectors import hub_overview_get, monitor_state_get, placement_overview_get

# The monitoring socket's path (monitoring/routing.py), on the page's own origin.
MONITOR_SOCKET_PATH = "/ws/v1/monitor/"


def home(request: HttpRequest) -> HttpResponse:
    context = {"overview": hub_overview_get(), "placement": placement_overview_get()}
    return render(request, "monitoring/home.html", context)


@login_required
def monitor_page(request: HttpRequest) -> HttpResponse:
    """The live monitoring page: drawn from the first state at once, then kept current by
    the socket. Anonymous users are sent to log in; logged-in users who are not staff get 403,
    as the socket closes them with 4003."""
    if not monitor_access_allowed(request.user):
        raise PermissionDenied("The monitoring page is for staff only.")
    config = {"socketPath": MONITOR_SOCKET_PATH, "interval": push_interval()}
    context = {"state": monitor_state_get(), "page_config": config}
    return render(request, "monitoring/monitor.html", context)
