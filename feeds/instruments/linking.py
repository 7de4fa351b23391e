"""Merging the FYERS and Upstox masters into canonical :class:`InstrumentRecord` objects.

Link rules (identity as each exchange defines it, never the providers' own symbols):

* equities by ISIN on the same exchange;
* futures and options by (exchange, segment, exchange token, expiry): tokens are reused
  after expiry, so the token alone is not enough;
* indices by (exchange, squeezed index name).

Rows that cannot be taken as they are (duplicates within one provider, a pair that
disagrees on what the instrument is, a canonical key already taken) become RowErrors;
everything else becomes a record, and records only one provider lists are also reported
as :class:`Unmatched`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from feeds.instruments.keys import canonical_key, format_strike, index_name_key
from feeds.instruments.records import (
    FyersRow,
    InstrumentRecord,
    InstrumentType,
    LinkResult,
    RowError,
    SourceRef,
    Unmatched,
    UpstoxRow,
)

FYERS = "fyers"
UPSTOX = "upstox"

_DERIVATIVES = (InstrumentType.FUT, InstrumentType.OPT)

RowT = TypeVar("RowT", FyersRow, UpstoxRow)


@dataclass(frozen=True, slots=True)
class _LinkKey:
    identity: tuple[str, ...]  # what is compared
    what: str  # for messages: "NSE ISIN", ...
    value: str  # for messages: "INE062A01020", ...


@dataclass(slots=True)
class _Accepted(Generic[RowT]):
    row: RowT
    key: str
    link: _LinkKey | None


def link_instruments(
    *, fyers_rows: Iterable[FyersRow], upstox_rows: Iterable[UpstoxRow]
) -> LinkResult:
    rejected: list[RowError] = []
    fyers = _accept(
        fyers_rows, rejected, lambda r: [("fytoken", r.fytoken), ("FYERS symbol", r.symbol)]
    )
    upstox = _accept(upstox_rows, rejected, lambda r: [("instrument_key", r.instrument_key)])

    upstox_by_link = {u.link.identity: u for u in upstox if u.link is not None}
    records: dict[str, InstrumentRecord] = {}
    unmatched: list[Unmatched] = []
    taken_upstox: set[str] = set()  # instrument_keys linked to, or rejected against, FYERS

    for f in fyers:
        u = upstox_by_link.get(f.link.identity) if f.link is not None else None
        if u is not None:
            taken_upstox.add(u.row.instrument_key)
            problem = _conflict(f.row, u.row)
            if problem is not None:
                rejected.append(RowError(u.row.source, problem))
                u = None
        record = _merge(f, u)
        records[record.key] = record
        if u is None:
            unmatched.append(Unmatched(record.key, FYERS, f.row.source))

    for u in upstox:
        if u.row.instrument_key in taken_upstox:
            continue
        if u.key in records:
            # FYERS keys are unique (checked in _accept) and linked records use them, so a
            # clash here is an Upstox-only row whose key a different instrument already has.
            first = records[u.key].sources[0]
            rejected.append(
                RowError(
                    u.row.source,
                    f"canonical key {u.key!r} already belongs to {first}, "
                    "which does not link to this row",
                )
            )
            continue
        record = _merge(None, u)
        records[record.key] = record
        unmatched.append(Unmatched(record.key, UPSTOX, u.row.source))

    return LinkResult(
        records=[records[key] for key in sorted(records)],
        unmatched=sorted(unmatched, key=lambda m: (m.provider, m.key)),
        rejected=rejected,
    )


def _accept(
    rows: Iterable[RowT],
    rejected: list[RowError],
    identities: Callable[[RowT], list[tuple[str, str]]],
) -> list[_Accepted[RowT]]:
    """Drop (as RowErrors) rows repeating an earlier row of the same provider."""
    accepted: list[_Accepted[RowT]] = []
    first_seen: dict[tuple[str, ...], SourceRef] = {}

    def duplicate(what: str, value: str, seen_key: tuple[str, ...]) -> str | None:
        first = first_seen.get(seen_key)
        return None if first is None else f"duplicate {what} {value!r} (first at {first})"

    for row in rows:
        checks = [(what, value, ("id", what, value)) for what, value in identities(row)]
        try:
            key = row_key(row)
        except ValueError as exc:
            rejected.append(RowError(row.source, f"no canonical key: {exc}"))
            continue
        checks.append(("canonical key", key, ("key", key)))
        link = link_key(row)
        if link is not None:
            checks.append((link.what, link.value, ("link", *link.identity)))

        reason = next(
            (r for what, value, sk in checks if (r := duplicate(what, value, sk)) is not None),
            None,
        )
        if reason is not None:
            rejected.append(RowError(row.source, reason))
            continue
        for _, _, seen_key in checks:
            first_seen[seen_key] = row.source
        accepted.append(_Accepted(row, key, link))
    return accepted


def symbol_root(row: FyersRow | UpstoxRow) -> str:
    """The name the canonical key is built on (before the exchange prefix is added)."""
    kind = row.instrument_type
    if kind in _DERIVATIVES:
        return row.underlying
    if isinstance(row, FyersRow):
        ticker_name = row.symbol.partition(":")[2]
        if kind is InstrumentType.INDEX:
            # Column 1 holds the index name as exchanges spell it ("Nifty 50"); the ticker
            # ("NIFTY50-INDEX") only when that is empty.
            return row.name or ticker_name.removesuffix("-INDEX")
        return ticker_name.rsplit("-", 1)[0] if "-" in ticker_name else ticker_name
    if kind is InstrumentType.INDEX:
        # The key's suffix *is* the index name ("NSE_INDEX|Nifty 50"): the fallback.
        return row.name or row.instrument_key.partition("|")[2]
    return row.trading_symbol


def row_key(row: FyersRow | UpstoxRow) -> str:
    """The canonical key of one provider row; ValueError if it lacks what its kind needs."""
    return canonical_key(
        exchange=row.exchange,
        instrument_type=row.instrument_type,
        symbol_root=symbol_root(row),
        series=row.series,
        expiry=row.expiry,
        strike=row.strike,
        option_type=row.option_type,
    )


def link_key(row: FyersRow | UpstoxRow) -> _LinkKey | None:
    """What links this row to the other provider's; None when it cannot be linked."""
    exchange = row.exchange.value
    kind = row.instrument_type
    if kind is InstrumentType.EQ:
        isin = row.isin.strip().upper()
        return _LinkKey(("EQ", exchange, isin), f"{exchange} ISIN", isin) if isin else None
    if kind is InstrumentType.INDEX:
        name = index_name_key(symbol_root(row))
        return _LinkKey(("INDEX", exchange, name), f"{exchange} index name", name)
    if not row.exchange_token or row.expiry is None:
        return None
    expiry = row.expiry.isoformat()
    segment = row.segment.value
    return _LinkKey(
        ("DERIV", exchange, segment, row.exchange_token, expiry),
        f"{exchange} {segment} exchange token/expiry",
        f"{row.exchange_token}/{expiry}",
    )


