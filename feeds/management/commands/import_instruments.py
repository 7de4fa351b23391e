"""Import the FYERS and Upstox instrument masters and link them into canonical instruments."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from feeds.instruments.fyers_master import parse_fyers_csv
from feeds.instruments.linking import link_instruments
from feeds.instruments.records import FyersRow, RowError, UpstoxRow
from feeds.instruments.upstox_master import MasterFileError, parse_upstox_json
from feeds.services import ImportSummary, instruments_import

T = TypeVar("T")
SHOWN_PROBLEMS = 50  # rejected rows listed at normal verbosity; -v 2 lists all


def sample_master_files() -> tuple[list[Path], list[Path]]:
    """The realistic sample masters shipped with the repo (loaded by the embedded default)."""
    root = Path(settings.SAMPLE_MASTERS_DIR)
    return sorted((root / "fyers").glob("*.csv")), sorted((root / "upstox").glob("*.json*"))


class Command(BaseCommand):
    help = (
        "Import FYERS symbol-master CSVs and Upstox instrument JSON(.gz) files, link the same "
        "instrument across both, and upsert idempotently. Malformed rows are reported and "
        "skipped; the database is written in one transaction."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--fyers", nargs="+", default=[], metavar="CSV", type=Path)
        parser.add_argument("--upstox", nargs="+", default=[], metavar="JSON", type=Path)
        parser.add_argument(
            "--sample", action="store_true", help="Import the sample masters shipped in the repo."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Report what would change; write nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        fyers_files: list[Path] = list(options["fyers"])
        upstox_files: list[Path] = list(options["upstox"])
        if options["sample"]:
            sample_fyers, sample_upstox = sample_master_files()
            fyers_files += sample_fyers
            upstox_files += sample_upstox
        if not fyers_files and not upstox_files:
            raise CommandError("Nothing to import: give --fyers/--upstox files, or --sample.")
        for path in (*fyers_files, *upstox_files):
            if not path.is_file():
                raise CommandError(f"{path}: no such file")

        verbosity = options["verbosity"]
        summary = import_master_files(
            fyers_files=fyers_files,
            upstox_files=upstox_files,
            dry_run=options["dry_run"],
            show_progress=verbosity > 0 and sys.stderr.isatty(),
        )
        self._report(summary, dry_run=options["dry_run"], verbosity=verbosity)

    def _report(self, summary: ImportSummary, *, dry_run: bool, verbosity: int) -> None:
        if verbosity == 0:
            return
        prefix = "Dry run, nothing written. Would have: " if dry_run else ""
        unmatched = sum(summary.unmatched.values())
        per_provider = ", ".join(f"{n} {p} only" for p, n in sorted(summary.unmatched.items()))
        self.stdout.write(
            f"{prefix}created {summary.created}, updated {summary.updated}, "
            f"unchanged {summary.unchanged}, unmatched {unmatched}"
            + (f" ({per_provider})" if per_provider else "")
            + f", rejected {len(summary.rejected)}"
        )
        for line in summary.released:
            self.stdout.write(f"  released identity now listed for another instrument: {line}")
        shown = summary.rejected if verbosity > 1 else summary.rejected[:SHOWN_PROBLEMS]
        for error in shown:
            self.stderr.write(f"  rejected {error}")
        if len(shown) < len(summary.rejected):
            self.stderr.write(
                f"  … and {len(summary.rejected) - len(shown)} more (use -v 2 to list all)"
            )


def import_master_files(
    *,
    fyers_files: list[Path],
    upstox_files: list[Path],
    dry_run: bool = False,
    show_progress: bool = False,
) -> ImportSummary:
    """Parse, link and upsert. File-level problems raise CommandError before any write."""
    fyers_rows: list[FyersRow] = []
    upstox_rows: list[UpstoxRow] = []
    rejected: list[RowError] = []
    for path in fyers_files:
        for row in _progress(parse_fyers_csv(path), show_progress, f"FYERS {path.name}"):
            (rejected if isinstance(row, RowError) else fyers_rows).append(row)
    for path in upstox_files:
        try:
            for row in _progress(parse_upstox_json(path), show_progress, f"Upstox {path.name}"):
                (rejected if isinstance(row, RowError) else upstox_rows).append(row)
        except MasterFileError as exc:
            raise CommandError(f"{path}: {exc}") from exc

    linked = link_instruments(fyers_rows=fyers_rows, upstox_rows=upstox_rows)
    linked.rejected[:0] = rejected  # parse errors first, in file order
    return instruments_import(
        linked=linked,
        dry_run=dry_run,
        progress=lambda records: _progress(records, show_progress, "Saving", total=len(records)),
    )


def _progress(
    items: Iterable[T], enabled: bool, label: str, total: int | None = None
) -> Iterable[T]:
    if not enabled:
        return items
    return tqdm(items, desc=label, total=total, unit=" rows", leave=False, dynamic_ncols=True)
