"""Write paths for instruments and provider accounts.

Admin actions, list edits and commands call these; none of them writes models directly.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from feeds.control import pool_change_notify
from feeds.instruments.records import InstrumentRecord, InstrumentType, LinkResult, RowError
from feeds.models import (
    UPSTOX_DEFAULT_MODE_LIMITS,
    ApiToken,
    Instrument,
    LastTick,
    PlacementIssue,
    PlacementIssueKind,
    PoolAssignment,
    Provider,
    ProviderAccount,
    Tier,
    WatchlistItem,
)
from feeds.pool.distribution import Placement, connection_name

# Fields an import owns. Operator fields (tier, priority, enabled, data_mode) are not here,
# so a re-import never undoes an admin's choices.
MASTER_FIELDS = (
    "exchange",
    "segment",
    "instrument_type",
    "name",
    "isin",
    "exchange_token",
    "underlying",
    "tick_size",
    "lot_size",
    "expiry",
    "strike",
    "option_type",
    "fyers_symbol",
    "fyers_token",
    "upstox_key",
    "upstox_trading_symbol",
)
IDENTITY_FIELDS = ("fyers_symbol", "fyers_token", "upstox_key")
BULK_BATCH = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class ImportSummary:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    unmatched: dict[str, int] = field(default_factory=dict)  # provider -> count
    rejected: list[RowError] = field(default_factory=list)
    released: list[str] = field(default_factory=list)  # "KEY: field 'value'" taken over


def _record_fields(record: InstrumentRecord) -> dict[str, Any]:
    return {
        "exchange": record.exchange.value,
        "segment": record.segment.value,
        "instrument_type": record.instrument_type.value,
        "name": record.name,
        "isin": record.isin,
        "exchange_token": record.exchange_token,
        "underlying": record.underlying,
        "tick_size": record.tick_size,
        "lot_size": record.lot_size,
        "expiry": record.expiry,
        "strike": record.strike,
        "option_type": record.option_type.value if record.option_type else "",
        "fyers_symbol": record.fyers_symbol,
        "fyers_token": record.fyers_token,
        "upstox_key": record.upstox_key,
        "upstox_trading_symbol": record.upstox_trading_symbol,
    }


def instruments_import(
    *,
    linked: LinkResult,
    dry_run: bool = False,
    progress: Callable[[Iterable[InstrumentRecord]], Iterable[InstrumentRecord]] | None = None,
) -> ImportSummary:
    """Upsert linked master records by canonical key, in one transaction.

    Idempotent: a record whose master fields already match is left alone (its
    ``updated_at`` does not move). Instruments missing from the masters are kept, since
    assignments and validation history point at them. A provider identity (fytoken, FYERS
    symbol, Upstox key) that a record claims from another instrument is released from that
    one first; exchanges reuse tokens after expiry.
    """
    summary = ImportSummary(rejected=list(linked.rejected))
    for item in linked.unmatched:
        summary.unmatched[item.provider] = summary.unmatched.get(item.provider, 0) + 1

    with transaction.atomic():
        existing = {inst.key: inst for inst in Instrument.objects.select_for_update()}
        to_create: list[Instrument] = []
        to_update: list[Instrument] = []
        identity_moves: list[Instrument] = []
        records = linked.records if progress is None else progress(linked.records)
        for record in records:
            values = _record_fields(record)
            inst = existing.get(record.key)
            if inst is None:
                to_create.append(Instrument(key=record.key, **values))
                continue
            changed = [name for name, value in values.items() if getattr(inst, name) != value]
            if changed:
                for name in changed:
                    setattr(inst, name, values[name])
                to_update.append(inst)
                if any(name in IDENTITY_FIELDS for name in changed):
                    identity_moves.append(inst)
            else:
                summary.unchanged += 1

        releases = _identity_releases(
            existing=existing, claimed_by={r.key: _record_fields(r) for r in linked.records}
        )
        summary.released = [f"{inst.key}: {name} {value!r}" for inst, name, value in releases]
        summary.created = len(to_create)
        summary.updated = len(to_update)

        for inst, name, _value in releases:
            setattr(inst, name, "")
        released_rows = {id(inst): inst for inst, _n, _v in releases}
        if released_rows:
            Instrument.objects.bulk_update(
                released_rows.values(), IDENTITY_FIELDS, batch_size=BULK_BATCH
            )
        if identity_moves:
            # Blank first, so that identities swapped between updated rows never collide.
            Instrument.objects.bulk_update(
                [_blank_identities(inst) for inst in identity_moves],
                IDENTITY_FIELDS,
                batch_size=BULK_BATCH,
            )
        if to_update:
            now = timezone.now()  # bulk_update skips auto_now
            for inst in to_update:
                inst.updated_at = now
            Instrument.objects.bulk_update(
                to_update, [*MASTER_FIELDS, "updated_at"], batch_size=BULK_BATCH
            )
        if to_create:
            Instrument.objects.bulk_create(to_create, batch_size=BULK_BATCH)
        if dry_run:
            transaction.set_rollback(True)
        elif summary.created or summary.updated:
            pool_change_notify(reason="instrument master imported")
    return summary


def _identity_releases(
    *, existing: dict[str, Instrument], claimed_by: dict[str, dict[str, Any]]
) -> list[tuple[Instrument, str, str]]:
    """Identities held by instruments outside this import but claimed by a record."""
    releases = []
    for name in IDENTITY_FIELDS:
        claims = {values[name]: key for key, values in claimed_by.items() if values[name]}
        for key, inst in existing.items():
            value = getattr(inst, name)
            if key not in claimed_by and value and claims.get(value, key) != key:
                releases.append((inst, name, value))
    return releases


def _blank_identities(inst: Instrument) -> Instrument:
    blank = Instrument(pk=inst.pk)
    for name in IDENTITY_FIELDS:
        setattr(blank, name, "")
    return blank


def instruments_set_tier(*, instrument_ids: Iterable[int], tier: str) -> int:
    """Move instruments to a tier; returns how many changed."""
    if tier not in Tier.values:
        raise ValueError(f"unknown tier {tier!r}")
    changed = (
        Instrument.objects.filter(pk__in=list(instrument_ids))
        .exclude(tier=tier)
        .update(tier=tier, updated_at=timezone.now())
    )
    if changed:
        pool_change_notify(reason=f"{changed} instrument(s) moved to tier {tier}")
    return changed


def instruments_set_enabled(*, instrument_ids: Iterable[int], enabled: bool) -> int:
    """Enable or disable instruments; returns how many changed."""
    changed = (
        Instrument.objects.filter(pk__in=list(instrument_ids))
        .exclude(enabled=enabled)
        .update(enabled=enabled, updated_at=timezone.now())
    )
    if changed:
        state = "enabled" if enabled else "disabled"
        pool_change_notify(reason=f"{changed} instrument(s) {state}")
    return changed


def instrument_update(*, instrument: Instrument, changes: dict[str, Any]) -> Instrument:
    """Apply operator edits (tier, priority, enabled, data mode…) with model validation."""
    for name, value in changes.items():
        setattr(instrument, name, value)
    instrument.full_clean()
    instrument.save(update_fields=[*changes, "updated_at"] if instrument.pk else None)
    return instrument


def provider_account_create(
    *,
    provider: str,
    label: str,
    max_connections: int | None = None,
    max_symbols_per_connection: int | None = None,
    token_env: str | None = None,
    enabled: bool = True,
) -> ProviderAccount:
    """Create an account with the provider's documented defaults for anything not given."""
    if provider == Provider.FYERS:
        defaults = settings.FYERS
        cap = defaults["SYMBOLS_PER_CONNECTION"]
        mode_limits: dict[str, dict[str, int]] = {}
    elif provider == Provider.UPSTOX:
        defaults = settings.UPSTOX
        cap = UPSTOX_DEFAULT_MODE_LIMITS["ltpc"]["individual"]
        mode_limits = {mode: dict(pair) for mode, pair in UPSTOX_DEFAULT_MODE_LIMITS.items()}
    else:
        raise ValueError(f"unknown provider {provider!r}")
    account = ProviderAccount(
        provider=provider,
        label=label,
        enabled=enabled,
        max_connections=max_connections or defaults["MAX_CONNECTIONS"],
        max_symbols_per_connection=max_symbols_per_connection or cap,
        mode_limits=mode_limits,
        token_env=token_env or defaults["TOKEN_ENV"],
    )
    account.full_clean()
    account.save()
    return account


