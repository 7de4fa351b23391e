"""`manage.py import_instruments` on the shipped samples and on broken or changed masters."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from feeds.management.commands.import_instruments import sample_master_files
from feeds.models import Instrument, Tier

pytestmark = pytest.mark.django_db

SUMMARY = re.compile(
    r"created (?P<created>\d+), updated (?P<updated>\d+), unchanged (?P<unchanged>\d+), "
    r"unmatched (?P<unmatched>\d+)(?: \((?P<per>[^)]*)\))?, rejected (?P<rejected>\d+)"
)


def run_import(*args: str) -> tuple[dict[str, int], str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_instruments", *args, stdout=out, stderr=err)
    match = SUMMARY.search(out.getvalue())
    assert match, out.getvalue()
    counts = {k: int(v) for k, v in match.groupdict().items() if k != "per"}
    return counts, out.getvalue(), err.getvalue()


def sample_copy(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    fyers, upstox = sample_master_files()
    copies = []
    for group, sub in ((fyers, "fyers"), (upstox, "upstox")):
        (tmp_path / sub).mkdir()
        copies.append([Path(shutil.copy(p, tmp_path / sub / p.name)) for p in group])
    return copies[0], copies[1]


def file_args(fyers: list[Path], upstox: list[Path]) -> list[str]:
    return ["--fyers", *map(str, fyers), "--upstox", *map(str, upstox)]


def test_sample_import_creates_linked_instruments():
    counts, out, _ = run_import("--sample")

    assert counts["created"] == Instrument.objects.count()
    assert counts["rejected"] == 0
    assert (counts["updated"], counts["unchanged"]) == (0, 0)
    assert "fyers only" in out and "upstox only" in out  # the samples carry one-sided rows
    equities = Instrument.objects.filter(exchange="NSE", instrument_type="EQ")
    assert equities.count() >= 2000
    assert Instrument.objects.filter(instrument_type__in=["FUT", "OPT"]).count() >= 300
    for key in ["NSE:NIFTY50", "NSE:NIFTYBANK", "NSE:INDIAVIX", "BSE:SENSEX"]:
        index = Instrument.objects.get(key=key)
        assert index.instrument_type == "INDEX"
        assert index.fyers_symbol.endswith("-INDEX") and index.upstox_key, key

    sbin = Instrument.objects.get(key="NSE:SBIN")
    assert (sbin.isin, sbin.fyers_symbol, sbin.fyers_token, sbin.upstox_key) == (
        "INE062A01020",
        "NSE:SBIN-EQ",
        "10100000003045",
        "NSE_EQ|INE062A01020",
    )
    option = Instrument.objects.filter(instrument_type="OPT", underlying="NIFTY").first()
    assert option.fyers_token.startswith("1011") and option.upstox_key.startswith("NSE_FO|")
    assert (
        option.key
        == f"NSE:NIFTY-{option.expiry:%Y%m%d}-{option.strike.normalize():f}-{option.option_type}"
    )
    assert option.fyers_token[10:] == option.upstox_key.split("|")[1] == option.exchange_token
    one_sided = Instrument.objects.filter(fyers_token="") | Instrument.objects.filter(upstox_key="")
    assert counts["unmatched"] == one_sided.count() > 0


def test_second_import_changes_nothing():
    first, _, _ = run_import("--sample")
    stamps = dict(Instrument.objects.values_list("key", "updated_at"))

    again, _, _ = run_import("--sample")

    assert (again["created"], again["updated"]) == (0, 0)
    assert again["unchanged"] == first["created"]
    assert dict(Instrument.objects.values_list("key", "updated_at")) == stamps


def test_reimport_after_master_update_changes_only_what_changed(tmp_path):
    fyers, upstox = sample_copy(tmp_path)
    run_import(*file_args(fyers, upstox))
    Instrument.objects.filter(key="NSE:SBIN").update(tier=Tier.CRITICAL, enabled=True, priority=99)
    stamps = dict(Instrument.objects.values_list("key", "updated_at"))

    nse_cm = next(p for p in fyers if p.name == "NSE_CM.csv")
    lines = nse_cm.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if ",NSE:SBIN-EQ," in line)
    cells = lines[index].split(",")
    cells[1] = "STATE BANK OF INDIA (RENAMED)"
    lines[index] = ",".join(cells)
    new = cells.copy()
    new[0], new[1], new[5] = "10100000099991", "NEWCO INDUSTRIES LTD", "INE999Z01016"
    new[9], new[12], new[13], new[14] = "NSE:NEWCO-EQ", "99991", "NEWCO", "99991"
    new[17] = "10100000099991"
    lines.append(",".join(new))
    nse_cm.write_text("\n".join(lines) + "\n")

    counts, out, _ = run_import(*file_args(fyers, upstox))

    assert (counts["created"], counts["updated"], counts["rejected"]) == (1, 1, 0), out
    sbin = Instrument.objects.get(key="NSE:SBIN")
    assert sbin.name == "STATE BANK OF INDIA (RENAMED)"
    # Operator settings survive a re-import.
    assert (sbin.tier, sbin.enabled, sbin.priority) == (Tier.CRITICAL, True, 99)
    assert Instrument.objects.get(key="NSE:NEWCO").fyers_symbol == "NSE:NEWCO-EQ"
    unchanged = {k: v for k, v in Instrument.objects.values_list("key", "updated_at")}
    moved = {k for k in stamps if stamps[k] != unchanged[k]}
    assert moved == {"NSE:SBIN"}


def test_broken_rows_are_reported_with_file_and_line_and_skipped(tmp_path):
    fyers_sample, upstox_sample = sample_master_files()
    good = [
        line
        for line in next(p for p in fyers_sample if p.name == "NSE_CM.csv")
        .read_text()
        .splitlines()[:3]
    ]
    bad_columns = ",".join(good[0].split(",")[:17])
    unknown_prefix = good[1].replace(good[1].split(",")[0], "19990000001234", 1)
    duplicate = good[2]  # the same fytoken and symbol again
    csv_path = tmp_path / "NSE_CM.csv"
    csv_path.write_text("\n".join([*good, bad_columns, unknown_prefix, duplicate]) + "\n")

    with gzip.open(upstox_sample[0], "rb") as handle:
        elements = json.loads(handle.read())
    good_isins = {line.split(",")[5] for line in good}
    equity = next(e for e in elements if e["segment"] == "NSE_EQ" and e["isin"] not in good_isins)
    json_path = tmp_path / "upstox.json"
    json_path.write_text(json.dumps([equity, {**equity, "segment": "XYZ_EQ"}, dict(equity)]))

    counts, _, err = run_import("--fyers", str(csv_path), "--upstox", str(json_path))

    assert counts["rejected"] == 5
    assert f"{csv_path}:4: expected 21 columns, got 17" in err
    assert f"{csv_path}:5: " in err and "unknown segment prefix '1999'" in err
    assert f"{csv_path}:6: duplicate" in err and f"(first at {csv_path}:3)" in err
    assert f"{json_path}:2: unknown segment 'XYZ_EQ'" in err
    assert f"{json_path}:3: duplicate" in err
    # The good rows are imported: 3 FYERS-only instruments and 1 Upstox-only one.
    assert counts["created"] == Instrument.objects.count() == 4
    assert counts["unmatched"] == 4
    assert Instrument.objects.filter(upstox_key=equity["instrument_key"]).exists()
    for line in good:
        assert Instrument.objects.filter(fyers_token=line.split(",")[0]).exists()


def test_a_file_that_is_not_a_master_writes_nothing(tmp_path):
    run_import("--sample")
    before = Instrument.objects.count()
    broken = tmp_path / "complete.json.gz"
    broken.write_bytes(gzip.compress(b'{"status": "error"}'))
    with pytest.raises(CommandError, match="expected a JSON array"):
        call_command("import_instruments", "--upstox", str(broken), stdout=StringIO())
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_instruments", "--fyers", str(tmp_path / "missing.csv"))
    with pytest.raises(CommandError, match="Nothing to import"):
        call_command("import_instruments")
    assert Instrument.objects.count() == before


def test_dry_run_writes_nothing():
    counts, out, _ = run_import("--sample", "--dry-run")
    assert counts["created"] > 2000
    assert out.startswith("Dry run, nothing written.")
    assert not Instrument.objects.exists()


def test_a_failure_midway_rolls_everything_back(tmp_path, monkeypatch):
    fyers, upstox = sample_copy(tmp_path)
    run_import(*file_args(fyers, upstox))
    names_before = dict(Instrument.objects.values_list("key", "name"))
    nse_cm = next(p for p in fyers if p.name == "NSE_CM.csv")
    text = nse_cm.read_text()
    lines = text.splitlines()
    cells = lines[0].split(",")
    cells[1] = "CHANGED NAME LTD"
    lines[0] = ",".join(cells)
    extra = lines[1].split(",")
    extra[0], extra[9], extra[12], extra[17] = (
        "10100000088881",
        "NSE:XTRA-EQ",
        "88881",
        "10100000088881",
    )
    extra[5] = "INE888X01018"
    nse_cm.write_text("\n".join([*lines, ",".join(extra)]) + "\n")

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(Instrument.objects), "bulk_create", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        call_command("import_instruments", *file_args(fyers, upstox), stdout=StringIO())

    assert dict(Instrument.objects.values_list("key", "name")) == names_before


def upstox_option(token: str, expiry_ms: int, strike: float) -> dict:
    return {
        "weekly": False,
        "segment": "NSE_FO",
        "name": "NIFTY",
        "exchange": "NSE",
        "expiry": expiry_ms,
        "instrument_type": "CE",
        "underlying_symbol": "NIFTY",
        "instrument_key": f"NSE_FO|{token}",
        "lot_size": 75,
        "freeze_quantity": 1800.0,
        "exchange_token": token,
        "minimum_lot": 75,
        "underlying_key": "NSE_INDEX|Nifty 50",
        "tick_size": 5.0,
        "underlying_type": "INDEX",
        "strike_price": strike,
        "trading_symbol": f"NIFTY {strike:.0f} CE",
    }


def test_reused_exchange_token_moves_the_upstox_key_to_the_new_contract(tmp_path):
    old = tmp_path / "old.json"
    new = tmp_path / "new.json"
    # 2026-12-29 and 2027-03-30, 15:30 IST, in epoch ms.
    old.write_text(json.dumps([upstox_option("35001", 1798538400000, 24000)]))
    new.write_text(json.dumps([upstox_option("35001", 1806400800000, 26000)]))
    run_import("--upstox", str(old))

    counts, out, _ = run_import("--upstox", str(new))

    assert counts["created"] == 1
    assert "released identity" in out and "NSE:NIFTY-20261229-24000-CE" in out
    expired = Instrument.objects.get(key="NSE:NIFTY-20261229-24000-CE")
    current = Instrument.objects.get(key="NSE:NIFTY-20270330-26000-CE")
    assert (expired.upstox_key, current.upstox_key) == ("", "NSE_FO|35001")
