"""Shared fixtures-as-functions for the FYERS codec tests: topics, values and valid frames."""

from __future__ import annotations

from feeds.providers.fyers.codec import FyersDecoder
from feeds.providers.fyers.server_codec import (
    encode_data_frame,
    lite_packet,
    snapshot_packet,
    update_packet,
)

NOV = None  # "no value" in a server-side field list

SYM = "NSE:TESTSYM-EQ"
SF = "sf|nse_cm|999001"
DP = "dp|nse_cm|999001"
SBIN = "NSE:SBIN-EQ"
SBIN_SF = "sf|nse_cm|3045"
NIFTY = "NSE:NIFTY50-INDEX"
NIFTY_IF = "if|nse_cm|Nifty 50"

EXPECTED = {SF: SYM, DP: SYM, SBIN_SF: SBIN, NIFTY_IF: NIFTY}
TIDS = {SF: 1, NIFTY_IF: 2, DP: 3, SBIN_SF: 4}


def sf_values(**fields: int | None) -> list[int | None]:
    """21 sf fields, all "no value" except those named (by position name)."""
    names = [
        "ltp", "vol", "ltt", "exch_ts", "bid_qty", "ask_qty", "bid", "ask", "ltq", "tbq",
        "tsq", "atp", "oi", "low", "high", "yhigh", "ylow", "lc", "uc", "open", "prev_close",
    ]  # fmt: skip
    out: list[int | None] = [None] * 21
    for name, value in fields.items():
        out[names.index(name)] = value
    return out


FULL_SF = [
    123455, 1000, 1700000000, 1700000001, 10, 20, 123450, 123460, 5, 900, 800,
    123000, 77, 120500, 125000, 130000, 100000, 111110, 135800, 121000, 120000,
]  # fmt: skip
FULL_IF = [2451000, 2440000, 1700000001, 2460000, 2430000, 2445000]
FULL_DP: list[int | None] = [
    *(123450, 123445, 123440, 123435, 123430),  # bid prices
    *(123460, 123465, 123470, 123475, 123480),  # ask prices
    *(10, 11, 12, 13, 14),  # bid sizes
    *(20, 21, 22, 23, 24),  # ask sizes
    *(1, 2, 3, 4, 5),  # bid orders
    *(6, 7, 8, 9, 10),  # ask orders
]


def snapshots_frame(message_number: int = 1) -> bytes:
    """Snapshots for all four standard topics (sf before dp, so the depth tick is emitted)."""
    return encode_data_frame(
        message_number,
        [
            snapshot_packet(TIDS[SF], SF, FULL_SF, token="999001"),
            snapshot_packet(TIDS[NIFTY_IF], NIFTY_IF, FULL_IF, token="Nifty 50"),
            snapshot_packet(TIDS[DP], DP, FULL_DP, token="999001"),
            snapshot_packet(TIDS[SBIN_SF], SBIN_SF, sf_values(ltp=80000), token="3045"),
        ],
    )


def ready_decoder(clock: int = 1) -> FyersDecoder:
    """A decoder that expects the standard topics and has seen their snapshots."""
    dec = FyersDecoder(recv_clock=lambda: clock)
    dec.expect(EXPECTED)
    dec.feed(snapshots_frame())
    return dec


def valid_frames() -> list[bytes]:
    """Frames a ready_decoder accepts, one of each shape (the fuzz and property corpus)."""
    return [
        snapshots_frame(7),
        encode_data_frame(2, [update_packet(TIDS[SF], [123460])]),
        encode_data_frame(3, [update_packet(TIDS[SF], [*FULL_SF[:20], 120100])]),
        encode_data_frame(4, [update_packet(TIDS[NIFTY_IF], [2451500, NOV, 1700000009])]),
        encode_data_frame(5, [update_packet(TIDS[DP], [123451, *[NOV] * 9, 15])]),
        encode_data_frame(6, [lite_packet(TIDS[SF], 123470), lite_packet(TIDS[NIFTY_IF], 1)]),
        encode_data_frame(
            8,
            [
                update_packet(TIDS[SBIN_SF], sf_values(ltp=80010, vol=5)),
                lite_packet(TIDS[SBIN_SF], 80020),
                update_packet(TIDS[DP], FULL_DP),
            ],
        ),
        encode_data_frame(9, []),
    ]
