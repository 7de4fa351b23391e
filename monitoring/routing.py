"""WebSocket routes of the monitoring app."""

from django.urls import URLPattern, path

from monitoring.consumers import MonitorConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/v1/monitor/", MonitorConsumer.as_asgi()),
]
