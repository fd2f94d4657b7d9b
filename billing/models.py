"""Accounts' money: API keys, the double-entry ledger, top-ups, charges, BYOK keys.

Amounts are exact decimals in USD with 10 places (``catalog.models.PRICE_DECIMAL_PLACES``),
never floats. The ledger is append-only: entries are never updated or deleted, a mistake
is fixed by a reversing transaction.

Which balances are cached (the hot-row problem): only a user's wallet keeps ``balance`` as
a cache of the sum of its entries, updated under the wallet's row lock in the same
database transaction, because a charge must check the wallet before it moves money and
the CHECK below refuses a negative one. Every other account's ``balance`` is NULL and its
balance is the sum of its entries (``billing.selectors``); posting to it only INSERTs
entries, and takes no lock that another charge waits for:

- system accounts (revenue, payable, fees, clearing, grants) are shared by every user:
  a cached balance would make every charge of every user UPDATE one row;
- a user's holds account (what their reserved charges hold back) is written twice per
  charge and read only by the admin: a cached holds balance made every settlement lock
  and update that row, so the reservations and settlements of one busy user queued on it
  (each holding it through its commit's disk flush), and it cost two row updates per
  charge. Its balance is the sum of its entries, which is also the sum of the user's
  reserved charges (each charge moves its amount in once and out once, under the
  charge's own row lock).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from catalog.money import validate_exact
from catalog.pricing import format_usd

MONEY = {"max_digits": 20, "decimal_places": 10}


class AccountKind(models.TextChoices):
    WALLET = "wallet", "User wallet"
    # One per user (with their wallet), so reservations by different users share no row.
    # Caches no balance (see above). A pooled system HOLDS account (no user) existed
    # before migration 0002 moved its balance to the users' accounts; it may remain.
    HOLDS = "holds", "Reserved for running jobs"
    FEE_REVENUE = "fee_revenue", "Platform fee revenue"
    INFERENCE_REVENUE = "inference_revenue", "Inference revenue (our own workers)"
    PROVIDER_PAYABLE = "provider_payable", "Provider payable"
    PAYMENT_CLEARING = "payment_clearing", "Payment clearing"
    GRANTS = "grants", "Credit granted by operators and sign-up"


# The kinds an account of a user's own may have; of these only the wallet caches its
# balance (see above).
USER_ACCOUNT_KINDS = (AccountKind.WALLET, AccountKind.HOLDS)


class LedgerAccount(models.Model):
    kind = models.CharField(max_length=24, choices=AccountKind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="ledger_accounts",
    )
    # A wallet: a cache of the sum of its entries, updated with them in one transaction
    # under the row's lock. Any other account: NULL, never updated (see above).
    balance = models.DecimalField(**MONEY, null=True, blank=True, default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=[k.value for k in AccountKind]), name="account_valid_kind"
            ),
            # Pay-as-you-go: a wallet never goes below zero, whatever the application does.
            models.CheckConstraint(
                condition=~Q(kind=AccountKind.WALLET) | Q(balance__gte=0),
                name="wallet_never_negative",
            ),
            models.CheckConstraint(
                condition=Q(kind=AccountKind.WALLET, user__isnull=False)
                | Q(kind=AccountKind.HOLDS)
                | (~Q(kind__in=USER_ACCOUNT_KINDS) & Q(user__isnull=True)),
                name="wallet_has_a_user",
            ),
            # Cached exactly for a wallet (the one row a user's charges lock); every other
            # account's balance is derived from its entries.
            models.CheckConstraint(
                condition=Q(kind=AccountKind.WALLET, balance__isnull=False)
                | (~Q(kind=AccountKind.WALLET) & Q(balance__isnull=True)),
                name="balance_cached_for_wallets",
            ),
            models.UniqueConstraint(
                fields=["kind"], condition=Q(user__isnull=True), name="one_system_account_per_kind"
            ),
            models.UniqueConstraint(
                fields=["user", "kind"],
                condition=Q(user__isnull=False),
                name="one_account_per_user_and_kind",
            ),
        ]

    def __str__(self) -> str:
        if self.user_id:
            return f"{'holds' if self.kind == AccountKind.HOLDS else 'wallet'} of {self.user}"
        return self.get_kind_display()

    @property
    def is_cached(self) -> bool:
        """Whether ``balance`` is kept (a wallet) or derived from entries."""
        return self.kind == AccountKind.WALLET


class LedgerTransaction(models.Model):
    class Kind(models.TextChoices):
        TOP_UP = "top_up", "Top-up"
        RESERVE = "reserve", "Reserve for a job"
        POST = "post", "Charge posted"
        VOID = "void", "Reservation released"
        GRANT = "grant", "Credit granted"
        REFUND = "refund", "Refund"
        REVERSAL = "reversal", "Reversal"
        TRANSFER = "transfer", "Internal transfer"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # Every money movement is idempotent on this key: a replayed webhook or a redelivered
    # task finds the transaction already there and changes nothing.
    idempotency_key = models.CharField(max_length=200, unique=True)
    memo = models.CharField(max_length=300, blank=True)
    # Set only by an operator's adjustment: indexed only where set (Meta), so the two
    # ledger transactions of every charge do not each add a NULL to an index.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+", db_index=False,
    )  # fmt: skip
    # At most one reversal per transaction, enforced where set (Meta): every charge writes
    # two transactions that reverse nothing, and a plain unique index would take a NULL
    # entry for each of them.
    reverses = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="reversed_by",
        db_index=False,
    )  # fmt: skip
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["created_by"],
                condition=Q(created_by__isnull=False),
                name="ledgertxn_created_by_set",
            ),
            # The dashboard's wallet credits besides top-ups and calls (billing/views.py
            # CREDIT_KINDS): rare kinds, so a charge's two transactions add nothing to it;
            # without it every busy account's dashboard read the whole ledger (0015).
            models.Index(
                fields=["created_at"],
                condition=Q(kind__in=["grant", "refund", "reversal"]),
                name="ledgertxn_credit_kinds",
            ),
            # Not declared here: ledgertxn_created_brin, a BRIN index on created_at (the
            # admin's list; billing/0017), PostgreSQL only, as Charge's.
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["reverses"],
                condition=Q(reverses__isnull=False),
                name="ledgertxn_reversed_once",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.idempotency_key}"


class AppendOnly(Exception):
    pass


class LedgerEntry(models.Model):
    transaction = models.ForeignKey(
        LedgerTransaction, on_delete=models.PROTECT, related_name="entries"
    )
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="entries")
    amount = models.DecimalField(**MONEY, help_text="Signed: + into the account, - out of it.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="entry_not_zero"),
        ]

    def __str__(self) -> str:
        return f"{self.account}: {format_usd(Decimal(self.amount))}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise AppendOnly("Ledger entries are never updated; post a reversal.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnly("Ledger entries are never deleted; post a reversal.")


class ApiKey(models.Model):
    """A secret shown once; stored as the SHA-256 of the secret, looked up by its prefix.

    A fast hash is right here (unlike passwords): the secret is 32 random bytes, so there
    is nothing to brute-force, and every API call verifies one.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    monthly_spend_cap = models.DecimalField(**MONEY, null=True, blank=True)
    allowed_models = models.ManyToManyField(
        "catalog.ModelCard", blank=True, through="ApiKeyModel", help_text="Empty: every model."
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(monthly_spend_cap__isnull=True) | Q(monthly_spend_cap__gte=0),
                name="apikey_cap_gte_0",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ApiKeyModel(models.Model):
    """One model an API key's allow-list names (the table Django made for the plain
    many-to-many, ``billing/0016``, taken over unchanged).

    The card is PROTECTed: an empty allow-list means *every* model, so deleting the only
    card a key was restricted to silently made it an unrestricted key (session 47's
    operator probe: a key capped to one model then ran and paid for any). An operator
    retires a card instead (its lifecycle), or edits the keys first; the admin's delete
    page names the keys in the way."""

    apikey = models.ForeignKey(ApiKey, on_delete=models.CASCADE)
    modelcard = models.ForeignKey("catalog.ModelCard", on_delete=models.PROTECT)

    class Meta:
        db_table = "billing_apikey_allowed_models"
        unique_together = [("apikey", "modelcard")]
        verbose_name = "API key's allowed model"

    def __str__(self) -> str:
        return f"API key “{self.apikey.name}” of {self.apikey.user} is allowed this model only"


class ProviderKey(models.Model):
    """A user's own key for a provider route (BYOK), encrypted at rest."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="provider_keys"
    )
    provider = models.CharField(max_length=64, help_text="A price route slug, e.g. cloudflare.")
    ciphertext = models.TextField()
    last4 = models.CharField(max_length=4)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "provider"], name="one_provider_key_each")
        ]

    def __str__(self) -> str:
        return f"{self.provider} key …{self.last4}"


class TopUp(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending payment"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="top_ups"
    )
    credit = models.DecimalField(**MONEY, help_text="What the wallet receives.")
    fee = models.DecimalField(**MONEY, help_text="The platform fee on top.")
    # credit + fee, computed exactly in Python (top_up_quote). Not a CHECK: SQLite would
    # compare the sum in floating point and refuse e.g. 12.34 + 0.62.
    total = models.DecimalField(**MONEY, help_text="What the user pays: credit + fee.")
    provider = models.CharField(max_length=32)
    provider_session_id = models.CharField(max_length=200, blank=True)
    provider_event_id = models.CharField(
        max_length=200, null=True, blank=True, unique=True,
        help_text="The payment provider's event that confirmed it (idempotency).",
    )  # fmt: skip
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    transaction = models.OneToOneField(
        LedgerTransaction, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(credit__gt=0), name="topup_credit_positive"),
            models.CheckConstraint(condition=Q(fee__gte=0), name="topup_fee_gte_0"),
        ]

    def __str__(self) -> str:
        return f"top-up {format_usd(Decimal(self.credit))} for {self.user} ({self.status})"


class Charge(models.Model):
    """What one job costs: reserved when accepted, posted on success, voided otherwise."""

    class Status(models.TextChoices):
        RESERVED = "reserved", "Reserved"
        POSTED = "posted", "Posted"
        VOIDED = "voided", "Voided"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # One charge per job: the job id is the idempotency key.
    job_id = models.UUIDField(unique=True)
    # Every index here is written by every charge (the hot path of every API call), so a
    # charge keeps only those a query needs: the job's (above), the user's and month's
    # (Meta.indexes, which also serves "by user"), the key's and month's (spend caps;
    # SET_NULL when a key is deleted). card, route and price_version have none: nothing
    # looks charges up by them, and their PROTECT only matters when a catalog row is
    # deleted (rare, by staff), which may then scan the table.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="charges",
        db_index=False,
    )  # fmt: skip
    # Indexed with the month (Meta: charge_key_created), not on its own.
    api_key = models.ForeignKey(
        ApiKey, on_delete=models.SET_NULL, null=True, blank=True, db_index=False
    )
    card = models.ForeignKey(
        "catalog.ModelCard", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    route = models.ForeignKey(
        "catalog.PriceRoute", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    price_version = models.ForeignKey(
        "catalog.PriceChange", on_delete=models.PROTECT, related_name="+", db_index=False,
        help_text="The price in force when the job was accepted.",
    )  # fmt: skip
    unit_price = models.DecimalField(**MONEY)
    units = models.PositiveIntegerField(default=1)
    amount = models.DecimalField(**MONEY, help_text="Charged to the wallet (0 with BYOK).")
    would_be_amount = models.DecimalField(**MONEY, help_text="What it costs without BYOK.")
    byok = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RESERVED)
    created_at = models.DateTimeField(auto_now_add=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "created_at"]),
            # A key's spend this month, summed by every call on a key with a monthly cap
            # (under the key's lock): the month's charges, not the key's whole history
            # (billing/0015). It replaces the key's own index: the same entries.
            models.Index(fields=["api_key", "created_at"], name="charge_key_created"),
            # Not declared here: charge_created_brin, a BRIN index on created_at (the admin's
            # list, newest first over a window; billing/0017), PostgreSQL only. No entry per
            # row; SQLite, which rebuilds a table with every index Meta declares, has no BRIN.
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="charge_amount_gte_0"),
            models.CheckConstraint(
                condition=Q(byok=False) | Q(amount=0), name="charge_byok_is_free"
            ),
        ]

    def __str__(self) -> str:
        return f"charge {format_usd(Decimal(self.amount))} for job {self.job_id} ({self.status})"

    @property
    def cost(self) -> Decimal:
        """What the job costs the wallet: held while reserved, paid once posted, nothing
        once voided (the hold went back). ``amount`` keeps what was reserved."""
        return Decimal(0) if self.status == self.Status.VOIDED else self.amount


class CreditAdjustment(models.Model):
    """An operator's grant or refund, with its reason; saving one posts it to the ledger."""

    class Kind(models.TextChoices):
        GRANT = "grant", "Grant credit"
        REFUND = "refund", "Refund to the payer"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    amount = models.DecimalField(**MONEY, validators=[validate_exact])
    reason = models.CharField(max_length=300)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    transaction = models.OneToOneField(
        LedgerTransaction, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The add form's one-time token (a hidden uuid4 made when the form is rendered): a
    # resent form (a double click, the browser posting again) carries the same token, and
    # this unique row is claimed before the money moves, so it posts once. NULL on rows
    # made before the token existed.
    request_token = models.UUIDField(unique=True, null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="adjustment_positive"),
        ]

    def __str__(self) -> str:
        # The site's money format: the admin's titles and messages said "1000.0000000000"
        # or "1E+3" (the column's ten places, an amount typed in exponent form).
        return f"{self.get_kind_display()} {format_usd(Decimal(self.amount))} to {self.user}"


class SignupCreditClaim(models.Model):
    """One mailbox's sign-up credit, claimed once, ever.

    The email is normalised (billing/emails.py: lowercase, no ``+tag``, no Gmail dots) and
    unique, so a second account on the same inbox verifies but earns nothing. The row is
    written in the same transaction as the grant; it outlives its user (SET_NULL), so
    deleting an account and signing up again does not earn the credit twice.
    """

    email = models.CharField(max_length=254, unique=True, help_text="Normalised.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    transaction = models.OneToOneField(
        LedgerTransaction, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"sign-up credit for {self.email}"


class WebhookSecret(models.Model):
    """The account's webhook signing secret (``whsec_...``): job webhooks are signed with it
    (HMAC-SHA256, ``playground/webhooks.py``). It must be readable to sign, so it is
    encrypted at rest like BYOK keys; shown on the dashboard, rotatable there.

    After a rotation the secret it replaced (``previous_ciphertext``) still signs every
    delivery, beside the new one, until ``previous_expires_at`` (24 hours, as Stripe does),
    so a receiver still checking the old secret (being redeployed) rejects nothing. A second
    rotation in that window keeps only the secret it replaced."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_secret"
    )
    ciphertext = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    # db_default (billing/0014): the previous release, still running during a rolling
    # deploy, creates secrets without naming the column.
    previous_ciphertext = models.TextField(blank=True, default="", db_default="")
    previous_expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"webhook secret of {self.user}"

    def previous_valid_until(self, *, at=None):
        """When the previous secret stops signing, or None when it does not sign (now, or
        ``at``). The dashboard's template calls it with no argument."""
        at = at or timezone.now()
        if self.previous_ciphertext and self.previous_expires_at and self.previous_expires_at > at:
            return self.previous_expires_at
        return None
