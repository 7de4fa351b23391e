"""Idempotent first-run setup of the embedded default (run by scripts/run.sh)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from feeds.management.commands.import_instruments import import_master_files, sample_master_files
from feeds.models import Instrument
from feeds.services import instruments_enable_starter_set, provider_accounts_ensure_defaults
from monitoring.services import operator_ensure, schedules_ensure


class Command(BaseCommand):
    help = (
        "Prepare a new installation: default provider accounts (the local simulators), the "
        "sample instruments and a starter watchlist when the database has none, the periodic "
        "tasks (Celery beat) that are missing, and an admin user with a one-time password "
        "when there is no superuser. Safe to run every start."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--admin-username", default="admin")
        parser.add_argument("--no-admin", action="store_true", help="Do not create an admin user.")

    def handle(self, *args: Any, **options: Any) -> None:
        for account in provider_accounts_ensure_defaults():
            self.stdout.write(
                f"Created provider account {account} (token from ${account.token_env})"
            )

        if not Instrument.objects.exists():
            fyers_files, upstox_files = sample_master_files()
            summary = import_master_files(fyers_files=fyers_files, upstox_files=upstox_files)
            unmatched = sum(summary.unmatched.values())
            self.stdout.write(
                f"Imported sample instruments: created {summary.created}, unmatched {unmatched}, "
                f"rejected {len(summary.rejected)}"
            )
            enabled = instruments_enable_starter_set()
            self.stdout.write(f"Enabled a starter watchlist of {enabled} instruments")

        for name in schedules_ensure():
            self.stdout.write(f"Scheduled periodic task: {name}")

        if not options["no_admin"]:
            password = operator_ensure(username=options["admin_username"])
            if password:
                self.stdout.write(
                    self.style.WARNING(
                        f"Admin user '{options['admin_username']}' created. One-time password: "
                        f"{password}\n  (shown once; change it in the admin, or reset it with "
                        f"`python manage.py changepassword {options['admin_username']}`)"
                    )
                )
