import pytest

from feeds.instruments.fyers_master import parse_fyers_csv
from feeds.instruments.linking import link_instruments
from feeds.instruments.records import RowError
from feeds.instruments.upstox_master import parse_upstox_json
from feeds.providers.simulation.universe import SimInstrument, sim_instrument_from
from mdproject.settings import SAMPLE_MASTERS_DIR


@pytest.fixture(scope="session")
def sample_universe() -> list[SimInstrument]:
    fyers = [
        row
        for path in sorted((SAMPLE_MASTERS_DIR / "fyers").glob("*.csv"))
        for row in parse_fyers_csv(path)
        if not isinstance(row, RowError)
    ]
    upstox = [
        row
        for row in parse_upstox_json(SAMPLE_MASTERS_DIR / "upstox" / "complete.json.gz")
        if not isinstance(row, RowError)
    ]
    linked = link_instruments(fyers_rows=fyers, upstox_rows=upstox)
    return [sim_instrument_from(record) for record in linked.records]
