from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client, RequestFactory
from django.urls import reverse

from billing.admin import (
    ADJUSTMENT_ALREADY_RECORDED,
    ADJUSTMENT_FORM_STALE,
    REFUND_OVER_BALANCE,
    AdjustmentAlreadyRecorded,
)
from billing.models import (
    ApiKey,
    CreditAdjustment,
    LedgerTransaction,
    ProviderKey,
)
from billing.services.charges import charge_reserve
from billing.services.keys import api_key_create, provider_key_save
from billing.services.ledger import wallet_for
from billing.services.signup import signup_credit_claim
from billing.services.topups import credit_grant, top_up_complete, top_up_create
from tests import factories
from tests.billing.test_concurrency_pg import race

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:billing_creditadjustment_add")
BILLING_MODELS = [m for m in admin.site._registry if m._meta.app_label == "billing"]


def adjust(client, user, kind: str, amount: str, reason: str, token: Any = "fresh"):
    """Post the add form as the page sends it: with a fresh one-time token unless given one
    (``None`` leaves the token out)."""
    data = {"user": user.pk, "kind": kind, "amount": amount, "reason": reason}
    if token is not None:
        data["request_token"] = str(uuid.uuid4() if token == "fresh" else token)
    return client.post(ADD_URL, data)


def change_url(adjustment: CreditAdjustment) -> str:
    return reverse("admin:billing_creditadjustment_change", args=[adjustment.pk])


def rendered_token(client) -> str:
    html = client.get(ADD_URL).content.decode()
    found = re.search(r'<input type="hidden" name="request_token" value="([^"]+)"', html)
    assert found, "the add form carries no hidden request_token"
    return found.group(1)


def test_a_grant_posts_one_transaction_with_the_operator_and_reason(
    staff_client, staff, other_user
):
    response = adjust(staff_client, other_user, "grant", "5", "Apology for the outage")
    assert response.status_code == 302

    txn = LedgerTransaction.objects.get()
    assert (txn.kind, txn.memo, txn.created_by) == (
        LedgerTransaction.Kind.GRANT,
        "Apology for the outage",
        staff,
    )
    adjustment = CreditAdjustment.objects.get()
    assert (adjustment.transaction, adjustment.created_by) == (txn, staff)
    assert wallet_for(other_user).balance == Decimal("5")


def test_a_refund_posts_one_transaction_with_the_operator_and_reason(
    staff_client, staff, other_user
):
    factories.funded(other_user, "5")
    response = adjust(staff_client, other_user, "refund", "2", "Unused credit, asked by email")
    assert response.status_code == 302

    txn = LedgerTransaction.objects.get(kind=LedgerTransaction.Kind.REFUND)
    assert (txn.memo, txn.created_by) == ("Unused credit, asked by email", staff)
    assert CreditAdjustment.objects.get().transaction == txn
    assert wallet_for(other_user).balance == Decimal("3")


def test_a_refund_larger_than_the_balance_is_a_form_error(staff_client, other_user):
    factories.funded(other_user, "1")
    before = LedgerTransaction.objects.count()
    response = adjust(staff_client, other_user, "refund", "2", "Too much")
    assert response.status_code == 200
    message = REFUND_OVER_BALANCE.format(amount="$2", balance="$1")
    assert response.context["adminform"].form.errors == {"amount": [message]}
    assert message in response.content.decode()
    assert LedgerTransaction.objects.count() == before
    assert not CreditAdjustment.objects.exists()
    assert wallet_for(other_user).balance == Decimal("1")


@pytest.mark.parametrize("amount", ["9999999999.9999999999", "1234567.123456789"])
def test_an_amount_no_database_keeps_exactly_is_a_form_error(staff_client, other_user, amount):
    """SQLite gives a decimal back to 15 significant digits: 9999999999.9999999999 was saved,
    came back as 1E+10, and the adjustments list, the ledger and the user's account page
    answered 500 from then on (catalog/money.py)."""
    response = adjust(staff_client, other_user, "grant", amount, "Big")
    assert response.status_code == 200
    assert "significant digits" in str(response.context["adminform"].form.errors["amount"])
    assert not LedgerTransaction.objects.exists()


def test_the_longest_amount_allowed_is_kept_exactly(staff_client, other_user):
    response = adjust(staff_client, other_user, "grant", "12345.6789012345", "Long")
    assert response.status_code == 302
    assert wallet_for(other_user).balance == Decimal("12345.6789012345")


def test_a_zero_amount_is_a_form_error(staff_client, other_user):
    response = adjust(staff_client, other_user, "grant", "0", "Nothing")
    assert response.status_code == 200
    assert "amount" in response.context["adminform"].form.errors
    assert not LedgerTransaction.objects.exists()


