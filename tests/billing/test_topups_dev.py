from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import AccountKind, LedgerAccount, LedgerTransaction, TopUp
from billing.selectors import account_balance
from billing.services.ledger import wallet_for
from billing.services.topups import TOP_UP_TOO_LARGE, TOP_UP_TOO_SMALL, WHOLE_CENTS
from billing.views import PROVIDER_UNAVAILABLE, TOP_UP_DONE
from tests import factories

pytestmark = pytest.mark.django_db

FEE_SENTENCE = "You pay the pass-through price · 5% applied at credit top-up, not per call."


@pytest.fixture(autouse=True)
def payment_settings(settings):
    settings.VITRINE_DEV_PAYMENTS = True
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = ""
    settings.VITRINE_MIN_TOP_UP = Decimal("5")
    settings.VITRINE_MAX_TOP_UP = Decimal("10000")


def system_balance(kind: str) -> Decimal:
    return account_balance(LedgerAccount.objects.get(kind=kind, user=None))


def test_a_dev_top_up_credits_the_wallet_and_records_the_fee(owner_client, owner):
    response = owner_client.post(
        reverse("billing:top_up_start"), {"credit": "10", "provider": "dev"}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("billing:dashboard") + "?top_up=done"

    assert wallet_for(owner).balance == Decimal("10.00")
    assert system_balance(AccountKind.FEE_REVENUE) == Decimal("0.50")
    assert system_balance(AccountKind.PAYMENT_CLEARING) == Decimal("-10.50")
    top_up = TopUp.objects.get()
    assert (top_up.credit, top_up.fee, top_up.total) == (
        Decimal("10"),
        Decimal("0.50"),
        Decimal("10.50"),
    )
    assert top_up.status == TopUp.Status.COMPLETED

    page = owner_client.get(response["Location"])
    html = page.content.decode()
    assert page.context["balance"] == "$10"
    assert TOP_UP_DONE in html
    row = re.search(r'<tr data-status="completed">.*?</tr>', html, re.S).group(0)
    assert "<td>$10</td><td>$0.50</td><td>$10.50</td>" in row


def _credit_field(html: str) -> str:
    """The credit field's <div>: its label, its input and the errors beside it."""
    return re.search(r'<div class="field"><label for="id_top_up_credit">.*?</div>', html, re.S)[0]


@pytest.mark.parametrize(
    ("credit", "message"),
    [
        ("4.99", TOP_UP_TOO_SMALL.format(minimum="$5")),
        ("0", TOP_UP_TOO_SMALL.format(minimum="$5")),
        ("-5", TOP_UP_TOO_SMALL.format(minimum="$5")),
        ("10000.01", TOP_UP_TOO_LARGE.format(maximum="$10,000")),
        ("5.001", WHOLE_CENTS),
        ("10.005", WHOLE_CENTS),
        ("abc", "Enter a number."),
    ],
)
def test_a_refused_amount_is_kept_with_the_reason_beside_it_and_creates_nothing(
    owner_client, owner, credit, message
):
    response = owner_client.post(
        reverse("billing:top_up_start"), {"credit": credit, "provider": "dev"}
    )
    # The dashboard again, not a redirect: what the user typed is still in the field.
    assert response.status_code == 200
    assert response.context["top_up_form"].errors == {"credit": [message]}
    assert list(response.context["messages"]) == []
    field = _credit_field(response.content.decode())
    assert f'name="credit" value="{credit}"' in field
    assert f'<ul class="errorlist" id="id_top_up_credit_error"><li>{message}</li></ul>' in field
    assert 'aria-invalid="true"' in field
    assert not TopUp.objects.exists()
    assert not LedgerTransaction.objects.exists()
    assert wallet_for(owner).balance == 0


def test_the_credit_input_asks_for_whole_cents_within_the_bounds(owner_client, settings):
    settings.VITRINE_MIN_TOP_UP = Decimal("2.50")
    field = _credit_field(owner_client.get(reverse("billing:dashboard")).content.decode())
    credit = re.search(r"<input [^>]*>", field)[0]
    assert 'type="number"' in credit
    assert 'step="0.01"' in credit
    assert 'min="2.50"' in credit
    assert 'max="10000"' in credit
    assert 'value="10"' in credit


def test_the_dev_provider_is_refused_when_dev_payments_are_off(owner_client, owner, settings):
    settings.VITRINE_DEV_PAYMENTS = False
    page = owner_client.get(reverse("billing:dashboard")).content.decode()
    assert 'value="dev"' not in page
    assert "No payment method is configured" in page

    response = owner_client.post(
        reverse("billing:top_up_start"), {"credit": "10", "provider": "dev"}
    )
    assert response.status_code == 200
    assert PROVIDER_UNAVAILABLE in response.content.decode()
    assert not TopUp.objects.exists()
    assert not LedgerTransaction.objects.exists()


def test_the_dashboard_quotes_fee_and_total(owner_client):
    page = owner_client.get(reverse("billing:dashboard"))
    assert page.context["quotes"][:2] == [
        {"credit": "$5", "fee": "$0.25", "total": "$5.25"},
        {"credit": "$10", "fee": "$0.50", "total": "$10.50"},
    ]
    assert "The smallest top-up is $5." in page.content.decode()


def test_the_dashboard_and_the_model_page_say_the_fee_in_the_same_words(owner_client):
    route = factories.route()
    card = route.card
    model_page = owner_client.get(
        reverse("catalog:model_detail", args=[card.organisation.slug, card.slug])
    )
    dashboard = owner_client.get(reverse("billing:dashboard"))
    assert FEE_SENTENCE in model_page.content.decode()
    assert FEE_SENTENCE in dashboard.content.decode()
