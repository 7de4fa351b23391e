"""WebSocket routes of the feeds app (the market-data API is added here)."""

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
