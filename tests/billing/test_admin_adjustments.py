from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.contrib import admin
from django.urls import reverse

from billing.admin import REFUND_OVER_BALANCE
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
from billing.services.topups import top_up_complete, top_up_create
from tests import factories

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:billing_creditadjustment_add")
BILLING_MODELS = [m for m in admin.site._registry if m._meta.app_label == "billing"]


def adjust(client, user, kind: str, amount: str, reason: str):
    return client.post(ADD_URL, {"user": user.pk, "kind": kind, "amount": amount, "reason": reason})


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
