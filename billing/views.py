"""The account pages: sign-up, the dashboard, API keys, BYOK keys, top-ups, usage export.

Views are thin: validate a form, call one service, render or redirect. Objects that belong
to a user are fetched through ``_get_<obj>_for_user()``, which answers 404 for anyone
else's. A new API key's plaintext exists only in the one response that shows it: it is
never put in the session, in a flash message or in a log line.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login, logout, update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm, UserCreationForm
from django.core.validators import EmailValidator
from django.db import connection
from django.db.models import Count, Q, Sum
from django.db.models.functions import Lower, TruncDate
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.html import escape
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_POST

from billing.emails import mail_domain
from billing.key_formats import key_format_error
from billing.limits import SIGNUP_LIMITED, signup_admit, signup_refused
from billing.models import (
    ApiKey,
    Charge,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    ProviderKey,
    TopUp,
)
from billing.payments import PROVIDERS, available_providers
from billing.services.accounts import (
    PASSWORD_CHANGED_SUBJECT,
    account_close,
    account_close_refusal,
    notice_send,
)
from billing.services.keys import KEY_PREFIX, api_key_create, api_key_revoke, provider_key_save
from billing.services.ledger import wallet_for
from billing.services.signup import (
    SIGNUP_CREDIT_REASON,
    email_verification_send,
    email_verification_token,
    signup_credit_amount,
    signup_credit_pending,
    signup_email_verify,
)
from billing.services.topups import top_up_create, top_up_quote
from billing.services.webhook_secrets import webhook_secret_get, webhook_secret_rotate
from catalog import ratelimit
from catalog.errors import ApplicationError
from catalog.models import ModelCard, PriceRoute
from catalog.pricing import EXAMPLE_TOP_UP, TOP_UP_FEE_RATE, format_usd

EMAIL_TAKEN = "An account with this email address already exists."
PROVIDER_UNAVAILABLE = "That payment method is not available."
PAYMENT_START_FAILED = "The payment provider could not start the payment; please try again."
KEY_REVOKED = "The key “{name}” is revoked; calls with it now answer 401."
PROVIDER_KEY_SAVED = "Your {provider} key ending in {last4} is saved."
PROVIDER_KEY_DELETED = "Your {provider} key ending in {last4} is deleted."
WEBHOOK_SECRET_ROTATED = (
    "Your webhook signing secret is new: webhooks sent from now on are signed with it."
)
WEBHOOK_SECRET_ROTATED_PREVIOUS = (
    "Your webhook signing secret is new: webhooks sent from now on are signed with it, and "
    "also with the previous one until {until} (24 hours), so a receiver still checking the "
    "previous one keeps accepting them meanwhile."
)
TOP_UP_DONE = "Payment received: your credit is in your wallet."
TOP_UP_PENDING = "Payment received by the provider; your credit appears once it is confirmed."
PASSWORD_CHANGED = "Your password is changed. Your other signed-in sessions are signed out."
ACCOUNT_DELETED = "Your account is deleted."
WRONG_PASSWORD = "That is not your password."
FORFEIT_REQUIRED = "Tick the box to confirm that your {amount} of credit will be lost."
# A signed-in session asks for its password again before changing it or deleting the
# account: someone who found the session open could otherwise try passwords here without
# the sign-in page's limit.
PASSWORD_CHECKS = 5
PASSWORD_CHECK_WINDOW = 15 * 60
PASSWORD_CHECKS_LIMITED = "Too many password attempts; try again in {minutes} min."
RECENT_USAGE = 25
RECENT_TOP_UPS = 25
QUOTE_EXAMPLES = (EXAMPLE_TOP_UP, Decimal(25), Decimal(100))
# Wallet movements listed beside the top-ups (calls are under usage, top-ups above).
CREDIT_KINDS = (
    LedgerTransaction.Kind.GRANT,
    LedgerTransaction.Kind.REFUND,
    LedgerTransaction.Kind.REVERSAL,
)
CSV_COLUMNS = ["day", "api_key", "model", "images", "cost_usd", "byok", "would_be_cost_usd"]
NO_KEY = "(no key: playground)"
EMAIL_VERIFIED_CREDIT = "Your email is verified: {amount} of credit is in your wallet."
EMAIL_VERIFIED = (
    "Your email is verified. This address already received its sign-up credit, "
    "so no more was added."
)
VERIFY_SENT = "We sent a new verification link to {email}."
VERIFY_NOT_SENT = "We could not send a verification link to {email}; try again later."
VERIFY_RESEND_LIMITED = "You asked for several links this hour; use the last one or wait."
VERIFY_RESENDS_PER_HOUR = 3
# Each top-up started is a payment provider's API call (a Stripe Checkout Session) made by a
# pages worker while it waits, and a pending row: unbounded, one signed-in form could spend
# the platform's provider rate limit and hold the pages pool (50 started in a row, session
# 40, with nothing paid). A refused start calls no provider and writes nothing.
TOP_UPS_STARTED_PER_HOUR = 20
TOP_UPS_LIMITED = (
    "You started {limit} payments in the last hour; finish one of them, or try again in "
    "{minutes} min."
)

logger = logging.getLogger(__name__)


# --- forms ---------------------------------------------------------------------------
class SignupForm(UserCreationForm):
    email = forms.EmailField(
        required=True, help_text="We mail a link to verify it; also for password resets."
    )

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def clean_email(self) -> str:
        email = self.cleaned_data["email"]
        # Kept with its domain as the mail is sent to it: an invisible or full-width
        # character there made a new address for the same inbox, and a domain no mail can
        # be sent to (a bidi override) made the verification mail a 500 after the account
        # was created.
        local, _, domain = email.rpartition("@")
        ascii_domain = mail_domain(domain)
        if ascii_domain is None:
            raise forms.ValidationError(EmailValidator.message, code="invalid")
        try:
            email = f"{local}@{ascii_domain.encode('ascii').decode('idna')}"  # über, not xn--
        except UnicodeError:  # an ASCII label that is not valid punycode ("xn--zz")
            email = f"{local}@{ascii_domain}"
        if get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError(EMAIL_TAKEN)
        return email

    def full_clean(self) -> None:
        super().full_clean()
        if not self._errors:
            return
        # Sent back with errors, the first field at fault takes the focus, not Username
        # (Django's autofocus): a keyboard or screen-reader user lands on what to fix,
        # also with no script (site.js does the same for every form when it runs).
        for field in self.fields.values():
            field.widget.attrs.pop("autofocus", None)
        wrong = next((name for name in self.fields if name in self._errors), None)
        if wrong is not None:
            self.fields[wrong].widget.attrs["autofocus"] = True

    @classmethod
    def refused(cls, data, message: str) -> SignupForm:
        """A form showing ``message`` alone, with the username and email that were typed, and
        not validated: its fields' verdicts (e.g. EMAIL_TAKEN) are what the limit withholds."""
        form = cls(initial={name: data.get(name, "") for name in ("username", "email")})
        form.cleaned_data = {}  # an unbound form has none; add_error expects them
        form.add_error(None, message)
        return form


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="e.g. “laptop” or “production”.")
    monthly_spend_cap = forms.DecimalField(
        label="Monthly spend cap ($)",
        required=False,
        min_value=Decimal(0),
        max_digits=12,
        decimal_places=2,
        help_text="Empty: no cap.",
    )
    # Checkboxes named as the site names the models, A to Z whatever the case: a Ctrl-click
    # list of raw ids put "PekingU/..." first (a case-sensitive sort by organisation).
    allowed_models = forms.ModelMultipleChoiceField(
        queryset=ModelCard.objects.none(),
        required=False,
        help_text="Leave every box unticked to allow every model.",
        widget=forms.CheckboxSelectMultiple,
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        models = self.fields["allowed_models"]
        models.queryset = (
            ModelCard.objects.published()
            .select_related("organisation")
            .order_by(Lower("display_name"), Lower("organisation__slug"), "slug")
        )
        models.label_from_instance = lambda card: card.display_name


def byok_provider_choices() -> list[tuple[str, str]]:
    """One choice per provider route slug that accepts users' own keys."""
    routes = PriceRoute.objects.filter(is_active=True, byok_available=True).order_by("slug")
    choices: dict[str, str] = {}
    for slug, provider in routes.values_list("slug", "provider"):
        choices.setdefault(slug, provider)
    return list(choices.items())


def _with_provider_names(keys) -> list[ProviderKey]:
    """The user's provider keys, each with ``provider_name``: its route's provider as the
    pricing box names it ("Cloudflare Workers AI"), the slug where no route has it now."""
    names = dict(byok_provider_choices())
    keys = list(keys)
    for key in keys:
        key.provider_name = names.get(key.provider, key.provider)
    return keys


class ProviderKeyForm(forms.Form):
    # The dashboard shows this form beside TopUpForm, which has a `provider` field too: its
    # own ids keep each <label for=...> on its own control (same field names, same POST).
    AUTO_ID = "id_byok_%s"

    provider = forms.ChoiceField(choices=())
    # render_value=False: a submitted key is never written back into the page.
    secret = forms.CharField(
        label="Key",
        # Django writes help_text into the page unescaped: escape the <placeholders>.
        help_text=escape("Cloudflare: your account id and an API token, as <account id>:<token>."),
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("auto_id", self.AUTO_ID)
        super().__init__(*args, **kwargs)
        self.fields["provider"].choices = byok_provider_choices()

    def clean(self) -> dict:
        cleaned = super().clean()
        provider, secret = cleaned.get("provider"), cleaned.get("secret")
        if provider and secret:
            # Checked now, not at the first call: a malformed key would fail every job.
            flavours = PriceRoute.objects.filter(
                slug=provider, is_active=True, byok_available=True
            ).values_list("schema_flavour", flat=True)
            for flavour in set(flavours):
                problem = key_format_error(flavour, secret.strip())
                if problem:
                    self.add_error("secret", problem)
                    break
        return cleaned


class TopUpForm(forms.Form):
    AUTO_ID = "id_top_up_%s"  # distinct from ProviderKeyForm's `provider` on the same page

    # Whole cents and the bounds are the service's rules (one place, one message each); the
    # view puts its refusal beside this field. step/min/max let the browser say so first.
    # No max_digits: its "no more than 12 digits in total" would answer 99999999999999 or
    # 10.0000000000001 in place of the service's "largest top-up" / "whole cents".
    credit = forms.DecimalField(
        label="Credit ($)",
        initial=EXAMPLE_TOP_UP,
        widget=forms.NumberInput(attrs={"step": "0.01"}),
    )
    provider = forms.ChoiceField(
        choices=(),
        widget=forms.RadioSelect,
        error_messages={"invalid_choice": PROVIDER_UNAVAILABLE, "required": PROVIDER_UNAVAILABLE},
    )

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("auto_id", self.AUTO_ID)
        super().__init__(*args, **kwargs)
        # Read per form, not at import: the bounds are settings.
        self.fields["credit"].widget.attrs |= {
            "min": f"{Decimal(settings.VITRINE_MIN_TOP_UP):f}",
            "max": f"{Decimal(settings.VITRINE_MAX_TOP_UP):f}",
        }
        providers = available_providers()
        self.fields["provider"].choices = [(p.slug, p.label) for p in providers]
        if providers:
            self.fields["provider"].initial = providers[0].slug


# --- access --------------------------------------------------------------------------
def _get_api_key_for_user(user, key_id: int) -> ApiKey:
    return get_object_or_404(ApiKey, pk=key_id, user=user)


def _get_provider_key_for_user(user, key_id: int) -> ProviderKey:
    return get_object_or_404(ProviderKey, pk=key_id, user=user)


# --- reads for the dashboard -----------------------------------------------------------
def _quotes() -> list[dict]:
    """Fee and total for a few credit amounts, from the minimum up: the price before paying."""
    minimum = Decimal(settings.VITRINE_MIN_TOP_UP)
    maximum = Decimal(settings.VITRINE_MAX_TOP_UP)
    amounts = sorted({a for a in (minimum, *QUOTE_EXAMPLES) if minimum <= a <= maximum})
    quotes = []
    for credit in amounts:
        fee, total = top_up_quote(credit)
        quotes.append(
            {"credit": format_usd(credit), "fee": format_usd(fee), "total": format_usd(total)}
        )
    return quotes


def _wallet_credits(wallet: LedgerAccount) -> list[dict]:
    """The wallet's money in and out besides top-ups and calls: sign-up credit, operators'
    grants and refunds, corrections. Without them the page's balance would not add up
    from what it lists (a refund took money out of the wallet with no line saying so)."""
    entries = (
        LedgerEntry.objects.filter(account=wallet, transaction__kind__in=CREDIT_KINDS)
        .select_related("transaction")
        .order_by("-created_at", "-id")[:RECENT_TOP_UPS]
    )
    rows = []
    for entry in entries:
        txn = entry.transaction
        what = txn.get_kind_display()
        if txn.kind == LedgerTransaction.Kind.GRANT and txn.memo == SIGNUP_CREDIT_REASON:
            what = SIGNUP_CREDIT_REASON
        rows.append(
            {
                "at": entry.created_at,
                "kind": txn.kind,
                "what": what,
                "amount": format_usd(entry.amount),
            }
        )
    return rows


def _dashboard_context(request: HttpRequest, **overrides) -> dict:
    user = request.user
    wallet = wallet_for(user)
    charges = Charge.objects.filter(user=user)
    recent = charges.select_related("card__organisation", "api_key")[:RECENT_USAGE]
    keys = ApiKey.objects.filter(user=user).prefetch_related("allowed_models__organisation")
    # The account's totals in one pass over its charges, not one each (three passes over
    # 405,000 charges: 274 ms of a busy account's dashboard, session 42).
    byok_used = Q(byok=True) & ~Q(status=Charge.Status.VOIDED)
    totals = charges.aggregate(
        held=Sum("amount", filter=Q(status=Charge.Status.RESERVED)),
        byok_saved=Sum("would_be_amount", filter=byok_used),
        byok_calls=Count("pk", filter=byok_used),
    )
    # A bound form with errors (from a failed POST) replaces the blank one.
    blank = {"key_form": ApiKeyForm, "provider_key_form": ProviderKeyForm, "top_up_form": TopUpForm}
    forms_ = {
        name: overrides[name] if name in overrides else make() for name, make in blank.items()
    }
    notice = {"done": TOP_UP_DONE, "pending": TOP_UP_PENDING}.get(request.GET.get("top_up", ""))
    return {
        # A wallet just created holds the int default 0, not yet a Decimal from the database.
        "balance": format_usd(Decimal(wallet.balance)),
        "held": format_usd(totals["held"] or Decimal(0)),
        "usage": [
            {
                "charge": c,
                "model_id": c.card.model_id,
                "key_name": c.api_key.name if c.api_key else "",
                # What the call cost the wallet: a voided charge (failed, cancelled) was
                # given back, so $0, as the API's `cost` and My runs say; its column adds
                # up to what the wallet paid.
                "amount": format_usd(c.cost),
                "would_be": format_usd(c.would_be_amount),
            }
            for c in recent
        ],
        "keys": [
            {
                "key": k,
                "display": f"{KEY_PREFIX}{k.prefix}…",
                "cap": format_usd(k.monthly_spend_cap) if k.monthly_spend_cap is not None else "",
                "models": [card.model_id for card in k.allowed_models.all()],
            }
            for k in keys
        ],
        "key_form": forms_["key_form"],
        "new_key": overrides.get("new_key"),
        "provider_keys": _with_provider_names(
            ProviderKey.objects.filter(user=user).order_by("provider")
        ),
        "provider_key_form": forms_["provider_key_form"],
        "byok_saved": format_usd(totals["byok_saved"] or Decimal(0)),
        "byok_calls": totals["byok_calls"],
        "top_ups": [
            {
                "top_up": t,
                "credit": format_usd(t.credit),
                "fee": format_usd(t.fee),
                "total": format_usd(t.total),
                "provider": PROVIDERS[t.provider].label if t.provider in PROVIDERS else t.provider,
            }
            for t in TopUp.objects.filter(user=user)[:RECENT_TOP_UPS]
        ],
        "credits": _wallet_credits(wallet),
        "top_up_form": forms_["top_up_form"],
        "quotes": _quotes(),
        "minimum_top_up": format_usd(Decimal(settings.VITRINE_MIN_TOP_UP)),
        "fee_percent": int(TOP_UP_FEE_RATE * 100),
        "top_up_notice": notice,
        # Sign-up credit waits for a verified email (billing/services/signup.py).
        "signup_credit": (
            format_usd(signup_credit_amount()) if signup_credit_pending(user=user) else None
        ),
    }


def _render_dashboard(request: HttpRequest, **overrides) -> HttpResponse:
    context = _dashboard_context(request, **overrides)
    # Made on first view: the secret a job's webhook is signed with (playground/webhooks.py).
    context["webhook_secret"] = webhook_secret_get(user=request.user)
    response = render(request, "billing/dashboard.html", context)
    # Balances, keys and (once) a new key's secret: never stored by a browser or a proxy.
    add_never_cache_headers(response)
    return response


# --- pages -----------------------------------------------------------------------------
@never_cache  # as the sign-in page: a form with this visitor's CSRF token
@sensitive_post_parameters("password1", "password2")
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("billing:dashboard")
    if request.method != "POST":
        return render(request, "registration/signup.html", _signup_context(SignupForm()))
    # Every sign-up form sent counts, valid or not, and is counted before it is validated:
    # a form with errors tells whether an address has an account (EMAIL_TAKEN), so asking
    # that is bounded by the same per-IP limit as creating accounts. A refused form is not
    # validated at all.
    decision = signup_admit(request)
    if not decision.allowed:
        message = SIGNUP_LIMITED.format(minutes=ratelimit.minutes(decision.retry_after))
        form = SignupForm.refused(request.POST, message)
        page = render(request, "registration/signup.html", _signup_context(form))
        return signup_refused(page, decision)
    form = SignupForm(request.POST)
    if form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        _send_verification(request, user)
        return redirect("billing:dashboard")
    return render(request, "registration/signup.html", _signup_context(form))


def _signup_context(form) -> dict:
    amount = signup_credit_amount()
    return {"form": form, "signup_credit": format_usd(amount) if amount > 0 else None}


def _send_verification(request: HttpRequest, user) -> bool:
    """Mail the verification link; False if it could not be sent. The account is made by
    then: a refused mail (an address kept from before the sign-up form checked domains,
    whose mail raised UnicodeError; a mail server that is down) is logged, never a 500."""
    token = email_verification_token(user=user)
    url = request.build_absolute_uri(reverse("billing:verify_email", args=[token]))
    try:
        email_verification_send(user=user, verify_url=url)
    except Exception:
        logger.warning("the verification mail to user %s could not be sent", user.pk, exc_info=True)
        return False
    return True


def verify_email(request: HttpRequest, token: str) -> HttpResponse:
    """The link from the sign-up mail: it works signed in or not (e.g. on a phone)."""
    try:
        result = signup_email_verify(token=token)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("billing:dashboard" if request.user.is_authenticated else "billing:login")
    if result.granted:
        messages.success(request, EMAIL_VERIFIED_CREDIT.format(amount=format_usd(result.granted)))
    else:
        messages.info(request, EMAIL_VERIFIED)
    return redirect("billing:dashboard")


@login_required
@require_POST
def verify_email_resend(request: HttpRequest) -> HttpResponse:
    bucket = ratelimit.Bucket("verify-resend", str(request.user.pk), VERIFY_RESENDS_PER_HOUR, 3600)
    if not ratelimit.hit(bucket).allowed:
        messages.error(request, VERIFY_RESEND_LIMITED)
    elif _send_verification(request, request.user):
        messages.info(request, VERIFY_SENT.format(email=request.user.email))
    else:
        messages.error(request, VERIFY_NOT_SENT.format(email=request.user.email))
    return redirect("billing:dashboard")


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return _render_dashboard(request)


@login_required
@require_POST
@sensitive_variables("plaintext")
def api_key_create_view(request: HttpRequest) -> HttpResponse:
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return _render_dashboard(request, key_form=form)
    try:
        key, plaintext = api_key_create(
            user=request.user,
            name=form.cleaned_data["name"],
            monthly_spend_cap=form.cleaned_data["monthly_spend_cap"],
            allowed_models=form.cleaned_data["allowed_models"],
        )
    except ApplicationError as exc:  # too_many_api_keys: said beside the form
        form.add_error(None, exc.message)
        return _render_dashboard(request, key_form=form)
    # Rendered, not redirected: the plaintext lives only in this one response.
    return _render_dashboard(request, new_key={"key": key, "plaintext": plaintext})


@login_required
@require_POST
def api_key_revoke_view(request: HttpRequest, key_id: int) -> HttpResponse:
    key = _get_api_key_for_user(request.user, key_id)
    api_key_revoke(key=key)
    messages.success(request, KEY_REVOKED.format(name=key.name))
    return redirect("billing:dashboard")


@login_required
@require_POST
@sensitive_post_parameters("secret")
def provider_key_save_view(request: HttpRequest) -> HttpResponse:
    form = ProviderKeyForm(request.POST)
    if not form.is_valid():
        return _render_dashboard(request, provider_key_form=form)
    try:
        key = provider_key_save(
            user=request.user,
            provider=form.cleaned_data["provider"],
            secret=form.cleaned_data["secret"],
        )
    except ApplicationError as exc:
        form.add_error("secret", exc.message)
        return _render_dashboard(request, provider_key_form=form)
    messages.success(request, PROVIDER_KEY_SAVED.format(provider=key.provider, last4=key.last4))
    return redirect("billing:dashboard")


@login_required
@require_POST
def webhook_secret_rotate_view(request: HttpRequest) -> HttpResponse:
    row = webhook_secret_rotate(user=request.user)
    until = row.previous_valid_until()
    if until is None:  # the first secret, made by this rotation: nothing signed before it
        messages.success(request, WEBHOOK_SECRET_ROTATED)
    else:
        moment = timezone.localtime(until).strftime("%Y-%m-%d %H:%M %Z")
        messages.success(request, WEBHOOK_SECRET_ROTATED_PREVIOUS.format(until=moment))
    return redirect(reverse("billing:dashboard") + "#webhooks")


@login_required
@require_POST
def provider_key_delete_view(request: HttpRequest, key_id: int) -> HttpResponse:
    key = _get_provider_key_for_user(request.user, key_id)
    key.delete()
    messages.success(request, PROVIDER_KEY_DELETED.format(provider=key.provider, last4=key.last4))
    return redirect("billing:dashboard")


@login_required
@require_POST
def top_up_start_view(request: HttpRequest) -> HttpResponse:
    form = TopUpForm(request.POST)
    if not form.is_valid():
        return _render_dashboard(request, top_up_form=form)
    provider = PROVIDERS[form.cleaned_data["provider"]]
    bucket = ratelimit.Bucket("top-up-user", str(request.user.pk), TOP_UPS_STARTED_PER_HOUR, 3600)
    decision = ratelimit.hit(bucket)
    if not decision.allowed:
        minutes = ratelimit.minutes(decision.retry_after)
        form.add_error(None, TOP_UPS_LIMITED.format(limit=decision.limit, minutes=minutes))
        response = _render_dashboard(request, top_up_form=form)
        response.status_code = 429
        response["Retry-After"] = str(decision.retry_after)
        return response
    try:
        top_up = top_up_create(
            user=request.user, credit=form.cleaned_data["credit"], provider=provider.slug
        )
    except ApplicationError as exc:
        # A refused amount (not whole cents, out of bounds) is the user's input: shown beside
        # the field, with what they typed, like any other form error.
        form.add_error("credit", exc.message)
        return _render_dashboard(request, top_up_form=form)
    try:
        url = provider.start(top_up=top_up, request=request)
    except _provider_errors() as exc:
        # A payment that never started is marked failed, so the history does not show a
        # top-up waiting forever; nothing was credited (credit needs a confirmed payment).
        logger.warning("top-up %s: %s could not start", top_up.pk, provider.slug, exc_info=True)
        TopUp.objects.filter(pk=top_up.pk, status=TopUp.Status.PENDING).update(
            status=TopUp.Status.FAILED
        )
        message = exc.message if isinstance(exc, ApplicationError) else PAYMENT_START_FAILED
        messages.error(request, message)
        return redirect("billing:dashboard")
    return redirect(url)


def _provider_errors() -> tuple[type[Exception], ...]:
    """What a provider may raise for a payment it cannot start (evaluated only then)."""
    import stripe

    return (ApplicationError, stripe.StripeError)


@login_required
def top_up_receipt_view(request: HttpRequest, top_up_id) -> HttpResponse:
    """A paid top-up's receipt, to print or save: what was bought, the fee, what was paid,
    when and how. Only the owner's, and only once the payment completed (404 otherwise:
    a pending or failed payment bought nothing)."""
    top_up = get_object_or_404(
        TopUp, pk=top_up_id, user=request.user, status=TopUp.Status.COMPLETED
    )
    provider = PROVIDERS.get(top_up.provider)
    context = {
        "top_up": top_up,
        "number": str(top_up.pk).split("-")[0].upper(),
        "credit": format_usd(top_up.credit),
        "fee": format_usd(top_up.fee),
        "total": format_usd(top_up.total),
        "fee_percent": int(TOP_UP_FEE_RATE * 100),
        "provider": provider.label if provider else top_up.provider,
    }
    response = render(request, "billing/receipt.html", context)
    add_never_cache_headers(response)
    return response


# --- usage export ----------------------------------------------------------------------
@dataclass
class UsageRow:
    day: date
    api_key: str
    model: str
    byok: bool
    images: int = 0
    cost: Decimal = Decimal(0)
    would_be: Decimal = Decimal(0)


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV
# Injection"): =HYPERLINK(...) in a key's name would be a live link in the user's sheet.
CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text_cell(value: str) -> str:
    """A text cell the user controls, safe to open in a spreadsheet: one that would start a
    formula gets a leading ``'`` (the sheet shows it as text; the characters are kept)."""
    return f"'{value}" if value.startswith(CSV_FORMULA_STARTS) else value


def _exact(amount: Decimal) -> str:
    """12.5, 0.0002, 0: the exact value, no exponent, no float."""
    return f"{amount.normalize():f}" if amount else "0"


def usage_by_day(user) -> list[UsageRow]:
    """Posted charges summed per day (UTC) x API key x model x BYOK.

    Summed in Python with Decimal rather than in SQL: SQLite adds decimals as floats, and an
    export is a statement of account that must match the ledger to the last digit.
    Reserved (still running) and voided (failed, free) charges are not usage.
    """
    rows: dict[tuple, UsageRow] = {}
    posted = Charge.objects.filter(user=user, status=Charge.Status.POSTED)
    if connection.vendor == "postgresql":
        return _usage_by_day_sql(posted)
    charges = posted.select_related("api_key", "card__organisation").order_by("created_at")
    for charge in charges.iterator():
        key = charge.api_key
        label = f"{key.name} ({KEY_PREFIX}{key.prefix})" if key else NO_KEY
        group = (timezone.localdate(charge.created_at), label, charge.card.model_id, charge.byok)
        if group not in rows:
            rows[group] = UsageRow(*group)
        row = rows[group]
        row.images += charge.units
        row.cost += charge.amount
        row.would_be += charge.would_be_amount
    return [rows[group] for group in sorted(rows)]


def _usage_by_day_sql(posted) -> list[UsageRow]:
    """``usage_by_day`` summed by PostgreSQL, whose numeric sums are exact: one row per
    group leaves the database, not one per charge. Read in Python, a busy account's year
    (370,000 posted charges, each built with its key, model and organisation) took 36 s,
    past a pages worker's timeout; summed here, 0.3-0.5 s (session 42)."""
    groups = (
        posted.annotate(day=TruncDate("created_at"))
        .values("day", "api_key_id", "card_id", "byok")
        .annotate(images=Sum("units"), cost=Sum("amount"), would_be=Sum("would_be_amount"))
        .order_by()
    )
    groups = list(groups)
    keys = ApiKey.objects.in_bulk({g["api_key_id"] for g in groups} - {None})
    cards = ModelCard.objects.select_related("organisation").in_bulk({g["card_id"] for g in groups})
    rows: dict[tuple, UsageRow] = {}
    for g in groups:
        key = keys.get(g["api_key_id"])
        label = f"{key.name} ({KEY_PREFIX}{key.prefix})" if key else NO_KEY
        group = (g["day"], label, cards[g["card_id"]].model_id, g["byok"])
        if group not in rows:
            rows[group] = UsageRow(*group)
        row = rows[group]
        row.images += g["images"]
        row.cost += g["cost"]
        row.would_be += g["would_be"]
    return [rows[group] for group in sorted(rows)]


@login_required
def usage_csv(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="vitrine-usage.csv"'
    add_never_cache_headers(response)
    writer = csv.writer(response)
    writer.writerow(CSV_COLUMNS)
    for row in usage_by_day(request.user):
        writer.writerow(
            [
                row.day.isoformat(),
                csv_text_cell(row.api_key),
                csv_text_cell(row.model),
                row.images,
                _exact(row.cost),
                "yes" if row.byok else "no",
                _exact(row.would_be),
            ]
        )
    return response


# --- password and account --------------------------------------------------------------
def _password_check_admit(request: HttpRequest):
    """One attempt at the current password from this account's session (any form)."""
    bucket = ratelimit.Bucket(
        "password-check", str(request.user.pk), PASSWORD_CHECKS, PASSWORD_CHECK_WINDOW
    )
    return ratelimit.hit(bucket)


def _limited(response: HttpResponse, decision) -> HttpResponse:
    response.status_code = 429
    response["Retry-After"] = str(decision.retry_after)
    return response


@login_required
@sensitive_post_parameters("old_password", "new_password1", "new_password2")
def password_change_view(request: HttpRequest) -> HttpResponse:
    """Change the password knowing the current one (the reset link needs the mailbox)."""
    form = PasswordChangeForm(request.user, request.POST if request.method == "POST" else None)
    page = "registration/password_change_form.html"
    if request.method == "POST":
        decision = _password_check_admit(request)
        if not decision.allowed:
            form = PasswordChangeForm(request.user)
            form.cleaned_data = {}
            minutes = ratelimit.minutes(decision.retry_after)
            form.add_error(None, PASSWORD_CHECKS_LIMITED.format(minutes=minutes))
            return _limited(render(request, page, {"form": form}), decision)
        if form.is_valid():
            user = form.save()
            # This session stays signed in; every other one (its hash changed) is not.
            update_session_auth_hash(request, user)
            notice_send(
                to=user.email,
                subject=PASSWORD_CHANGED_SUBJECT,
                template="registration/password_changed_email.txt",
                context={
                    "username": user.get_username(),
                    "reset_url": request.build_absolute_uri(reverse("billing:password_reset")),
                },
            )
            messages.success(request, PASSWORD_CHANGED)
            return redirect(reverse("billing:dashboard") + "#account-settings")
    response = render(request, page, {"form": form})
    add_never_cache_headers(response)
    return response


class AccountDeleteForm(forms.Form):
    password = forms.CharField(
        label="Your password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    forfeit = forms.BooleanField(required=False)

    def __init__(self, *args, user, balance: Decimal, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user, self.balance = user, balance
        if balance > 0:
            self.fields[
                "forfeit"
            ].label = f"I understand that my {format_usd(balance)} of credit will be lost."
        else:
            del self.fields["forfeit"]

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError(WRONG_PASSWORD)
        return password

    def clean_forfeit(self) -> bool:
        if not self.cleaned_data.get("forfeit"):
            raise forms.ValidationError(FORFEIT_REQUIRED.format(amount=format_usd(self.balance)))
        return True


def _account_delete_page(request: HttpRequest, form: AccountDeleteForm) -> HttpResponse:
    user = request.user
    context = {
        "form": form,
        "balance": format_usd(form.balance),
        "refusal": account_close_refusal(user=user),
        "keys": ApiKey.objects.filter(user=user, revoked_at__isnull=True).count(),
        "runs": user.job_set.count(),
    }
    response = render(request, "registration/account_delete.html", context)
    add_never_cache_headers(response)
    return response


@login_required
@sensitive_post_parameters("password")
def account_delete_view(request: HttpRequest) -> HttpResponse:
    balance = Decimal(wallet_for(request.user).balance)
    if request.method != "POST":
        return _account_delete_page(request, AccountDeleteForm(user=request.user, balance=balance))
    refusal = account_close_refusal(user=request.user)
    if refusal:
        # Said before the password is checked: the page asks to try again in a minute, and
        # a refused try must not use one of the five attempts (four such tries locked the
        # form for 15 minutes; found from outside, probe D). account_close checks again.
        form = AccountDeleteForm(user=request.user, balance=balance)
        form.cleaned_data = {}
        form.add_error(None, refusal)
        response = _account_delete_page(request, form)
        response.status_code = 409
        return response
    decision = _password_check_admit(request)
    if not decision.allowed:
        form = AccountDeleteForm(user=request.user, balance=balance)
        form.cleaned_data = {}
        minutes = ratelimit.minutes(decision.retry_after)
        form.add_error(None, PASSWORD_CHECKS_LIMITED.format(minutes=minutes))
        return _limited(_account_delete_page(request, form), decision)
    form = AccountDeleteForm(request.POST, user=request.user, balance=balance)
    if not form.is_valid():
        return _account_delete_page(request, form)
    try:
        closed = account_close(user=request.user)
    except ApplicationError as exc:  # a payment still open, a run still running
        form.add_error(None, exc.message)
        response = _account_delete_page(request, form)
        response.status_code = exc.status
        return response
    logout(request)
    message = ACCOUNT_DELETED
    if closed.images_left:
        message += (
            f" {closed.images_left} of your uploads could not be deleted just now (the "
            "storage did not answer); they are deleted within "
            f"{settings.VITRINE_UPLOAD_RETENTION} hours."
        )
    messages.success(request, message)
    return redirect("catalog:home")
