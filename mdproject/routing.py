"""WebSocket routes of every app, gathered in one place for ``asgi.py``."""

from feeds.routing import websocket_urlpatterns as feeds_websocket_urlpatterns
from monitoring.routing import websocket_urlpatterns as monitoring_websocket_urlpatterns

websocket_urlpatterns = [*feeds_websocket_urlpatterns, *monitoring_websocket_urlpatterns]
