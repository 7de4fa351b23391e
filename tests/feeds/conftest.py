from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from asgiref.sync import sync_to_async

from feeds import services
from feeds.providers.simulation.run import SimulatorSet, start_simulators
from tests.feeds.live import universe


@pytest.fixture
async def sims(sample_import, settings, monkeypatch) -> AsyncIterator[SimulatorSet]:
    """Both simulators over the sample instruments, on real sockets, with the settings and
    token variables pointed at them."""
    await sync_to_async(services.provider_accounts_ensure_defaults)()
    sims = await start_simulators(
        await sync_to_async(universe)(), seed=3, ticks_per_second=2, step_interval=0.05
    )
    described = sims.describe("127.0.0.1")
    settings.FYERS = {**settings.FYERS, "API_URL": described["fyers"]["api_url"],
                      "SOCKET_URL": described["fyers"]["socket_url"]}  # fmt: skip
    settings.UPSTOX = {**settings.UPSTOX, "API_URL": described["upstox"]["api_url"],
                       "FEED_URL": described["upstox"]["feed_url"]}  # fmt: skip
    monkeypatch.setenv("FYERS_ACCESS_TOKEN", described["fyers"]["token"])
    monkeypatch.setenv("UPSTOX_ACCESS_TOKEN", described["upstox"]["token"])
    yield sims
    await sims.stop()
