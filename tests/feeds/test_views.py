"""The live pages and their JSON API: login, search, watchlist add/remove, CSRF, page shells."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from feeds.models import Instrument
from feeds.selectors import instruments_search, watchlist_get
from feeds.services import watchlist_item_add, watchlist_item_remove
from feeds.views import price_decimals
from tests.feeds.factories import instrument_make, option_make

pytestmark = pytest.mark.django_db

SEARCH = reverse("feeds:api-instruments-search")
ADD = reverse("feeds:api-watchlist-add")
REMOVE = reverse("feeds:api-watchlist-remove")
WATCHLIST = reverse("feeds:watchlist")


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="s3cret-pass!")


@pytest.fixture
def alice(client: Client, user) -> Client:
    client.force_login(user)
    return client


@pytest.fixture
def sbin():
    return instrument_make(
        key="NSE:SBIN", name="STATE BANK OF INDIA", fyers_symbol="NSE:SBIN-EQ",
        upstox_key="NSE_EQ|INE062A01020", enabled=True,
    )  # fmt: skip


def post_json(client: Client, url: str, body: object) -> object:
    return client.post(url, json.dumps(body), content_type="application/json")


# --- selectors and services -----------------------------------------------------------------


def test_search_matches_every_identity_case_insensitively(sbin):
    instrument_make(key="NSE:OTHER", name="Other Ltd")
    for query in ("sbin", "NSE:SBIN-EQ", "nse_eq|ine062a01020", "state bank"):
        assert [i.key for i in instruments_search(query=query)] == ["NSE:SBIN"], query
    assert instruments_search(query="  ") == []


def test_search_puts_enabled_then_exact_then_prefix_first():
    instrument_make(key="NSE:SBINX", name="Sbin X", enabled=False)
    instrument_make(key="NSE:XSBIN", name="X", enabled=True)
    instrument_make(key="NSE:SBINEQ", name="Y", enabled=True)
    instrument_make(key="NSE:SBIN", name="Z", enabled=True)
    keys = [i.key for i in instruments_search(query="sbin")]
    assert keys == ["NSE:SBIN", "NSE:SBINEQ", "NSE:XSBIN", "NSE:SBINX"]
    assert len(instruments_search(query="sbin", limit=2)) == 2


def test_watchlist_add_is_idempotent_and_keeps_order(user, sbin):
    other = instrument_make()
    first, created = watchlist_item_add(user=user, instrument_key="NSE:SBIN")
    assert created
    again, created_again = watchlist_item_add(user=user, instrument_key="NSE:SBIN")
    assert (again.pk, created_again) == (first.pk, False)
    watchlist_item_add(user=user, instrument_key=other.key)
    assert [i.instrument.key for i in watchlist_get(user=user)] == ["NSE:SBIN", other.key]

    assert watchlist_item_remove(user=user, instrument_key="NSE:SBIN") is True
    assert watchlist_item_remove(user=user, instrument_key="NSE:SBIN") is False
    assert [i.instrument.key for i in watchlist_get(user=user)] == [other.key]


def test_watchlist_add_unknown_key_says_which(user):
    with pytest.raises(Instrument.DoesNotExist, match="no instrument NSE:FOO"):
        watchlist_item_add(user=user, instrument_key="NSE:FOO")


def test_price_decimals_follow_the_tick_size():
    assert price_decimals(Decimal("0.05")) == 2
    assert price_decimals(Decimal("0.0025")) == 4
    assert price_decimals(Decimal("1.0000")) == 2


# --- login ----------------------------------------------------------------------------------


def test_pages_redirect_to_login(client, sbin):
    for url in (WATCHLIST, reverse("feeds:instrument", kwargs={"key": "NSE:SBIN"})):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login") + "?next=")


def test_an_ordinary_user_logs_in_and_lands_on_the_watchlist(client, user):
    page = client.get(reverse("login"))
    assert page.status_code == 200 and b'name="password"' in page.content
    response = client.post(reverse("login"), {"username": "alice", "password": "s3cret-pass!"})
    assert response.status_code == 302 and response["Location"] == WATCHLIST
    assert client.get(WATCHLIST).status_code == 200


def test_api_answers_401_json_without_login(client, sbin):
    for response in (client.get(SEARCH, {"q": "sbin"}), post_json(client, ADD, {})):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_authenticated"


# --- JSON API -------------------------------------------------------------------------------


def test_search_api(alice, user, sbin):
    watchlist_item_add(user=user, instrument_key="NSE:SBIN")
    response = alice.get(SEARCH, {"q": "sbin-eq"})
    assert response.status_code == 200
    [result] = response.json()["results"]
    assert result["key"] == "NSE:SBIN"
    assert result["on_watchlist"] is True
    assert result["enabled"] is True
    assert result["decimals"] == 2
    assert result["url"] == "/instruments/NSE:SBIN/"
    assert alice.get(SEARCH, {"q": "sbin", "limit": "x"}).status_code == 400
    assert alice.post(SEARCH).status_code == 405


def test_add_and_remove_api(alice, user, sbin):
    response = post_json(alice, ADD, {"instrument": "NSE:SBIN"})
    assert response.status_code == 201
    assert response.json()["item"]["key"] == "NSE:SBIN"
    assert response.json()["created"] is True
    again = post_json(alice, ADD, {"instrument": "NSE:SBIN"})
    assert (again.status_code, again.json()["created"]) == (200, False)
    assert [i.instrument.key for i in watchlist_get(user=user)] == ["NSE:SBIN"]

    removed = post_json(alice, REMOVE, {"instrument": "NSE:SBIN"})
    assert removed.status_code == 200
    assert removed.json() == {"instrument": "NSE:SBIN", "removed": True}
    assert post_json(alice, REMOVE, {"instrument": "NSE:SBIN"}).json()["removed"] is False
    assert watchlist_get(user=user) == []


def test_add_and_remove_unknown_key_is_404(alice):
    for url in (ADD, REMOVE):
        response = post_json(alice, url, {"instrument": "NSE:FOO"})
        assert response.status_code == 404
        assert response.json()["error"] == {
            "code": "unknown_instrument",
            "message": "no instrument NSE:FOO",
        }


@pytest.mark.parametrize(
    "body", [b"not json", b"[1, 2]", b"{}", b'{"instrument": 5}', b'{"instrument": " "}']
)
def test_add_rejects_malformed_bodies(alice, body):
    response = alice.post(ADD, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"


def test_add_needs_the_csrf_token(user, sbin):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    refused = post_json(client, ADD, {"instrument": "NSE:SBIN"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"

    # The token the page carries (and its cookie) is accepted.
    page = client.get(WATCHLIST)
    token = page.context["csrf_token"]
    accepted = client.post(
        ADD, json.dumps({"instrument": "NSE:SBIN"}), content_type="application/json",
        headers={"X-CSRFToken": str(token)},
    )  # fmt: skip
    assert accepted.status_code == 201


def test_csrf_failure_elsewhere_keeps_djangos_page(user):
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("admin:login"), {"username": "alice", "password": "x"})
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")


# --- pages ----------------------------------------------------------------------------------


def test_watchlist_page_renders_rows_and_scripts(alice, user, sbin):
    watchlist_item_add(user=user, instrument_key="NSE:SBIN")
    page = alice.get(WATCHLIST)
    assert page.status_code == 200
    html = page.text
    assert 'data-symbol="NSE:SBIN"' in html
    assert 'href="/instruments/NSE:SBIN/"' in html
    assert 'data-testid="connection-state"' in html
    assert '<script src="/static/feeds/js/market-socket.js">' in html
    assert '<script src="/static/feeds/js/watchlist.js">' in html
    assert 'id="page-config"' in html and '"/ws/v1/market/"' in html
    assert "csrfmiddlewaretoken" in html
    assert f'href="{WATCHLIST}"' in html  # the nav link
    assert "cdn" not in html.lower()


def test_empty_watchlist_says_so(alice):
    page = alice.get(WATCHLIST)
    assert 'data-testid="watchlist-empty">' in page.text
    assert 'data-symbol=""' in page.text  # only the row template


def test_instrument_page_renders_with_the_chart_library(alice):
    option = option_make(key="NSE:NIFTY-20261229-24000-CE", tick_size=Decimal("0.05"))
    url = reverse("feeds:instrument", kwargs={"key": option.key})
    assert url == "/instruments/NSE:NIFTY-20261229-24000-CE/"
    page = alice.get(url)
    assert page.status_code == 200
    html = page.text
    assert (
        '<script src="/static/feeds/vendor/lightweight-charts/'
        'lightweight-charts.standalone.production.js">' in html
    )
    assert '<script src="/static/feeds/js/instrument.js">' in html
    assert 'data-field="oi"' in html  # derivatives show open interest
    assert 'data-testid="not-streamed"' in html  # not enabled
    assert page.context["page_config"]["instrument"]["decimals"] == 2


def test_instrument_page_404_for_unknown_key(alice):
    assert alice.get("/instruments/NSE:NOPE/").status_code == 404


def test_static_files_exist():
    from django.contrib.staticfiles import finders

    for path in (
        "feeds/js/market-socket.js",
        "feeds/js/live-ui.js",
        "feeds/js/watchlist.js",
        "feeds/js/instrument.js",
        "feeds/vendor/lightweight-charts/lightweight-charts.standalone.production.js",
        "feeds/vendor/lightweight-charts/LICENSE",
    ):
        assert finders.find(path), path