def test_the_add_page_carries_a_fresh_one_time_token(staff_client):
    first, second = rendered_token(staff_client), rendered_token(staff_client)
    assert uuid.UUID(first) != uuid.UUID(second)


def test_a_resent_form_grants_once_and_says_it_was_already_recorded(staff_client, other_user):
    """The operator's defect: a double click (or the browser resending the POST) granted
    twice. The resend carries the same rendered token and is the same adjustment."""
    token = rendered_token(staff_client)
    first = adjust(staff_client, other_user, "grant", "5", "Apology for the outage", token)
    adjustment = CreditAdjustment.objects.get()
    assert first.status_code == 302
    assert adjustment.request_token == uuid.UUID(token)

    resent = adjust(staff_client, other_user, "grant", "5", "Apology for the outage", token)
    assert (resent.status_code, resent["Location"]) == (302, change_url(adjustment))
    assert ADJUSTMENT_ALREADY_RECORDED in [str(m) for m in get_messages(resent.wsgi_request)]
    page = staff_client.get(resent["Location"])
    assert ADJUSTMENT_ALREADY_RECORDED in page.content.decode()

    assert CreditAdjustment.objects.get() == adjustment
    assert LedgerTransaction.objects.filter(kind=LedgerTransaction.Kind.GRANT).count() == 1
    assert wallet_for(other_user).balance == Decimal("5")


def test_a_resent_refund_that_emptied_the_wallet_is_already_recorded(staff_client, other_user):
    # Answered before validation: not "a refund of $5 is more than this wallet holds ($0)".
    factories.funded(other_user, "5")
    token = uuid.uuid4()
    assert (
        adjust(staff_client, other_user, "refund", "5", "Unused credit", token).status_code == 302
    )
    resent = adjust(staff_client, other_user, "refund", "5", "Unused credit", token)
    assert resent.status_code == 302
    assert ADJUSTMENT_ALREADY_RECORDED in [str(m) for m in get_messages(resent.wsgi_request)]
    assert LedgerTransaction.objects.filter(kind=LedgerTransaction.Kind.REFUND).count() == 1
    assert wallet_for(other_user).balance == Decimal("0")


def test_two_forms_with_the_same_fields_are_two_adjustments(staff_client, other_user):
    """Two grants on purpose: each add page has its own token."""
    for _ in range(2):
        token = rendered_token(staff_client)
        response = adjust(staff_client, other_user, "grant", "5", "Two outages", token)
        assert response.status_code == 302
        assert ADJUSTMENT_ALREADY_RECORDED not in [
            str(m) for m in get_messages(response.wsgi_request)
        ]
    assert CreditAdjustment.objects.count() == 2
    assert LedgerTransaction.objects.filter(kind=LedgerTransaction.Kind.GRANT).count() == 2
    assert wallet_for(other_user).balance == Decimal("10")


def test_a_form_shown_again_after_an_error_keeps_its_token(staff_client, other_user):
    token = uuid.uuid4()
    refused = adjust(staff_client, other_user, "grant", "0", "Nothing", token)
    assert refused.status_code == 200
    assert f'name="request_token" value="{token}"' in refused.content.decode()
    assert adjust(staff_client, other_user, "grant", "1", "Fixed", token).status_code == 302
    assert CreditAdjustment.objects.get().request_token == token


@pytest.mark.parametrize("token", [None, "", "not-a-uuid"])
def test_a_form_without_a_valid_token_records_nothing(staff_client, other_user, token):
    response = adjust(staff_client, other_user, "grant", "5", "Stale page", token)
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [ADJUSTMENT_FORM_STALE]
    assert ADJUSTMENT_FORM_STALE in response.content.decode()
    assert not CreditAdjustment.objects.exists()
    assert not LedgerTransaction.objects.exists()


def test_older_adjustments_without_a_token_are_not_taken_for_a_resend(staff_client, other_user):
    # Rows made before the token have NULL: a NULL is never "the same token".
    posting = credit_grant(user=other_user, amount=Decimal("1"), reason="old")
    CreditAdjustment.objects.create(
        user=other_user, kind="grant", amount="1", reason="old", transaction=posting.transaction
    )
    assert adjust(staff_client, other_user, "grant", "2", "New").status_code == 302
    assert CreditAdjustment.objects.count() == 2
    assert wallet_for(other_user).balance == Decimal("3")


