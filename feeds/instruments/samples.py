"""Deterministic generator of small, made-up instrument masters in the providers' real formats.

``python -m feeds.instruments.samples [OUT_DIR]`` rewrites ``sample_data/`` (or OUT_DIR):

* ``fyers/NSE_CM.csv``, ``fyers/NSE_FO.csv``, ``fyers/BSE_CM.csv`` - FYERS symbol masters
  (providers/FYERS.md §3.7: no header, 21 columns);
* ``upstox/complete.json.gz`` - the Upstox instrument master (providers/UPSTOX.md §2.2).

Companies, ISINs and tokens are invented (apart from SBIN and RELIANCE, which the provider
references use), but every field is shaped like the real thing. Everything derives from a
fixed seed and fixed dates, so the output is byte-identical on every run.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

SEED = 20261120
DEFAULT_DIR = Path(__file__).resolve().parent / "sample_data"
LAST_UPDATE = "2026-11-20"  # column 7 of the FYERS files: fixed, not today
SESSION = "0915-1530|1815-1915:"
RESERVED = ("None", "None", "None")
IST = timezone(timedelta(hours=5, minutes=30), "IST")
EXPIRY_TIME = time(15, 30)  # contracts expire at the close, 15:30 IST
EXPIRIES = (date(2026, 12, 29), date(2027, 1, 26), date(2027, 2, 23))
# Not strftime("%b"): that follows the C library's locale.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

EQUITY_COUNT = 2100  # NSE equities, SBIN and RELIANCE included
BE_COUNT = 10
FYERS_ONLY_EQUITIES = 8
UPSTOX_ONLY_EQUITIES = 8
STOCK_FUTURE_UNDERLYINGS = 12  # SBIN, RELIANCE and ten made-up companies

FYERS_FILES = ("fyers/NSE_CM.csv", "fyers/NSE_FO.csv", "fyers/BSE_CM.csv")
UPSTOX_FILE = "upstox/complete.json.gz"

# FYERS exchange instrument types (column 2) as NSE numbers them.
_FYERS_EQUITY, _FYERS_INDEX = "0", "10"
_FYERS_FUTIDX, _FYERS_FUTSTK, _FYERS_OPTIDX = "11", "13", "14"

_PREFIXES = (
    "Shree", "Sri", "New", "Bharat", "Hind", "United", "National", "Eastern", "Western",
    "Southern", "Indo", "Asian", "Royal", "Navin", "Pragati", "Jai", "Maha", "Param",
)  # fmt: skip
_FIRSTS = (
    "Aravali", "Sahyadri", "Vindhya", "Kaveri", "Narmada", "Godavari", "Tapti", "Chambal",
    "Himgiri", "Konark", "Deccan", "Malabar", "Coromandel", "Satpura", "Nilgiri", "Ajanta",
    "Ellora", "Kailash", "Garuda", "Surya", "Chandra", "Agni", "Varuna", "Prithvi", "Akash",
    "Shakti", "Vijay", "Jayant", "Amar", "Anand", "Sagar", "Unnati", "Samrat", "Sunrise",
    "Lotus", "Peacock", "Banyan", "Tulsi", "Saffron", "Emerald", "Sapphire", "Pearl",
    "Crystal", "Orient", "Apex", "Zenith", "Pinnacle", "Summit", "Horizon", "Vertex", "Vista",
    "Meridian", "Trident", "Kohinoor", "Everest", "Kanchan", "Mandovi", "Sabari", "Periyar",
    "Teesta", "Sutlej", "Ravi", "Jhelum", "Mahanadi", "Tungabhadra", "Krishna", "Yamuna",
    "Betwa", "Gomti", "Sarayu", "Kosi", "Sharda", "Indrayani", "Bhima", "Hampi", "Kalinga",
    "Magadh", "Avanti", "Kosala", "Vidarbha", "Saurashtra", "Kutch", "Marwar", "Mewar",
    "Bundel", "Doaba", "Konkan", "Mysore", "Travancore", "Nalanda", "Taxila", "Ujjain",
)  # fmt: skip
_SECTORS = {
    "Cement": "CEM", "Steel": "STL", "Textiles": "TEX", "Pharma": "PHAR", "Chemicals": "CHEM",
    "Finance": "FIN", "Power": "PWR", "Infra": "INFRA", "Motors": "MOT", "Foods": "FOOD",
    "Agro": "AGRO", "Paper": "PAPR", "Polymers": "POLY", "Logistics": "LOG", "Realty": "RLTY",
    "Software": "SOFT", "Technologies": "TECH", "Electricals": "ELEC", "Engineering": "ENG",
    "Fertilisers": "FERT", "Sugar": "SUGR", "Tea": "TEA", "Breweries": "BREW", "Hotels": "HOTL",
    "Healthcare": "HLTH", "Biotech": "BIO", "Capital": "CAP", "Ceramics": "CERA",
    "Glass": "GLAS", "Tyres": "TYRE", "Auto Components": "AUTO", "Castings": "CAST",
    "Forgings": "FORG", "Cables": "CABL", "Pipes": "PIPE", "Spinning Mills": "SPIN",
    "Gas": "GAS", "Petrochem": "PETRO", "Minerals": "MIN", "Shipping": "SHIP",
    "Airways": "AIR", "Media": "MEDIA", "Industries": "IND", "Enterprises": "ENT",
    "Ventures": "VENT", "Housing Finance": "HFL", "Dairy": "DAIRY", "Solar": "SOLAR",
    "Batteries": "BATT", "Pumps": "PUMP", "Bearings": "BRG", "Paints": "PAINT",
    "Jewellers": "JEWEL", "Retail": "RETL", "Exports": "EXP", "Spirits": "SPRT",
    "Seeds": "SEED", "Laboratories": "LABS", "Organics": "ORG", "Alloys": "ALLOY",
}  # fmt: skip
_SUFFIXES = ("Ltd", "Ltd", "Ltd", "Ltd", "Limited", "India Ltd")
# Names the made-up symbols must not take.
_RESERVED_SYMBOLS = {"SBIN", "RELIANCE", "NIFTY", "BANKNIFTY", "FINNIFTY", "SENSEX", "BANKEX"}


@dataclass(frozen=True, slots=True)
class _Equity:
    symbol: str
    name: str  # uppercase, as both masters print company names
    short_name: str
    isin: str
    token: int
    price: Decimal  # made up; only decides the tick size and lot size
    series: str = "EQ"
    listed_by: str = "both"  # "both", "fyers" or "upstox"

    @property
    def tick(self) -> Decimal:
        return Decimal("0.01") if self.price < 250 else Decimal("0.05")

    @property
    def fytoken(self) -> str:
        return f"1010000000{self.token}"


@dataclass(frozen=True, slots=True)
class _Index:
    exchange: str
    fyers_name: str  # the FYERS ticker without "-INDEX"
    name: str  # as Upstox spells it; FYERS column 1 carries the same
    token: int
    trading_symbol: str  # Upstox

    @property
    def fytoken(self) -> str:
        return ("1010" if self.exchange == "NSE" else "1210") + f"000000{self.token}"


_INDICES = (
    _Index("NSE", "NIFTY50", "Nifty 50", 26000, "NIFTY"),
    _Index("NSE", "NIFTYBANK", "Nifty Bank", 26009, "BANKNIFTY"),
    _Index("NSE", "FINNIFTY", "Nifty Fin Service", 26037, "FINNIFTY"),
    _Index("NSE", "INDIAVIX", "India VIX", 26017, "INDIA VIX"),
    _Index("NSE", "NIFTYIT", "Nifty IT", 26008, "NIFTYIT"),
    _Index("NSE", "NIFTYNXT50", "Nifty Next 50", 26013, "NIFTYNXT50"),
    _Index("NSE", "NIFTYMIDCAP50", "Nifty Midcap 50", 26014, "NIFTYMCAP50"),
    _Index("NSE", "NIFTYAUTO", "Nifty Auto", 26029, "NIFTYAUTO"),
    _Index("NSE", "NIFTYPHARMA", "Nifty Pharma", 26030, "NIFTYPHARMA"),
    _Index("NSE", "NIFTYFMCG", "Nifty FMCG", 26021, "NIFTYFMCG"),
    _Index("NSE", "NIFTYMETAL", "Nifty Metal", 26031, "NIFTYMETAL"),
    _Index("BSE", "SENSEX", "SENSEX", 1, "SENSEX"),
    _Index("BSE", "BANKEX", "BANKEX", 12, "BANKEX"),
    _Index("BSE", "BSE100", "BSE 100", 22, "BSE100"),
)


@dataclass(frozen=True, slots=True)
class _IndexOptions:
    underlying: str
    index: _Index
    lot: int
    freeze: int
    strikes: range
    expiries: Sequence[date]


def _index(fyers_name: str) -> _Index:
    return next(i for i in _INDICES if i.fyers_name == fyers_name)


_INDEX_DERIVATIVES = (
    _IndexOptions("NIFTY", _index("NIFTY50"), 75, 1800, range(23000, 25001, 50), EXPIRIES[:2]),
    _IndexOptions(
        "BANKNIFTY", _index("NIFTYBANK"), 35, 600, range(50000, 53001, 100), EXPIRIES[:1]
    ),
    _IndexOptions("FINNIFTY", _index("FINNIFTY"), 65, 1800, range(22500, 23501, 50), EXPIRIES[:1]),
)


@dataclass(frozen=True, slots=True)
class _Derivative:
    underlying: str
    expiry: date
    token: int
    kind: str  # "FUT", "CE" or "PE"
    strike: int | None
    lot: int
    freeze: int
    upstox_name: str
    underlying_key: str  # Upstox
    underlying_type: str  # Upstox: "INDEX" or "EQUITY"
    underlying_token: int
    underlying_fytoken: str
    fyers_type: str

    @property
    def fytoken(self) -> str:
        return f"1011{self.expiry:%y%m%d}{self.token}"

    @property
    def expiry_epoch(self) -> int:
        return int(datetime.combine(self.expiry, EXPIRY_TIME, tzinfo=IST).timestamp())


@dataclass(frozen=True, slots=True)
class SampleSummary:
    equities: int
    be_equities: int
    nse_indices: int
    bse_indices: int
    index_futures: int
    stock_futures: int
    options: int
    fyers_only: int
    upstox_only: int

    @property
    def futures(self) -> int:
        return self.index_futures + self.stock_futures

    @property
    def derivatives(self) -> int:
        return self.futures + self.options

    def line(self, where: str, size: int) -> str:
        return (
            f"wrote {where}: {self.equities} NSE equities ({self.be_equities} BE; "
            f"{self.fyers_only} FYERS-only, {self.upstox_only} Upstox-only), "
            f"{self.nse_indices} NSE + {self.bse_indices} BSE indices, "
            f"{self.futures} futures ({self.stock_futures} on stocks), {self.options} options; "
            f"{size // 1024} KB"
        )


def isin_check_digit(body: str) -> str:
    """ISIN check digit for the first 11 characters: Luhn over the letter-expanded digits."""
    digits = "".join(str(int(ch, 36)) for ch in body)  # A=10 ... Z=35
    total = 0
    # The digit next to the (future) check digit is doubled, then every second one leftwards.
    for position, ch in enumerate(reversed(digits)):
        value = int(ch) * (2 if position % 2 == 0 else 1)
        total += value // 10 + value % 10
    return str((10 - total % 10) % 10)


def _make_isin(issuer: str, serial: str) -> str:
    body = f"INE{issuer}01{serial}"  # INE + issuer code + "01" (equity shares) + serial
    return body + isin_check_digit(body)


def _make_symbol(rng: random.Random, prefix: str, first: str, sector: str, taken: set[str]) -> str:
    word = first.upper()
    abbr = _SECTORS[sector]
    initial = prefix[:1].upper()
    candidates = [
        (word + abbr)[:10],
        word[:6] + abbr[:4],
        initial + word[:5] + abbr[:4],
        word[:4] + abbr[:3] + initial,
        word[:8],
    ]
    for candidate in candidates:
        if candidate not in taken and candidate not in _RESERVED_SYMBOLS:
            return candidate
    while True:  # NSE symbols may carry digits (e.g. "3MINDIA")
        candidate = f"{word[:6]}{abbr[:2]}{rng.randrange(10, 100)}"
        if candidate not in taken:
            return candidate


def _equities(rng: random.Random) -> list[_Equity]:
    made: list[_Equity] = [
        _Equity("SBIN", "STATE BANK OF INDIA", "State Bank of India", "INE062A01020", 3045,
                Decimal("812.40")),
        _Equity("RELIANCE", "RELIANCE INDUSTRIES LTD", "Reliance Industries", "INE002A01018",
                2885, Decimal("1451.10")),
    ]  # fmt: skip
    symbols = {e.symbol for e in made}
    names = {e.name for e in made}
    issuers = {"062A", "002A"}
    tokens = rng.sample([t for t in range(10, 25000) if t not in (3045, 2885)], EQUITY_COUNT)
    sector_names = sorted(_SECTORS)
    while len(made) < EQUITY_COUNT:
        prefix = rng.choice(_PREFIXES) if rng.random() < 0.25 else ""
        first = rng.choice(_FIRSTS)
        sector = rng.choice(sector_names)
        suffix = rng.choice(_SUFFIXES)
        short = " ".join(w for w in (prefix, first, sector) if w)
        name = f"{short} {suffix}".upper()
        if name in names:
            continue
        symbol = _make_symbol(rng, prefix, first, sector, symbols)
        issuer = f"{rng.randrange(1000):03d}{rng.choice('ABCDEFGHJKLMNPQRSTUVWXYZ')}"
        if issuer in issuers:
            continue
        serial = rng.choice(("01", "01", "01", "02", "10", "13", "15", "20", "24"))
        # Log-uniform between Rs 8 and Rs 6,000: many small caps, few heavyweights.
        price = Decimal(f"{math.exp(rng.uniform(math.log(8), math.log(6000))):.2f}")
        made.append(
            _Equity(symbol, name, short, _make_isin(issuer, serial), tokens[len(made)], price)
        )
        symbols.add(symbol)
        names.add(name)
        issuers.add(issuer)

    # Real-looking oddities: NSE symbols with '-' and '&' (cf. BAJAJ-AUTO, M&M).
    hyphen = next(i for i, e in enumerate(made) if e.short_name.endswith(" Motors"))
    first = made[hyphen].short_name.split()[-2].upper()
    made[hyphen] = replace(made[hyphen], symbol=f"{first[:6]}-AUTO")
    ampersand = next(
        i for i, e in enumerate(made) if e.short_name.startswith("Royal ") and i != hyphen
    )
    words = made[ampersand].short_name.split()
    sector = " ".join(words[2:])
    made[ampersand] = replace(
        made[ampersand],
        symbol=f"R&{words[1][0].upper()}{_SECTORS[sector]}",
        name=made[ampersand].name.replace("ROYAL ", "ROYAL & ", 1),
        short_name=made[ampersand].short_name.replace("Royal ", "Royal & ", 1),
    )
    assert len({e.symbol for e in made}) == len(made), "renamed symbols collide"

    # Series BE and one-sided listings, on distinct made-up companies.
    chosen = rng.sample(range(2, len(made)), BE_COUNT + FYERS_ONLY_EQUITIES + UPSTOX_ONLY_EQUITIES)
    for n, position in enumerate(chosen):
        if n < BE_COUNT:
            made[position] = replace(made[position], series="BE")
        elif n < BE_COUNT + FYERS_ONLY_EQUITIES:
            made[position] = replace(made[position], listed_by="fyers")
        else:
            made[position] = replace(made[position], listed_by="upstox")
    return sorted(made, key=lambda e: e.symbol)


def _derivatives(rng: random.Random, equities: list[_Equity]) -> list[_Derivative]:
    out: list[_Derivative] = []
    token = 35000

    def next_token() -> int:
        nonlocal token
        token += rng.randint(1, 3)  # gaps, as in real token allocation
        return token

    for spec in _INDEX_DERIVATIVES:
        common = {
            "underlying": spec.underlying,
            "lot": spec.lot,
            "freeze": spec.freeze,
            "upstox_name": spec.underlying,
            "underlying_key": f"NSE_INDEX|{spec.index.name}",
            "underlying_type": "INDEX",
            "underlying_token": spec.index.token,
            "underlying_fytoken": spec.index.fytoken,
        }
        for expiry in EXPIRIES:
            out.append(
                _Derivative(expiry=expiry, token=next_token(), kind="FUT", strike=None,
                            fyers_type=_FYERS_FUTIDX, **common)
            )  # fmt: skip
        for expiry in spec.expiries:
            for strike in spec.strikes:
                for kind in ("CE", "PE"):
                    out.append(
                        _Derivative(expiry=expiry, token=next_token(), kind=kind, strike=strike,
                                    fyers_type=_FYERS_OPTIDX, **common)
                    )  # fmt: skip

    by_symbol = {e.symbol: e for e in equities}
    pool = sorted(
        e.symbol
        for e in equities
        # Stock futures exist only for liquid, larger companies.
        if e.listed_by == "both"
        and e.series == "EQ"
        and e.price > 500
        and e.symbol not in ("SBIN", "RELIANCE")
    )
    stocks = ["SBIN", "RELIANCE", *rng.sample(pool, STOCK_FUTURE_UNDERLYINGS - 2)]
    fixed_lots = {"SBIN": 750, "RELIANCE": 500}
    for symbol in stocks:
        equity = by_symbol[symbol]
        # About Rs 7.5 lakh a contract, rounded to 25s, as NSE sizes stock lots.
        lot = fixed_lots.get(symbol) or max(25, round(750000 / float(equity.price) / 25) * 25)
        for expiry in EXPIRIES:
            out.append(
                _Derivative(
                    underlying=symbol, expiry=expiry, token=next_token(), kind="FUT",
                    strike=None, lot=lot, freeze=lot * 20, upstox_name=equity.name,
                    underlying_key=f"NSE_EQ|{equity.isin}", underlying_type="EQUITY",
                    underlying_token=equity.token, underlying_fytoken=equity.fytoken,
                    fyers_type=_FYERS_FUTSTK,
                )
            )  # fmt: skip
    return out


def _fyers_row(*cells: object) -> list[str]:
    return [str(c) for c in cells]


def _fyers_equity(e: _Equity) -> list[str]:
    return _fyers_row(
        e.fytoken, e.name, _FYERS_EQUITY, 1, e.tick, e.isin, SESSION, LAST_UPDATE, "",
        f"NSE:{e.symbol}-{e.series}", 10, 10, e.token, e.symbol, e.token, "-1.0", "XX",
        e.fytoken, *RESERVED,
    )  # fmt: skip


def _fyers_index(i: _Index) -> list[str]:
    exchange_code = 10 if i.exchange == "NSE" else 12
    return _fyers_row(
        i.fytoken, i.name, _FYERS_INDEX, 1, "0.05", "", SESSION, LAST_UPDATE, "",
        f"{i.exchange}:{i.fyers_name}-INDEX", exchange_code, 10, i.token, i.fyers_name, i.token,
        "-1.0", "XX", i.fytoken, *RESERVED,
    )  # fmt: skip


def _fyers_derivative(d: _Derivative) -> list[str]:
    mon = _MONTHS[d.expiry.month - 1]
    month = f"{d.expiry:%y}{mon.upper()}"  # monthly convention: NIFTY26DEC...
    when = f"{d.expiry.day} {mon} {d.expiry:%y}"
    if d.kind == "FUT":
        ticker, details, strike, option = f"NSE:{d.underlying}{month}FUT", "FUT", "-1.0", "XX"
    else:
        ticker = f"NSE:{d.underlying}{month}{d.strike}{d.kind}"
        details, strike, option = f"{d.strike} {d.kind}", f"{d.strike}.0", d.kind
    return _fyers_row(
        d.fytoken, f"{d.underlying} {when} {details}", d.fyers_type, d.lot, "0.05", "", SESSION,
        LAST_UPDATE, d.expiry_epoch, ticker, 10, 11, d.token, d.underlying, d.underlying_token,
        strike, option, d.underlying_fytoken, *RESERVED,
    )  # fmt: skip


def _upstox_equity(e: _Equity) -> dict[str, Any]:
    return {
        "segment": "NSE_EQ",
        "name": e.name,
        "exchange": "NSE",
        "isin": e.isin,
        "instrument_type": e.series,
        "instrument_key": f"NSE_EQ|{e.isin}",
        "lot_size": 1,
        "freeze_quantity": 100000.0,
        "exchange_token": str(e.token),
        "tick_size": float(e.tick * 100),  # paise
        "trading_symbol": e.symbol,
        "short_name": e.short_name,
        "security_type": "NORMAL",
        "qty_multiplier": 1.0,
    }


def _upstox_index(i: _Index) -> dict[str, Any]:
    return {
        "segment": f"{i.exchange}_INDEX",
        "name": i.name,
        "exchange": i.exchange,
        "instrument_type": "INDEX",
        "instrument_key": f"{i.exchange}_INDEX|{i.name}",
        "exchange_token": str(i.token),
        "trading_symbol": i.trading_symbol,
    }


def _upstox_derivative(d: _Derivative) -> dict[str, Any]:
    when = f"{d.expiry:%d} {_MONTHS[d.expiry.month - 1].upper()} {d.expiry:%y}"
    if d.kind == "FUT":
        trading_symbol = f"{d.underlying} FUT {when}"
    else:
        trading_symbol = f"{d.underlying} {d.strike} {d.kind} {when}"
    return {
        "weekly": False,
        "segment": "NSE_FO",
        "name": d.upstox_name,
        "exchange": "NSE",
        "expiry": d.expiry_epoch * 1000,
        "instrument_type": d.kind,
        "underlying_symbol": d.underlying,
        "instrument_key": f"NSE_FO|{d.token}",
        "lot_size": d.lot,
        "freeze_quantity": float(d.freeze),
        "exchange_token": str(d.token),
        "minimum_lot": d.lot,
        "underlying_key": d.underlying_key,
        "tick_size": 5.0,
        "underlying_type": d.underlying_type,
        "trading_symbol": trading_symbol,
        "strike_price": float(d.strike or 0),
    }


def _csv_bytes(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


def build_samples(seed: int = SEED) -> tuple[dict[str, bytes], SampleSummary]:
    """The sample files as {relative path: content}, and what they hold."""
    rng = random.Random(seed)
    equities = _equities(rng)
    derivatives = _derivatives(rng, equities)
    nse_indices = [i for i in _INDICES if i.exchange == "NSE"]
    bse_indices = [i for i in _INDICES if i.exchange == "BSE"]

    nse_cm = [_fyers_equity(e) for e in equities if e.listed_by != "upstox"]
    nse_cm += [_fyers_index(i) for i in nse_indices]
    upstox: list[dict[str, Any]] = [_upstox_equity(e) for e in equities if e.listed_by != "fyers"]
    upstox += [_upstox_index(i) for i in _INDICES]
    upstox += [_upstox_derivative(d) for d in derivatives]

    payload = json.dumps(upstox, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    files = {
        "fyers/NSE_CM.csv": _csv_bytes(nse_cm),
        "fyers/NSE_FO.csv": _csv_bytes([_fyers_derivative(d) for d in derivatives]),
        "fyers/BSE_CM.csv": _csv_bytes([_fyers_index(i) for i in bse_indices]),
        # mtime=0 keeps the gzip header, and so the file, reproducible.
        UPSTOX_FILE: gzip.compress(payload, compresslevel=9, mtime=0),
    }
    summary = SampleSummary(
        equities=len(equities),
        be_equities=sum(e.series == "BE" for e in equities),
        nse_indices=len(nse_indices),
        bse_indices=len(bse_indices),
        index_futures=sum(d.kind == "FUT" and d.underlying_type == "INDEX" for d in derivatives),
        stock_futures=sum(d.kind == "FUT" and d.underlying_type == "EQUITY" for d in derivatives),
        options=sum(d.kind != "FUT" for d in derivatives),
        fyers_only=sum(e.listed_by == "fyers" for e in equities),
        upstox_only=sum(e.listed_by == "upstox" for e in equities),
    )
    return files, summary


def write_samples(out_dir: str | Path = DEFAULT_DIR, *, seed: int = SEED) -> SampleSummary:
    files, summary = build_samples(seed)
    root = Path(out_dir)
    for relative, content in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 1 or any(a.startswith("-") for a in args):
        print("usage: python -m feeds.instruments.samples [OUT_DIR]", file=sys.stderr)
        return 2
    out_dir = Path(args[0]) if args else DEFAULT_DIR
    summary = write_samples(out_dir)
    size = sum((out_dir / name).stat().st_size for name in (*FYERS_FILES, UPSTOX_FILE))
    print(summary.line(str(out_dir), size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
