"""The operators' view of accounts' money.

The ledger, charges and top-ups are read-only here: money moves only through the billing
services. Operators grant credit or refund by adding a CreditAdjustment, whose save posts
one ledger transaction carrying the operator and the reason. API key hashes and BYOK
ciphertexts are never shown.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db import IntegrityError, transaction
from django.http import HttpResponseRedirect
from django.urls import reverse

from billing.limits import LimitedAdminAuthenticationForm, limited_admin_login
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
from billing.services.accounts import account_close
from billing.services.keys import KEY_PREFIX, api_key_revoke
from billing.services.topups import credit_grant, credit_refund
from catalog.admin_search import CreatedWithin, KeyFirstSearchMixin, RelatedAfterThePageMixin
from catalog.errors import ApplicationError
from catalog.pricing import format_usd

# The admin's sign-in counts failures and locks out like the site's (billing/limits.py).
admin.site.login_form = LimitedAdminAuthenticationForm
admin.site.login = limited_admin_login(admin.site.login)  # the device cookie, the 429

AMOUNT_NOT_POSITIVE = "The amount must be more than zero."
REFUND_OVER_BALANCE = (
    "A refund of {amount} is more than this wallet holds ({balance}): a wallet never goes "
    "below zero."
)
ADJUSTMENT_ALREADY_RECORDED = (
    "This adjustment was already recorded (a resent form): nothing was added again."
)
ADJUSTMENT_FORM_STALE = (
    "This form carries no valid one-time token (it was opened before an update, or "
    "altered): nothing was recorded. Open Add credit adjustment again and resend."
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
class LedgerTransactionAdmin(KeyFirstSearchMixin, RelatedAfterThePageMixin, ReadOnlyAdmin):
    list_display = ["created_at", "kind", "idempotency_key", "memo", "created_by"]
    list_filter = [CreatedWithin, "kind"]
    list_prefetch_related = ("created_by",)
    # The window's rows are counted for the pages; not the whole ledger besides (a COUNT
    # of 2.5 million rows, 170-270 ms, for "N total").
    show_full_result_count = False
    search_fields = ["idempotency_key", "memo"]
    key_search_fields = ("idempotency_key",)  # unique: a key pasted whole reads its index
    inlines = [LedgerEntryInline]


@admin.register(Charge)
class ChargeAdmin(KeyFirstSearchMixin, RelatedAfterThePageMixin, ReadOnlyAdmin):
    list_display = ["created_at", "user", "card", "route", "units", "amount", "byok", "status"]
    list_filter = [CreatedWithin, "status", "byok"]
    show_full_result_count = False  # as the ledger's: the window's count only
    # A route is shown as "<its card> via <provider>": its card and organisation too, or
    # two more queries per row (204 for a page of 100).
    list_prefetch_related = ("user", "card__organisation", "route__card__organisation")
    search_fields = ["user__username", "job_id"]
    key_search_fields = ("job_id", "pk")  # a job's id (unique here) or the charge's own


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

    @admin.action(description="Revoke selected keys", permissions=["revoke"])
    def revoke_selected(self, request, queryset) -> None:
        keys = list(queryset.filter(revoked_at__isnull=True))
        for key in keys:
            api_key_revoke(key=key)
        self.message_user(request, f"Revoked {len(keys)} key(s).")

    def has_revoke_permission(self, request) -> bool:
        # An action names the permission it needs, or Django offers it to everyone who may
        # see the list: a staff member allowed only to view keys revoked customers' keys.
        # Keys are never changed here otherwise, so "change api key" is what revoking takes.
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

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
    # A fresh uuid4 each time the add page is rendered; a form shown again after an error
    # keeps the token it was posted with (nothing was recorded under it). A CharField, not
    # a UUIDField: a bad token must be a visible error, and errors on a hidden field are not
    # shown by the admin (clean() reports it instead).
    request_token = forms.CharField(widget=forms.HiddenInput, required=False, initial=uuid.uuid4)

    class Meta:
        model = CreditAdjustment
        fields = ["user", "kind", "amount", "reason", "request_token"]

    def clean_request_token(self) -> uuid.UUID | None:
        return parse_token(self.cleaned_data["request_token"])

    def validate_unique(self) -> None:
        # A taken token is a resent form, answered by the admin ("already recorded"), not a
        # form error on a field the operator cannot see.
        exclude = self._get_validation_exclusions() | {"request_token"}
        try:
            self.instance.validate_unique(exclude=exclude)
        except forms.ValidationError as e:
            self._update_errors(e)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("request_token") is None:
            self.add_error(None, ADJUSTMENT_FORM_STALE)
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


def parse_token(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def adjustment_with_token(token: uuid.UUID | None) -> CreditAdjustment | None:
    if token is None:
        return None  # not filter(request_token=None): that is IS NULL, every older row
    return CreditAdjustment.objects.filter(request_token=token).first()


class AdjustmentAlreadyRecorded(Exception):
    """The add form's token is an existing adjustment's: a resent form, not a new one."""

    def __init__(self, adjustment: CreditAdjustment):
        super().__init__(adjustment.pk)
        self.adjustment = adjustment


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
            return ["user", "kind", "amount", "reason", "request_token"]
        return ["user", "kind", "amount", "reason", "created_by", "transaction", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.get_fields(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # add-only: a mistake is corrected by another adjustment

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def add_view(self, request, form_url="", extra_context=None):
        if request.method == "POST" and self.has_add_permission(request):
            # A resent form is answered before it is validated: a refund resent after the
            # first one emptied the wallet is "already recorded", not "more than it holds".
            existing = adjustment_with_token(parse_token(request.POST.get("request_token")))
            if existing is not None:
                return self._already_recorded(request, existing)
        try:
            return super().add_view(request, form_url, extra_context)
        except AdjustmentAlreadyRecorded as resent:
            # Raised out of the add view's transaction, which rolled back: nothing posted.
            return self._already_recorded(request, resent.adjustment)

    def _already_recorded(self, request, adjustment: CreditAdjustment) -> HttpResponseRedirect:
        self.message_user(request, ADJUSTMENT_ALREADY_RECORDED, messages.WARNING)
        opts = self.opts
        return HttpResponseRedirect(
            reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[adjustment.pk])
        )

    def save_model(self, request, obj: CreditAdjustment, form, change: bool) -> None:
        # The admin's add view runs in one database transaction: the ledger posting and
        # this row are saved together or not at all. The row goes first and claims the
        # form's token (unique): a concurrent resend of the same form waits on that INSERT
        # until this transaction commits, then fails it and posts nothing (the sign-up
        # credit claims a mailbox the same way, billing/services/signup.py).
        obj.created_by = request.user
        try:
            with transaction.atomic():  # a savepoint: a lost race leaves the outer one usable
                super().save_model(request, obj, form, change)
        except IntegrityError:
            existing = adjustment_with_token(obj.request_token)
            if existing is None:
                raise
            raise AdjustmentAlreadyRecorded(existing) from None
        service = credit_grant if obj.kind == CreditAdjustment.Kind.GRANT else credit_refund
        posting = service(
            user=obj.user, amount=obj.amount, reason=obj.reason, operator=request.user
        )
        obj.transaction = posting.transaction
        obj.save(update_fields=["transaction"])


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class VitrineUserAdmin(UserAdmin):
    """Django's user admin, plus closing an account as its owner would from the dashboard
    (a deletion asked for by email, say). Deleting the row is refused by the ledger
    (PROTECT); closing empties it instead (billing/services/accounts.py)."""

    actions = ["close_selected"]
    list_filter = (*UserAdmin.list_filter, "date_joined")

    @admin.action(description="Close the selected accounts (as their owners would)",
                  permissions=["change"])  # fmt: skip
    def close_selected(self, request, queryset) -> None:
        closed = 0
        # Deactivated accounts too: an operator who deactivated one earlier must still be
        # able to close it (its email and keys stay until then); one closed already is said.
        for user in queryset:
            if not user.is_active and user.get_username() == f"deleted-{user.pk}":
                self.message_user(request, f"{user.get_username()} is closed already.")
                continue
            if user.pk == request.user.pk:
                self.message_user(
                    request, "You cannot close your own account here.", messages.ERROR
                )
                continue
            try:
                account_close(user=user, by_operator=True)
            except ApplicationError as exc:
                self.message_user(request, f"{user.get_username()}: {exc.message}", messages.ERROR)
                continue
            closed += 1
        if closed:
            self.message_user(request, f"Closed {closed} account(s).")
