"""Real mode: certificates are verified (the official SDKs turn verification off)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess

import pytest
from aiohttp import web
from websockets.asyncio.server import serve

from feeds.providers.base import ClientState
from feeds.providers.errors import ProviderUnavailable
from feeds.providers.upstox.client import UpstoxClient
from feeds.providers.upstox.rest import UpstoxRestClient


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory) -> ssl.SSLContext:
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make a test certificate"
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


async def test_socket_client_refuses_an_unverifiable_certificate(self_signed):
    accepted = []

    async def handler(socket):
        accepted.append(socket)
        await socket.wait_closed()

    async with serve(handler, "127.0.0.1", 0, ssl=self_signed) as server:
        port = server.sockets[0].getsockname()[1]
        states = []
        went_down = asyncio.Event()

        def on_state(client, state, reason):
            states.append((state, reason))
            if state is ClientState.DOWN:
                went_down.set()

        client = UpstoxClient(
            name="upstox:tls:0",
            feed_url=f"wss://127.0.0.1:{port}/v3/feed/market-data-feed",
            token=lambda: "a-real-looking-token",
            on_ticks=lambda ticks: None,
            on_state=on_state,
            symbol_cap=10,
        )
        client.start()
        await asyncio.wait_for(went_down.wait(), 10)
        await client.close()
    reason = next(r for s, r in states if s is ClientState.DOWN)
    assert "CERTIFICATE_VERIFY_FAILED" in reason or "certificate verify failed" in reason
    assert accepted == []  # the handshake never completed, no token was sent


async def test_rest_client_refuses_an_unverifiable_certificate(self_signed):
    app = web.Application()

    async def ltp(request: web.Request) -> web.Response:
        return web.json_response({"status": "success", "data": {}})

    app.router.add_get("/v3/market-quote/ltp", ltp)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self_signed)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with UpstoxRestClient(api_url=f"https://127.0.0.1:{port}", token=lambda: "t") as rest:
            with pytest.raises(ProviderUnavailable, match=r"(?i)certificate"):
                await rest.ltp(["NSE_EQ|INE062A01020"])
    finally:
        await runner.cleanup()
