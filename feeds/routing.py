"""WebSocket routes of the feeds app."""

from django.urls import URLPattern, path

from feeds.consumers import MarketDataConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/v1/market/", MarketDataConsumer.as_asgi()),
]