def provider_accounts_ensure_defaults() -> list[ProviderAccount]:
    """One account per provider when none exists yet (the simulators' by default)."""
    created = []
    for provider in Provider.values:
        if not ProviderAccount.objects.filter(provider=provider).exists():
            created.append(provider_account_create(provider=provider, label="primary"))
    return created


# The embedded default's starter watchlist: enough to see every path work on first run.
STARTER_CRITICAL = ("NSE:NIFTY50", "NSE:NIFTYBANK", "BSE:SENSEX")
STARTER_HIGH_FREQUENCY = ("NSE:SBIN", "NSE:RELIANCE")
STARTER_EQUITIES = 150


@transaction.atomic
def instruments_enable_starter_set() -> int:
    """Enable indices, index futures and some equities, with tiers; returns how many.

    Run once after the first sample import so that a new user sees ticks flowing.
    """
    indices = Instrument.objects.filter(instrument_type=InstrumentType.INDEX)
    futures = Instrument.objects.filter(instrument_type=InstrumentType.FUT)
    equities = Instrument.objects.filter(instrument_type=InstrumentType.EQ).order_by("key")
    chosen = (
        set(indices.values_list("pk", flat=True))
        | set(futures.values_list("pk", flat=True))
        | set(equities.values_list("pk", flat=True)[:STARTER_EQUITIES])
        | set(
            Instrument.objects.filter(key__in=STARTER_HIGH_FREQUENCY).values_list("pk", flat=True)
        )
    )
    instruments_set_enabled(instrument_ids=chosen, enabled=True)
    instruments_set_tier(
        instrument_ids=futures.values_list("pk", flat=True), tier=Tier.HIGH_FREQUENCY
    )
    instruments_set_tier(
        instrument_ids=Instrument.objects.filter(key__in=STARTER_HIGH_FREQUENCY).values_list(
            "pk", flat=True
        ),
        tier=Tier.HIGH_FREQUENCY,
    )
    critical = Instrument.objects.filter(key__in=STARTER_CRITICAL)
    instruments_set_tier(instrument_ids=critical.values_list("pk", flat=True), tier=Tier.CRITICAL)
    critical.update(priority=100, updated_at=timezone.now())
    return len(chosen)


