from __future__ import annotations

import pytest

from feeds.providers.fyers.symbols import (
    INDEX_NAMES,
    SEGMENTS,
    index_name,
    is_index,
    segment_of,
    topic_for,
    topic_kind,
)


@pytest.mark.parametrize(
    ("prefix", "segment"),
    [
        ("1010", "nse_cm"),
        ("1011", "nse_fo"),
        ("1012", "cde_fo"),
        ("1020", "nse_com"),
        ("1120", "mcx_fo"),
        ("1210", "bse_cm"),
        ("1211", "bse_fo"),
        ("1212", "bcs_fo"),
    ],
)
def test_segment_table(prefix: str, segment: str) -> None:
    assert SEGMENTS[prefix] == segment
    assert segment_of(prefix + "000000" + "1234") == segment


def test_unknown_segment_is_dropped_like_the_sdk() -> None:
    assert segment_of("9999000000123") is None
    with pytest.raises(ValueError, match="segment"):
        topic_for(symbol="NSE:X-EQ", fytoken="9999000000123", kind="sf")


@pytest.mark.parametrize(
    ("symbol", "fytoken", "kind", "topic"),
    [
        ("NSE:SBIN-EQ", "10100000003045", "sf", "sf|nse_cm|3045"),
        ("NSE:SBIN-EQ", "10100000003045", "SymbolUpdate", "sf|nse_cm|3045"),
        ("NSE:SBIN-EQ", "10100000003045", "dp", "dp|nse_cm|3045"),
        ("NSE:SBIN-EQ", "10100000003045", "DepthUpdate", "dp|nse_cm|3045"),
        ("NSE:TESTSYM-EQ", "1010000000999001", "sf", "sf|nse_cm|999001"),
        ("NSE:NIFTY26SEP29200CE", "101126092935086", "sf", "sf|nse_fo|35086"),
        ("MCX:CRUDEOIL26SEPFUT", "1120260921565899", "dp", "dp|mcx_fo|565899"),
        ("NSE:NIFTY50-INDEX", "101000000026000", "sf", "if|nse_cm|Nifty 50"),
        ("NSE:NIFTY50-INDEX", "101000000026000", "if", "if|nse_cm|Nifty 50"),
        ("NSE:NIFTYBANK-INDEX", "101000000026009", "sf", "if|nse_cm|Nifty Bank"),
        ("NSE:INDIAVIX-INDEX", "101000000026017", "sf", "if|nse_cm|India VIX"),
        ("NSE:FINNIFTY-INDEX", "101000000026037", "sf", "if|nse_cm|Nifty Fin Service"),
        ("BSE:SENSEX-INDEX", "121000000001", "sf", "if|bse_cm|SENSEX"),
        ("NSE:SOMENEW-INDEX", "101000000099999", "sf", "if|nse_cm|SOMENEW"),  # fallback
    ],
)
def test_topic_for(symbol: str, fytoken: str, kind: str, topic: str) -> None:
    assert topic_for(symbol=symbol, fytoken=fytoken, kind=kind) == topic  # type: ignore[arg-type]


def test_depth_of_an_index_is_refused() -> None:
    with pytest.raises(ValueError, match="Index does not have market depth"):
        topic_for(symbol="NSE:NIFTY50-INDEX", fytoken="101000000026000", kind="dp")


def test_index_names_argument_replaces_the_builtin_table() -> None:
    # The simulator patch in FYERS.md §15.2 sets the SDK's mapping to {}: the fallback applies.
    assert (
        topic_for(symbol="NSE:NIFTY50-INDEX", fytoken="101000000026000", kind="sf", index_names={})
        == "if|nse_cm|NIFTY50"
    )
    names = {"NSE:NIFTY50-INDEX": "Custom"}
    assert index_name("NSE:NIFTY50-INDEX", names) == "Custom"


def test_builtin_index_names() -> None:
    assert INDEX_NAMES["NSE:MIDCPNIFTY-INDEX"] == "Nifty Midcap 50"
    assert INDEX_NAMES["NSE:NIFTYMIDCAP50-INDEX"] == "Nifty Midcap 50"
    assert INDEX_NAMES["NSE:NIFTYNXT50-INDEX"] == "Nifty Next 50"
    assert INDEX_NAMES["BSE:BSE100-INDEX"] == "BSE 100"
    assert INDEX_NAMES["BSE:BANKEX-INDEX"] == "BANKEX"
    assert len(INDEX_NAMES) == 15


def test_is_index_uses_the_text_after_the_last_dash() -> None:
    assert is_index("NSE:NIFTY50-INDEX")
    assert not is_index("NSE:SBIN-EQ")
    assert not is_index("INDEX")
    assert is_index("NSE:A-B-INDEX")


def test_bad_inputs() -> None:
    with pytest.raises(ValueError):
        topic_for(symbol="NSE:SBIN-EQ", fytoken="1010000000", kind="sf")  # no exchange token
    with pytest.raises(ValueError):
        topic_for(symbol="NSE:SBIN-EQ", fytoken="10100000003045", kind="ltp")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        index_name("NIFTY-INDEX", {})
    assert topic_kind("dp|nse_cm|1") == "dp"
    for bad in ("xx|nse_cm|1", "sf", "sfx|a", ""):
        with pytest.raises(ValueError):
            topic_kind(bad)
