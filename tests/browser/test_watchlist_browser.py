"""The live pages in a real browser against the real hub: headless Chromium (Debian's package,
driven by Playwright) logs in, adds a symbol to the watchlist and sees its price tick; the
instrument page draws its chart; both reconnect by themselves when the hub restarts.

Playwright's own browser download is unreachable from CI, so the system ``chromium`` is
launched. Without it (or without Playwright) the tests skip on a workstation but FAIL when
``CI`` is set: a skipped browser test must never pass for a green CI run.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pytest

from tests.conftest import PYTHON, REPO_ROOT, free_port, free_ports, subprocess_env

with contextlib.suppress(ImportError):  # reported by the `browser` fixture (conftest)
    from playwright.sync_api import Browser, Locator, Page, expect

SETUP_TIMEOUT = 300  # migrate and import the sample masters on a slow machine
START_TIMEOUT = 120
TICK_TIMEOUT = 30_000  # ms for a price to appear or change (the simulators tick many times/s)
USERNAME, PASSWORD = "trader", "browser-test-pass-1"
DEPTH_SYMBOL = "NSE:RELIANCE"  # in the starter set; switched to depth mode for these tests
PRICE = re.compile(r"^\d[\d,]*\.\d{2,4}$")


class Hub:
    """`manage.py runhub` in a subprocess, on its own var dir (SQLite, secret key, static)."""

    @classmethod
    @contextlib.contextmanager
    def running(cls, var_dir: Path) -> Iterator[Self]:
        """Set up, started, and stopped when the block ends."""
        hub = cls(var_dir)
        hub.set_up()
        hub.start()
        try:
            yield hub
        finally:
            hub.stop()

    def __init__(self, var_dir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = var_dir / "hub.log"
        # The simulators' default ports are fixed (8765...): another hub on this machine, or
        # a test running beside this one, would hold them.
        sim = free_ports(4)
        self.env = subprocess_env(
            MDHUB_VAR_DIR=str(var_dir),
            FYERS_API_URL=f"http://127.0.0.1:{sim[0]}",
            FYERS_SOCKET_URL=f"ws://127.0.0.1:{sim[1]}/hsm/v1-5/prod",
            UPSTOX_API_URL=f"http://127.0.0.1:{sim[2]}",
            UPSTOX_FEED_URL=f"ws://127.0.0.1:{sim[3]}/v3/feed/market-data-feed",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def manage(self, *args: str) -> None:
        done = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=REPO_ROOT, env=self.env, capture_output=True,
            text=True, timeout=SETUP_TIMEOUT,
        )  # fmt: skip
        if done.returncode:
            pytest.fail(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")

    def set_up(self) -> None:
        # What scripts/run.sh does before serving, plus an ordinary user to log in with (no
        # staff flag, no permission) and one instrument whose feeds carry market depth.
        self.manage("migrate", "--noinput")
        self.manage("setup_hub", "--no-admin")
        self.manage("collectstatic", "--noinput", "--verbosity", "0")
        self.manage(
            "shell", "-c",
            "from django.contrib.auth import get_user_model\n"
            "from feeds.models import Instrument\n"
            "from feeds.services import instrument_update\n"
            f"get_user_model().objects.create_user({USERNAME!r}, password={PASSWORD!r})\n"
            f"instrument_update(instrument=Instrument.objects.get(key={DEPTH_SYMBOL!r}), "
            "changes={'data_mode': 'depth'})",
        )  # fmt: skip

    def start(self) -> None:
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [PYTHON, "manage.py", "runhub", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=REPO_ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"runhub exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                urllib.request.urlopen(f"{self.base}/accounts/login/", timeout=2)
                return
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the hub did not answer within {START_TIMEOUT}s:\n{self.tail()}")
                time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="module")
def hub(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    # Depends on `browser` so that a missing Chromium is reported before minutes of setup.
    with Hub.running(tmp_path_factory.mktemp("hub")) as running:
        yield running


def log_in(page: Page, path: str) -> None:
    page.goto(path)
    # Not logged in: the page sends us to the login page, which comes back here.
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next="))
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(re.escape(path) + "$"))


def expect_live(page: Page, hub: Hub) -> None:
    badge = page.get_by_test_id("connection-state")
    try:
        expect(badge).to_have_attribute("data-state", "live", timeout=20_000)
    except AssertionError as failure:
        raise AssertionError(f"{failure}\nbadge: {badge.text_content()}\n{hub.tail()}") from None


def expect_ticking(price: Locator, hub: Hub) -> None:
    """The price cell gets a value, then a different one."""
    try:
        expect(price).to_have_text(PRICE, timeout=TICK_TIMEOUT)
        first = price.text_content()
        expect(price).not_to_have_text(first, timeout=TICK_TIMEOUT)
        expect(price).to_have_text(PRICE)
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{hub.tail()}") from None


def test_log_in_add_a_symbol_and_see_its_price_change(page: Page, hub: Hub):
    log_in(page, "/watchlist/")
    expect_live(page, hub)
    expect(page.get_by_test_id("watchlist-empty")).to_be_visible()

    page.get_by_test_id("instrument-search").fill("sbin")
    result = page.locator('#search-results li[data-key="NSE:SBIN"]')
    expect(result).to_be_visible()
    result.get_by_role("button", name="Add").click()

    row = page.locator('tr[data-symbol="NSE:SBIN"]')
    expect(row).to_be_visible()
    expect(page.get_by_test_id("watchlist-empty")).to_be_hidden()
    expect_ticking(row.locator("[data-field=ltp]"), hub)
    expect(row.locator("[data-field=change_pct]")).to_have_text(re.compile(r"^[+-]?\d+\.\d{2}%$"))
    expect(row.locator("[data-field=bid]")).to_have_text(PRICE)
    expect(row.locator("[data-field=age]")).to_have_text(re.compile(r"^\d+s$"))

    # The watchlist is stored: a reload shows the row again, ticking.
    page.reload()
    expect_live(page, hub)
    expect_ticking(page.locator('tr[data-symbol="NSE:SBIN"] [data-field=ltp]'), hub)


def test_instrument_page_draws_a_live_chart_and_the_depth(page: Page, hub: Hub):
    log_in(page, f"/instruments/{DEPTH_SYMBOL}/")
    expect_live(page, hub)
    expect_ticking(page.get_by_test_id("ltp"), hub)
    expect(page.locator("#price-chart canvas").first).to_be_visible()
    expect(page.locator('#quote [data-field="open"]')).to_have_text(PRICE)
    best_bid = page.locator("#depth-rows tr").first.locator("td.bid")
    expect(best_bid).to_have_text(PRICE, timeout=TICK_TIMEOUT)
    expect(page.get_by_test_id("depth-note")).to_be_hidden()


def test_pages_reconnect_by_themselves_after_a_hub_restart(page: Page, hub: Hub):
    log_in(page, "/instruments/NSE:SBIN/")
    expect_live(page, hub)
    # Subscribed in depth mode, carried in quote mode: the page says so instead of a table.
    expect(page.get_by_test_id("depth-note")).to_contain_text("in quote mode")
    expect(page.get_by_test_id("depth")).to_be_hidden()
    badge = page.get_by_test_id("connection-state")

    hub.stop()
    expect(badge).to_have_attribute("data-state", "reconnecting", timeout=10_000)
    expect(badge).to_contain_text(re.compile(r"Reconnecting in \d+s"))
    hub.start()
    expect_live(page, hub)
    expect_ticking(page.get_by_test_id("ltp"), hub)