@transaction.atomic
def pool_assignments_record(
    *,
    assignment: Mapping[str, tuple[Placement, ...]],
    worker_id: str = "",
    holders: Mapping[str, str] | None = None,
) -> tuple[int, int]:
    """Make ``PoolAssignment`` say what the pool now carries; returns (written, deleted).

    ``holders`` names the worker holding each connection ("provider:account:slot" -> worker
    id); connections missing from it get ``worker_id``. Rows that did not change keep their
    ``since``; a placement that moved gets a new one.
    """
    holders = holders or {}
    accounts = {(a.provider, a.label): a for a in ProviderAccount.objects.all()}
    instruments = dict(Instrument.objects.filter(key__in=list(assignment)).values_list("key", "pk"))
    existing = {
        (row.instrument_id, row.account_id): row
        for row in PoolAssignment.objects.select_related("account")
    }
    now = timezone.now()
    wanted: set[tuple[int, int]] = set()
    to_create, to_update = [], []
    for key, placements in assignment.items():
        instrument_id = instruments.get(key)
        if instrument_id is None:
            continue
        for placement in placements:
            account = accounts.get((placement.conn.provider, placement.conn.account))
            if account is None:
                continue
            conn = placement.conn
            holder = holders.get(connection_name(conn), worker_id)
            ident = (instrument_id, account.pk)
            wanted.add(ident)
            row = existing.get(ident)
            if row is None:
                to_create.append(
                    PoolAssignment(
                        instrument_id=instrument_id, account=account,
                        connection_slot=placement.conn.slot, data_mode=placement.mode,
                        reason=placement.reason, worker_id=holder, since=now,
                    )
                )  # fmt: skip
                continue
            moved = row.connection_slot != placement.conn.slot
            if moved or (row.data_mode, row.reason, row.worker_id) != (
                placement.mode, placement.reason, holder,
            ):  # fmt: skip
                row.connection_slot = placement.conn.slot
                row.data_mode, row.reason, row.worker_id = (
                    placement.mode,
                    placement.reason,
                    holder,
                )
                if moved:
                    row.since = now
                to_update.append(row)
    gone = [row.pk for ident, row in existing.items() if ident not in wanted]
    PoolAssignment.objects.filter(pk__in=gone).delete()
    PoolAssignment.objects.bulk_create(to_create, batch_size=BULK_BATCH)
    PoolAssignment.objects.bulk_update(
        to_update, ["connection_slot", "data_mode", "reason", "worker_id", "since"],
        batch_size=BULK_BATCH,
    )  # fmt: skip
    return len(to_create) + len(to_update), len(gone)