def _conflict(f: FyersRow, u: UpstoxRow) -> str | None:
    """Why a linked pair cannot be the same instrument, or None when it can."""
    problems: list[str] = []
    if f.instrument_type != u.instrument_type:
        problems.append(f"instrument type {u.instrument_type} vs {f.instrument_type}")
    elif f.instrument_type is InstrumentType.OPT:
        if f.option_type != u.option_type:
            problems.append(f"option type {u.option_type} vs {f.option_type}")
        if f.strike is not None and u.strike is not None and f.strike != u.strike:
            problems.append(f"strike {format_strike(u.strike)} vs {format_strike(f.strike)}")
    if not problems:
        return None
    return (
        f"conflicts with FYERS {f.symbol} at {f.source} ({'; '.join(problems)}, "
        "Upstox vs FYERS); kept the FYERS row"
    )


def _merge(f: _Accepted[FyersRow] | None, u: _Accepted[UpstoxRow] | None) -> InstrumentRecord:
    """One record from a FYERS row, an Upstox row or a linked pair (FYERS preferred)."""
    fr = f.row if f is not None else None
    ur = u.row if u is not None else None
    # Descriptive fields come from the preferred side, and so does the canonical key (it is
    # built from those same fields); the other side only fills what the preferred one lacks.
    preferred: _Accepted[FyersRow] | _Accepted[UpstoxRow] | None = f if f is not None else u
    if preferred is None:  # pragma: no cover - callers always pass at least one side
        raise ValueError("nothing to merge")
    base = preferred.row
    other = ur if fr is not None else None

    def pick(attr: str) -> str:
        value: str = getattr(base, attr)
        return value or (getattr(other, attr) if other is not None else "")

    return InstrumentRecord(
        key=preferred.key,
        exchange=base.exchange,
        segment=base.segment,
        instrument_type=base.instrument_type,
        name=pick("name"),
        isin=pick("isin"),
        exchange_token=pick("exchange_token"),
        underlying=pick("underlying"),
        tick_size=base.tick_size,
        lot_size=base.lot_size,
        expiry=base.expiry,
        strike=base.strike,
        option_type=base.option_type,
        fyers_symbol=fr.symbol if fr is not None else "",
        fyers_token=fr.fytoken if fr is not None else "",
        upstox_key=ur.instrument_key if ur is not None else "",
        upstox_trading_symbol=ur.trading_symbol if ur is not None else "",
        sources=[r.source for r in (fr, ur) if r is not None],
    )
