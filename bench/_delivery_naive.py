"""The naive baseline's ASGI app for ``delivery_e2e.py``: Channels as its tutorial shows it.

    daphne -b 127.0.0.1 -p PORT _delivery_naive:application     (with bench/ on PYTHONPATH)
    uvicorn _delivery_naive:application ...

One route, ``/ws/naive/``. A client sends ``{"action": "subscribe", "symbols": [...]}``
with canonical keys; the consumer joins one group per symbol (``sym.NSE_BENCH00042``) on
``channels_redis.core.RedisChannelLayer`` (default capacity 100, expiry 60 s) and forwards
every ``tick.update`` event as one text frame ``{"type": "update", "data": [tick]}`` (stdlib
``json``, as ``AsyncJsonWebsocketConsumer`` does). No authentication, no symbol resolution,
no snapshot, no conflation: only the delivery path is under test. The naive publisher is
``_delivery_naive_worker.py``.

The core layer is added to the settings' ``CHANNEL_LAYERS`` as alias ``naive`` at import
(the hub's own default layer, pub/sub, is left alone and unused here).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mdproject.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from _delivery_common import naive_group  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402

NAIVE_LAYER = "naive"
NAIVE_PREFIX = "naive"

settings.CHANNEL_LAYERS = {
    **settings.CHANNEL_LAYERS,
    NAIVE_LAYER: {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": NAIVE_PREFIX},
    },
}


class NaiveTickConsumer(AsyncWebsocketConsumer):
    channel_layer_alias = NAIVE_LAYER

    async def connect(self) -> None:
        self.joined: list[str] = []
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        request = json.loads(text_data or "{}")
        if request.get("action") != "subscribe":
            return
        symbols = [s for s in request.get("symbols", []) if isinstance(s, str)]
        for symbol in symbols:
            group = naive_group(symbol)
            await self.channel_layer.group_add(group, self.channel_name)
            self.joined.append(group)
        await self.send(text_data=json.dumps({"type": "subscribed", "id": request.get("id"),
                                              "symbols": symbols}))  # fmt: skip

    async def tick_update(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"type": "update", "data": [event["tick"]]}))

    async def disconnect(self, code: int) -> None:
        for group in self.joined:
            await self.channel_layer.group_discard(group, self.channel_name)


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter([path("ws/naive/", NaiveTickConsumer.as_asgi())]),
    }
)