@transaction.atomic
def placement_issues_record(
    *, left_out: Mapping[str, str], notes: Mapping[str, str], worker_id: str = ""
) -> tuple[int, int]:
    """Make ``PlacementIssue`` list the plan's ``left_out`` and ``notes``; returns (written,
    deleted).

    A key in both counts as left out; keys of unknown instruments are ignored. A row whose
    kind did not change keeps its ``since``, even when the reason text did.
    """

    wanted = {key: (PlacementIssueKind.ONE_PROVIDER, why) for key, why in notes.items()}
    wanted.update({key: (PlacementIssueKind.LEFT_OUT, why) for key, why in left_out.items()})
    instruments = dict(Instrument.objects.filter(key__in=list(wanted)).values_list("key", "pk"))
    existing = {row.instrument_id: row for row in PlacementIssue.objects.all()}
    max_reason = PlacementIssue._meta.get_field("reason").max_length
    now = timezone.now()
    kept: set[int] = set()
    to_create, to_update = [], []
    for key, (kind, why) in wanted.items():
        instrument_id = instruments.get(key)
        if instrument_id is None:
            continue
        kept.add(instrument_id)
        reason = why[:max_reason]
        row = existing.get(instrument_id)
        if row is None:
            to_create.append(
                PlacementIssue(
                    instrument_id=instrument_id, kind=kind, reason=reason,
                    worker_id=worker_id, since=now,
                )
            )  # fmt: skip
        elif (row.kind, row.reason, row.worker_id) != (kind, reason, worker_id):
            if row.kind != kind:
                row.since = now
            row.kind, row.reason, row.worker_id = kind, reason, worker_id
            to_update.append(row)
    gone = [row.pk for instrument_id, row in existing.items() if instrument_id not in kept]
    PlacementIssue.objects.filter(pk__in=gone).delete()
    PlacementIssue.objects.bulk_create(to_create, batch_size=BULK_BATCH)
    PlacementIssue.objects.bulk_update(
        to_update, ["kind", "reason", "worker_id", "since"], batch_size=BULK_BATCH
    )
    return len(to_create) + len(to_update), len(gone)


# --- Live pages: watchlists -------------------------------------------------------------------


def _instrument_by_key(key: str) -> Instrument:
    instrument = Instrument.objects.filter(key=key).first()
    if instrument is None:
        raise Instrument.DoesNotExist(f"no instrument {key}")
    return instrument


