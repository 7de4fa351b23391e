"""The monitoring page in a real browser against the real hub (``runhub``: Daphne, the feed
worker, both simulators, the embedded Celery worker and beat running the health check):
headless Chromium logs in as staff and sees the connections' live states; a broker outage
scripted on the FYERS simulator (``simctl``) shows on the page, then its alert, then the
recovery, all in the same document, without a reload; and the page's socket comes back by
itself when the hub restarts.

The hub and the browser are set up as in ``test_watchlist_browser`` (whose ``Hub`` this
reuses): the system ``chromium``; skipped without it unless ``CI`` is set.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import pytest

from tests.browser.test_watchlist_browser import Hub

with contextlib.suppress(ImportError):  # reported by the `browser` fixture
    from playwright.sync_api import Browser, Page, expect

STAFF, STAFF_PASSWORD = "operator", "monitor-test-pass-1"
CONNECTION = "fyers:primary:0"  # carries the starter set's high-frequency symbols
NUMBER = re.compile(r"^\d[\d,]*(\.\d)?$")
LIVE_TIMEOUT = 30_000  # ms: the hub's connections come up and the page's next push shows it
HEALTH_TIMEOUT = 40_000  # ms: the health check runs every 5 s; the alert shows on a push
# A refused token makes the client wait up to 60 s between tries (its auth back-off), so
# coming back after the outage can take that long, plus the recovery hysteresis.
RECOVERY_TIMEOUT = 120_000


class MonitorHub(Hub):
    def set_up(self) -> None:
        super().set_up()
        self.manage(
            "shell", "-c",
            "from django.contrib.auth import get_user_model\n"
            f"get_user_model().objects.create_user({STAFF!r}, password={STAFF_PASSWORD!r}, "
            "is_staff=True)",
        )  # fmt: skip


@pytest.fixture(scope="module")
def hub(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MonitorHub]:
    with MonitorHub.running(tmp_path_factory.mktemp("hub")) as running:
        yield running


def open_monitor(page: Page, hub: MonitorHub) -> None:
    """Log in as staff from the page's redirect, see the socket live, and mark the document
    so that a reload (which would make a fresh one) can be told from an in-place update."""
    page.goto("/monitor/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/monitor/"))
    page.fill("#id_username", STAFF)
    page.fill("#id_password", STAFF_PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/monitor/$"))
    checked(hub, lambda: expect(page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "live", timeout=20_000))  # fmt: skip
    page.evaluate("() => { window.sameDocument = true; }")


def same_document(page: Page) -> bool:
    return page.evaluate("() => window.sameDocument === true")


def checked(hub: MonitorHub, assertion) -> None:
    """Run a Playwright assertion; on failure add the hub's log to the message."""
    try:
        assertion()
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{hub.tail()}") from None


def test_the_page_shows_live_connection_states_and_updates_in_place(page: Page, hub: MonitorHub):
    open_monitor(page, hub)
    state = page.get_by_test_id(f"conn-state-{CONNECTION}")
    checked(hub, lambda: expect(state).to_have_text("live", timeout=LIVE_TIMEOUT))
    expect(page.get_by_test_id(f"conn-verdict-{CONNECTION}")).to_be_visible()
    expect(page.get_by_test_id("summary-connections")).to_have_text(re.compile(r"^[1-9]\d* / \d+$"))
    expect(page.get_by_test_id("pool-connections-fyers:primary")).to_have_text(
        re.compile(r"^[1-9]\d* / [1-9]\d* / \d+$")
    )
    expect(page.locator("#worker-rows tr")).to_have_count(1)
    # The chart, or, before the performance monitor's first report, a note saying why not.
    shown = page.locator("#latency-chart:visible canvas, [data-testid=latency-empty]:visible")
    expect(shown.first).to_be_visible()

    # The figures move with every push: the tick count changes and a rate appears.
    row = page.locator(f'tr[data-connection="{CONNECTION}"]')
    ticks = row.locator("[data-field=ticks]")
    expect(ticks).to_have_text(NUMBER)
    first = ticks.text_content()
    checked(hub, lambda: expect(ticks).not_to_have_text(first, timeout=LIVE_TIMEOUT))
    expect(row.locator("[data-field=tps]")).to_have_text(NUMBER, timeout=LIVE_TIMEOUT)
    assert same_document(page), "the page was reloaded"


def test_a_broker_outage_shows_then_clears_without_a_reload(page: Page, hub: MonitorHub):
    open_monitor(page, hub)
    state = page.get_by_test_id(f"conn-state-{CONNECTION}")
    banner = page.get_by_test_id("alert-banner")
    checked(hub, lambda: expect(state).to_have_text("live", timeout=LIVE_TIMEOUT))
    # A connection alert from the hub's start-up clears first, so the next one is ours.
    checked(hub, lambda: expect(banner).not_to_contain_text(CONNECTION, timeout=HEALTH_TIMEOUT))

    # FYERS refuses logins, then drops every socket: the connection cannot come back.
    hub.manage("simctl", "fyers", "reject-auth")
    try:
        hub.manage("simctl", "fyers", "close-unclean", "--connection", "all")
        checked(hub, lambda: expect(state).not_to_have_attribute(
            "data-state", "live", timeout=LIVE_TIMEOUT))  # fmt: skip
        checked(hub, lambda: expect(banner).to_be_visible(timeout=HEALTH_TIMEOUT))
        checked(hub, lambda: expect(banner).to_contain_text(CONNECTION))
        expect(page.get_by_test_id(f"conn-verdict-{CONNECTION}")).to_have_text("unhealthy")
    finally:
        hub.manage("simctl", "fyers", "accept-auth")

    checked(hub, lambda: expect(state).to_have_text("live", timeout=RECOVERY_TIMEOUT))
    checked(hub, lambda: expect(banner).not_to_contain_text(CONNECTION, timeout=HEALTH_TIMEOUT))
    expect(page.locator("#alert-rows tr.resolved", has_text=CONNECTION).first).to_be_visible()
    assert same_document(page), "the page was reloaded"


def test_the_page_reconnects_by_itself_after_a_hub_restart(page: Page, hub: MonitorHub):
    open_monitor(page, hub)
    badge = page.get_by_test_id("connection-state")
    hub.stop()
    expect(badge).to_have_attribute("data-state", "reconnecting", timeout=10_000)
    expect(badge).to_contain_text(re.compile(r"Reconnecting in \d+s"))
    hub.start()
    checked(hub, lambda: expect(badge).to_have_attribute("data-state", "live", timeout=40_000))
    updated = page.get_by_test_id("updated-at")
    shown = updated.text_content()
    expect(updated).not_to_have_text(shown, timeout=10_000)  # pushes again
    checked(hub, lambda: expect(page.get_by_test_id(f"conn-state-{CONNECTION}")).to_have_text(
        "live", timeout=LIVE_TIMEOUT))  # fmt: skip
    assert same_document(page), "the page was reloaded"