def test_a_save_that_loses_the_race_for_its_token_posts_nothing(staff, other_user):
    """The branch a concurrent resend takes (it passed the admin's look-up before the first
    committed): its INSERT of the token fails, and no money moves."""
    token = uuid.uuid4()
    first = CreditAdjustment.objects.create(
        user=other_user, kind="grant", amount="5", reason="first", request_token=token
    )
    request = RequestFactory().post(ADD_URL)
    request.user = staff
    resend = CreditAdjustment(
        user=other_user, kind="grant", amount=Decimal("5"), reason="first", request_token=token
    )
    model_admin = admin.site._registry[CreditAdjustment]

    with pytest.raises(AdjustmentAlreadyRecorded) as raised:
        model_admin.save_model(request, resend, form=None, change=False)

    assert raised.value.adjustment == first
    assert not LedgerTransaction.objects.exists()
    assert wallet_for(other_user).balance == Decimal("0")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row-lock races need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_the_same_form_posted_ten_times_at_once_grants_once(staff, other_user, settings):
    settings.VITRINE_SIGNUP_CREDIT = "0"  # users are committed here: keep the wallet exact
    token = uuid.uuid4()

    def post():
        client = Client()
        client.force_login(staff)
        response = adjust(client, other_user, "grant", "5", "Apology", token)
        return response.status_code, response["Location"]

    outcome = race([post] * 10, threads=10)

    assert outcome.errors == []
    adjustment = CreditAdjustment.objects.get()
    # One recorded it (the admin's usual redirect to the list); nine were told it was.
    changelist = reverse("admin:billing_creditadjustment_changelist")
    assert sorted(outcome.results) == sorted(
        [(302, changelist)] + [(302, change_url(adjustment))] * 9
    )
    assert LedgerTransaction.objects.filter(kind=LedgerTransaction.Kind.GRANT).count() == 1
    assert adjustment.transaction == LedgerTransaction.objects.get()
    assert wallet_for(other_user).balance == Decimal("5")


def test_adjustments_cannot_be_changed_or_deleted(staff_client, other_user):
    adjust(staff_client, other_user, "grant", "5", "Welcome")
    adjustment = CreditAdjustment.objects.get()
    url = reverse("admin:billing_creditadjustment_change", args=[adjustment.pk])
    staff_client.post(url, {"user": other_user.pk, "kind": "grant", "amount": "500", "reason": "x"})
    adjustment.refresh_from_db()
    assert adjustment.amount == Decimal("5")
    delete = reverse("admin:billing_creditadjustment_delete", args=[adjustment.pk])
    assert staff_client.post(delete, {"post": "yes"}).status_code == 403


@pytest.mark.parametrize("model", BILLING_MODELS, ids=lambda m: m.__name__)
def test_staff_reach_every_billing_page_without_secrets(
    staff_client, staff, other_user, model, settings
):
    card_route = factories.byok_route()
    settings.VITRINE_SIGNUP_CREDIT = Decimal("1")
    signup_credit_claim(user=other_user)
    factories.funded(other_user, "20")
    _, plaintext = api_key_create(user=other_user, name="prod")
    provider_key_save(user=other_user, provider="cloudflare", secret="cf-Secret-abcdefgh-9876")
    top_up_complete(top_up=top_up_create(user=other_user, credit=Decimal("10"), provider="dev"))
    charge_reserve(job_id=uuid.uuid4(), user=other_user, card=card_route.card, route=card_route)
    adjust(staff_client, other_user, "grant", "1", "Welcome")

    opts = model._meta
    changelist = staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    assert changelist.status_code == 200
    obj = model.objects.first()
    detail = staff_client.get(
        reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    )
    assert detail.status_code == 200
    key, provider_key = ApiKey.objects.get(), ProviderKey.objects.get()
    for page in (changelist, detail):
        html = page.content.decode()
        for secret in (plaintext, key.secret_hash, provider_key.ciphertext, "abcdefgh"):
            assert secret not in html


def test_revoke_selected_keys_action(staff_client, other_user):
    key, _ = api_key_create(user=other_user, name="leaked")
    kept, _ = api_key_create(user=other_user, name="kept")
    response = staff_client.post(
        reverse("admin:billing_apikey_changelist"),
        {"action": "revoke_selected", "_selected_action": [key.pk]},
    )
    assert response.status_code == 302
    key.refresh_from_db()
    kept.refresh_from_db()
    assert key.revoked_at is not None
    assert kept.revoked_at is None


@pytest.mark.parametrize("typed", ["1000.0000000000", "1E+3"])
def test_an_adjustment_is_titled_in_the_sites_money_format(typed):
    """The admin's titles and messages said "Grant credit 1000.0000000000 to bare"."""
    from django.contrib.auth import get_user_model

    adjustment = CreditAdjustment(
        kind="grant", amount=Decimal(typed), user=get_user_model()(username="bare")
    )
    assert str(adjustment) == "Grant credit $1,000 to bare"