def watchlist_item_add(
    *, user: AbstractBaseUser, instrument_key: str
) -> tuple[WatchlistItem, bool]:
    """Put an instrument (canonical key) at the end of the user's watchlist.

    Idempotent: an instrument already there is returned as it is, with ``False``. Raises
    ``Instrument.DoesNotExist`` for an unknown key.
    """
    instrument = _instrument_by_key(instrument_key)
    existing = WatchlistItem.objects.filter(user=user, instrument=instrument).first()
    if existing is not None:
        return existing, False
    last = WatchlistItem.objects.filter(user=user).aggregate(last=Max("position"))["last"]
    position = 0 if last is None else last + 1
    item = WatchlistItem(user=user, instrument=instrument, position=position)
    # The once-per-user constraint is left to the database: a double click racing this one
    # must end as "already there", not as a validation error.
    item.full_clean(validate_constraints=False)
    try:
        # A savepoint, so that losing that race leaves the caller's transaction usable.
        with transaction.atomic():
            item.save()
    except IntegrityError:
        return WatchlistItem.objects.get(user=user, instrument=instrument), False
    return item, True


def watchlist_item_remove(*, user: AbstractBaseUser, instrument_key: str) -> bool:
    """Take an instrument off the user's watchlist; ``False`` when it was not on it.

    Raises ``Instrument.DoesNotExist`` for an unknown key.
    """
    instrument = _instrument_by_key(instrument_key)
    deleted, _ = WatchlistItem.objects.filter(user=user, instrument=instrument).delete()
    return deleted > 0


# --- WebSocket API tokens -----------------------------------------------------------------

API_TOKEN_PREFIX = "mdh_"
_LAST_USED_EVERY = timedelta(minutes=1)  # a busy client must not write a row per connect


def api_token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def api_token_create(
    *, user: AbstractBaseUser, name: str, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """A new token for ``user``: the row (digest only) and the token, to show once."""
    token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken.objects.create(
        user=user, name=name, prefix=token[:12], digest=api_token_digest(token),
        expires_at=expires_at,
    )  # fmt: skip
    return row, token


def api_token_use(*, token: str) -> AbstractBaseUser | None:
    """The active user a token belongs to, or None if it is unknown, revoked or expired."""
    if not token.startswith(API_TOKEN_PREFIX) or len(token) > 200:
        return None
    row = (
        ApiToken.objects.select_related("user")
        .filter(digest=api_token_digest(token), revoked=False)
        .first()
    )
    now = timezone.now()
    if row is None or (row.expires_at is not None and row.expires_at <= now):
        return None
    if not row.user.is_active:
        return None
    if row.last_used_at is None or now - row.last_used_at > _LAST_USED_EVERY:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return row.user


# --- L4: the last persisted tick per instrument ------------------------------------------


def last_ticks_record(*, latest: Mapping[str, tuple[str, dict[str, Any]]]) -> int:
    """Persist key -> (provider, record) as each instrument's last tick, overwriting the
    previous one: one bulk upsert. Keys no instrument has are skipped; returns rows written.
    ``received_at`` comes from the record's ``recv_ns`` (required)."""
    bad = [k for k, (_, record) in latest.items() if not isinstance(record.get("recv_ns"), int)]
    if bad:
        raise ValueError(f"last ticks without an integer recv_ns: {bad[:5]}")
    ids: dict[str, int] = {}
    wanted = list(latest)
    for start in range(0, len(wanted), BULK_BATCH):
        chunk = wanted[start : start + BULK_BATCH]
        ids.update(Instrument.objects.filter(key__in=chunk).values_list("key", "pk"))
    rows = [
        LastTick(
            instrument_id=ids[key],
            provider=provider,
            record=record,
            received_at=_EPOCH + timedelta(microseconds=record["recv_ns"] // 1000),
        )
        for key, (provider, record) in latest.items()
        if key in ids
    ]
    LastTick.objects.bulk_create(
        rows,
        batch_size=BULK_BATCH,
        update_conflicts=True,
        unique_fields=["instrument"],
        update_fields=["provider", "record", "received_at"],
    )
    return len(rows)
