"""The operators' view of accounts' money.

The ledger, charges and top-ups are read-only here: money moves only through the billing
services. Operators grant credit or refund by adding a CreditAdjustment, whose save posts
one ledger transaction carrying the operator and the reason. API key hashes and BYOK
ciphertexts are never shown.
"""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin

from billing.limits import LimitedAdminAuthenticationForm
from billing.models import (
    AccountKind,
    ApiKey,
    Charge,
    CreditAdjustment,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    ProviderKey,
    SignupCreditClaim,
    TopUp,
)
from billing.selectors import account_balance
from billing.services.keys import KEY_PREFIX, api_key_revoke
from billing.services.topups import credit_grant, credit_refund
from catalog.pricing import format_usd

# The admin's sign-in counts failures and locks out like the site's (billing/limits.py).
admin.site.login_form = LimitedAdminAuthenticationForm

AMOUNT_NOT_POSITIVE = "The amount must be more than zero."
REFUND_OVER_BALANCE = (
    "A refund of {amount} is more than this wallet holds ({balance}): a wallet never goes "
    "below zero."
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable, never added, changed or deleted from the admin."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "kind", "user", "current_balance", "created_at"]
    list_filter = ["kind"]
    list_select_related = ["user"]
    search_fields = ["user__username"]

    @admin.display(description="balance")
    def current_balance(self, obj: LedgerAccount) -> Decimal:
        # A system account caches no balance (NULL): show the sum of its entries.
        return account_balance(obj)


class LedgerEntryInline(admin.TabularInline):
    model = LedgerEntry
    fields = ["account", "amount", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "kind", "idempotency_key", "memo", "created_by"]
    list_filter = ["kind"]
    list_select_related = ["created_by"]
    search_fields = ["idempotency_key", "memo"]
    inlines = [LedgerEntryInline]


@admin.register(Charge)
class ChargeAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "user", "card", "route", "units", "amount", "byok", "status"]
    list_filter = ["status", "byok"]
    list_select_related = ["user", "card__organisation", "route"]
    search_fields = ["user__username", "job_id"]


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "user", "credit", "fee", "total", "provider", "status"]
    list_filter = ["status", "provider"]
    list_select_related = ["user"]
    search_fields = ["user__username", "provider_session_id", "provider_event_id"]


@admin.register(SignupCreditClaim)
class SignupCreditClaimAdmin(ReadOnlyAdmin):
    """Which mailbox had its sign-up credit, by which account (kept if the account goes)."""

    list_display = ["created_at", "email", "user", "transaction"]
    list_select_related = ["user", "transaction"]
    search_fields = ["email", "user__username"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    # secret_hash is deliberately absent from every list here.
    list_display = ["name", "shown_prefix", "user", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__username"]
    fields = [
        "name",
        "shown_prefix",
        "user",
        "created_at",
        "last_used_at",
        "revoked_at",
        "monthly_spend_cap",
        "allowed_models",
    ]
    readonly_fields = fields
    actions = ["revoke_selected"]

    @admin.display(description="Key")
    def shown_prefix(self, obj: ApiKey) -> str:
        return f"{KEY_PREFIX}{obj.prefix}…"

    @admin.action(description="Revoke selected keys")
    def revoke_selected(self, request, queryset) -> None:
        keys = list(queryset.filter(revoked_at__isnull=True))
        for key in keys:
            api_key_revoke(key=key)
        self.message_user(request, f"Revoked {len(keys)} key(s).")

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # keys are created by their owners, who alone see the plaintext once

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoke instead: charges keep pointing at the key


@admin.register(ProviderKey)
class ProviderKeyAdmin(admin.ModelAdmin):
    # Only the last 4 characters; the ciphertext is never displayed.
    list_display = ["provider", "shown_last4", "user", "created_at"]
    list_filter = ["provider"]
    list_select_related = ["user"]
    search_fields = ["provider", "user__username"]
    fields = ["provider", "shown_last4", "user", "created_at"]
    readonly_fields = fields

    @admin.display(description="Key")
    def shown_last4(self, obj: ProviderKey) -> str:
        return f"…{obj.last4}"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class CreditAdjustmentForm(forms.ModelForm):
    class Meta:
        model = CreditAdjustment
        fields = ["user", "kind", "amount", "reason"]

    def clean(self):
        cleaned = super().clean()
        user, kind, amount = cleaned.get("user"), cleaned.get("kind"), cleaned.get("amount")
        if amount is not None and amount <= 0:
            self.add_error("amount", AMOUNT_NOT_POSITIVE)
            return cleaned
        if user is not None and kind == CreditAdjustment.Kind.REFUND and amount is not None:
            # The same rule credit_refund enforces (a wallet never goes below zero), checked
            # here so an over-large refund is a form error rather than a failed save. The
            # service and the wallet's CHECK constraint still guard a race with a spend.
            balance = (
                LedgerAccount.objects.filter(kind=AccountKind.WALLET, user=user)
                .values_list("balance", flat=True)
                .first()
            ) or Decimal(0)
            if amount > balance:
                self.add_error(
                    "amount",
                    REFUND_OVER_BALANCE.format(
                        amount=format_usd(amount), balance=format_usd(balance)
                    ),
                )
        return cleaned


@admin.register(CreditAdjustment)
class CreditAdjustmentAdmin(admin.ModelAdmin):
    form = CreditAdjustmentForm
    list_display = ["created_at", "user", "kind", "amount", "reason", "created_by"]
    list_filter = ["kind"]
    list_select_related = ["user", "created_by"]
    search_fields = ["user__username", "reason"]
    raw_id_fields = ["user"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["user", "kind", "amount", "reason"]
        return ["user", "kind", "amount", "reason", "created_by", "transaction", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.get_fields(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # add-only: a mistake is corrected by another adjustment

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj: CreditAdjustment, form, change: bool) -> None:
        service = credit_grant if obj.kind == CreditAdjustment.Kind.GRANT else credit_refund
        # The admin's add view runs in one database transaction: the ledger posting and
        # this row are saved together or not at all.
        posting = service(
            user=obj.user, amount=obj.amount, reason=obj.reason, operator=request.user
        )
        obj.created_by = request.user
        obj.transaction = posting.transaction
        super().save_model(request, obj, form, change)
