"""Instruments, provider accounts, which connection carries which instrument, and what the
delivery side keeps per user: API tokens, limits and watchlists, plus the last persisted tick."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from feeds.instruments.records import Exchange, InstrumentType, OptionType, Segment
from feeds.pool.distribution import Conn, connection_name


class Tier(models.TextChoices):
    # Order matters: it is also the order of importance used by the pool.
    CRITICAL = "critical", "Critical (both providers, deep checks)"
    HIGH_FREQUENCY = "high_frequency", "High frequency (FYERS first)"
    STANDARD = "standard", "Standard"
    LOW_FREQUENCY = "low_frequency", "Low frequency"


class DataMode(models.TextChoices):
    LTP = "ltp", "LTP"
    QUOTE = "quote", "Quote (OHLC, volume, best bid/ask)"
    DEPTH = "depth", "Depth (5 levels)"


class Instrument(models.Model):
    """One tradable instrument or index, with both providers' identities.

    Descriptive fields come from the instrument masters (``import_instruments``); the
    operator fields (tier, priority, enabled, data_mode) are set in the admin and are never
    touched by an import.
    """

    key = models.CharField(
        "canonical key",
        max_length=64,
        unique=True,
        help_text="Provider-neutral key, e.g. NSE:SBIN, NSE:NIFTY50, NSE:NIFTY-20261229-24000-CE.",
    )
    exchange = models.CharField(max_length=8, choices=[(e.value, e.value) for e in Exchange])
    segment = models.CharField(max_length=8, choices=[(s.value, s.value) for s in Segment])
    instrument_type = models.CharField(
        "type", max_length=8, choices=[(t.value, t.value) for t in InstrumentType]
    )
    name = models.CharField(max_length=200, blank=True)
    isin = models.CharField("ISIN", max_length=12, blank=True, db_index=True)
    exchange_token = models.CharField(max_length=32, blank=True)
    underlying = models.CharField(max_length=64, blank=True)
    tick_size = models.DecimalField(
        max_digits=12, decimal_places=4, validators=[MinValueValidator(0)]
    )
    lot_size = models.PositiveIntegerField(default=1)
    expiry = models.DateField(null=True, blank=True)
    strike = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    option_type = models.CharField(
        max_length=2, blank=True, choices=[(o.value, o.value) for o in OptionType]
    )

    fyers_symbol = models.CharField("FYERS symbol", max_length=64, blank=True)
    fyers_token = models.CharField("fytoken", max_length=32, blank=True)
    upstox_key = models.CharField("Upstox instrument key", max_length=64, blank=True)
    upstox_trading_symbol = models.CharField(max_length=64, blank=True)

    tier = models.CharField(max_length=16, choices=Tier.choices, default=Tier.STANDARD)
    priority = models.IntegerField(
        default=50,
        help_text="Higher is more important: when capacity is short, the lowest go first.",
    )
    enabled = models.BooleanField(default=False, help_text="Subscribed by the feed workers.")
    data_mode = models.CharField(max_length=8, choices=DataMode.choices, default=DataMode.QUOTE)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]
        constraints = [
            # Provider identities are unique when present ("" means not listed there).
            models.UniqueConstraint(
                fields=["fyers_token"],
                condition=~models.Q(fyers_token=""),
                name="instrument_unique_fyers_token",
            ),
            models.UniqueConstraint(
                fields=["fyers_symbol"],
                condition=~models.Q(fyers_symbol=""),
                name="instrument_unique_fyers_symbol",
            ),
            models.UniqueConstraint(
                fields=["upstox_key"],
                condition=~models.Q(upstox_key=""),
                name="instrument_unique_upstox_key",
            ),
        ]
        indexes = [
            models.Index(fields=["enabled", "tier", "-priority"], name="instrument_pool_order"),
            models.Index(fields=["exchange", "segment", "instrument_type"]),
        ]

    def __str__(self) -> str:
        return self.key

    def clean(self) -> None:
        if self.instrument_type == InstrumentType.OPT and not (self.option_type and self.strike):
            raise ValidationError("An option needs an option type and a strike.")
        if self.instrument_type in (InstrumentType.FUT, InstrumentType.OPT) and not self.expiry:
            raise ValidationError("A derivative needs an expiry date.")
        if self.tick_size is not None and self.tick_size <= 0:
            raise ValidationError({"tick_size": "Tick size must be positive."})


class Provider(models.TextChoices):
    FYERS = "fyers", "FYERS"
    UPSTOX = "upstox", "Upstox"


# Upstox subscription limits per mode (providers/UPSTOX.md §7.1): "individual" applies when a
# connection uses one mode only, "combined" per mode when modes are mixed.
UPSTOX_DEFAULT_MODE_LIMITS: dict[str, dict[str, int]] = {
    "ltpc": {"individual": 5000, "combined": 2000},
    "option_greeks": {"individual": 3000, "combined": 2000},
    "full": {"individual": 2000, "combined": 1500},
    # The docs print 1500 as full_d30's combined limit next to 50 individual; 50 is the safe
    # reading until the broker says otherwise.
    "full_d30": {"individual": 50, "combined": 50},
}


class ProviderAccount(models.Model):
    """A broker login whose connections the pool may open.

    The token itself is never stored: ``token_env`` names the environment variable that
    holds it, read only when a connection authenticates.
    """

    provider = models.CharField(max_length=16, choices=Provider.choices)
    label = models.SlugField(max_length=50, help_text="Short name used in connection ids.")
    enabled = models.BooleanField(default=True)
    max_connections = models.PositiveIntegerField(
        validators=[MinValueValidator(1)], help_text="Sockets this account may hold at once."
    )
    max_symbols_per_connection = models.PositiveIntegerField(
        validators=[MinValueValidator(1)],
        help_text="FYERS: topics per socket (200 by design). Upstox: the overall cap per "
        "socket; per-mode limits below also apply.",
    )
    mode_limits = models.JSONField(
        default=dict,
        blank=True,
        help_text='Upstox only: {"ltpc": {"individual": 5000, "combined": 2000}, ...}.',
    )
    token_env = models.CharField(
        "token environment variable",
        max_length=64,
        help_text="Name of the environment variable holding this account's access token.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider", "label"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "label"], name="provider_account_unique")
        ]

    def __str__(self) -> str:
        return f"{self.get_provider_display()} / {self.label}"

    def clean(self) -> None:
        if not self.token_env.isidentifier() or not self.token_env.isupper():
            raise ValidationError(
                {
                    "token_env": "Give the NAME of an environment variable (e.g. FYERS_TOKEN_A), "
                    "never the token itself."
                }
            )
        if self.provider == Provider.UPSTOX:
            if not self.mode_limits:
                self.mode_limits = {m: dict(v) for m, v in UPSTOX_DEFAULT_MODE_LIMITS.items()}
            _validate_mode_limits(self.mode_limits)
        elif self.mode_limits:
            raise ValidationError({"mode_limits": "Per-mode limits apply to Upstox only."})


def _validate_mode_limits(limits: object) -> None:
    if not isinstance(limits, dict) or set(limits) != set(UPSTOX_DEFAULT_MODE_LIMITS):
        raise ValidationError(
            {"mode_limits": f"Expected exactly the modes {sorted(UPSTOX_DEFAULT_MODE_LIMITS)}."}
        )
    for mode, pair in limits.items():
        if not (
            isinstance(pair, dict)
            and set(pair) == {"individual", "combined"}
            and all(isinstance(v, int) and v > 0 for v in pair.values())
        ):
            raise ValidationError(
                {"mode_limits": f"{mode}: expected positive integers 'individual' and 'combined'."}
            )


class AssignmentReason(models.TextChoices):
    TIER_RULE = "tier_rule", "Tier rule"
    CROSS_CHECK = "cross_check", "Critical: second provider for cross-checks"
    OVERFLOW = "overflow", "Capacity overflow"
    FAILOVER = "failover", "Failover"


class PoolAssignment(models.Model):
    """Which provider connection carries an instrument right now, since when and why.

    A connection is identified by its account and a slot number within that account. The
    feed worker keeps these rows true to what is actually subscribed.
    """

    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="assignments")
    account = models.ForeignKey(
        ProviderAccount, on_delete=models.CASCADE, related_name="assignments"
    )
    connection_slot = models.PositiveIntegerField()
    data_mode = models.CharField(max_length=8, choices=DataMode.choices)
    reason = models.CharField(max_length=16, choices=AssignmentReason.choices)
    worker_id = models.CharField(max_length=100, blank=True)
    since = models.DateTimeField()

    class Meta:
        ordering = ["account", "connection_slot", "instrument"]
        constraints = [
            # An instrument is on at most one connection per account (critical ones are on
            # one FYERS and one Upstox connection).
            models.UniqueConstraint(fields=["instrument", "account"], name="pool_assignment_unique")
        ]
        indexes = [models.Index(fields=["account", "connection_slot"])]

    def __str__(self) -> str:
        return f"{self.instrument} on {self.connection_id}"

    @property
    def connection_id(self) -> str:
        return connection_id(self.account.provider, self.account.label, self.connection_slot)


def connection_id(provider: str, label: str, slot: int) -> str:
    """The stable name of one pool connection, used in logs, heartbeats and health rows."""
    return connection_name(Conn(provider, label, slot))


class PlacementIssueKind(models.TextChoices):
    LEFT_OUT = "left_out", "Left out"
    ONE_PROVIDER = "one_provider", "One provider only"


class PlacementIssue(models.Model):
    """An enabled instrument the current pool plan does not carry as the rules want.

    Either left out (no capacity, or no enabled provider lists it) or a critical instrument
    carried by one provider only. The feed worker keeps these rows equal to its latest plan,
    so the admin and the monitoring page show what is short, never silently.
    """

    instrument = models.OneToOneField(
        Instrument, on_delete=models.CASCADE, related_name="placement_issue"
    )
    kind = models.CharField(max_length=16, choices=PlacementIssueKind.choices)
    reason = models.CharField(max_length=300)
    since = models.DateTimeField(help_text="When the plan first reported this kind of issue.")
    worker_id = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["kind", "instrument__key"]
        verbose_name = "placement issue"
        verbose_name_plural = "placement issues"

    def __str__(self) -> str:
        return f"{self.instrument}: {self.get_kind_display()}"


class LastTick(models.Model):
    """The last tick the hub saw for an instrument, persisted by the feed worker now and then.

    The cache's last resort (L4): after a restart, or with the market closed, a client still
    gets a value, marked stale with its age. One row per instrument, overwritten in place.
    """

    instrument = models.OneToOneField(
        Instrument, on_delete=models.CASCADE, primary_key=True, related_name="last_tick"
    )
    provider = models.CharField(max_length=16, choices=Provider.choices)
    record = models.JSONField(help_text="The tick as the caches hold it (prices at scale).")
    received_at = models.DateTimeField(help_text="When the hub received the tick.")

    class Meta:
        verbose_name = "last tick"
        verbose_name_plural = "last ticks"

    def __str__(self) -> str:
        return f"{self.instrument_id} via {self.provider} @ {self.received_at:%Y-%m-%d %H:%M:%S}"


class ApiToken(models.Model):
    """A secret that lets a program use the WebSocket API as ``user``.

    Only a SHA-256 digest is stored (the token is 32 random bytes, so a slow hash adds
    nothing); the token itself is shown once, when it is created in the admin. ``prefix`` is
    its first characters, kept so that admins and users can tell tokens apart.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What the token is for.")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never.")
    revoked = models.BooleanField(default=False)

    class Meta:
        ordering = ["user", "-created_at"]
        verbose_name = "API token"
        verbose_name_plural = "API tokens"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"


class ClientLimits(models.Model):
    """Per-user limits of the WebSocket API; users without a row get the settings' defaults."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="client_limits"
    )
    max_subscriptions = models.PositiveIntegerField(
        help_text="Symbols subscribed at once, over all of the user's connections."
    )
    max_requests_per_second = models.PositiveIntegerField(
        help_text="Requests (subscribe, unsubscribe, ping…) a client may send per second."
    )
    max_updates_per_second = models.PositiveIntegerField(
        help_text="Update messages per second per connection; faster changes are conflated."
    )
    max_connections = models.PositiveIntegerField(help_text="Open WebSocket connections.")

    class Meta:
        verbose_name = "client limits"
        verbose_name_plural = "client limits"

    def __str__(self) -> str:
        return f"limits of {self.user}"


class WatchlistItem(models.Model):
    """An instrument on a user's watchlist page, in the user's order."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="watchlist"
    )
    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField(default=0)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user", "position", "added_at"]
        constraints = [
            models.UniqueConstraint(fields=["user", "instrument"], name="watchlist_once_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.instrument_id}"
