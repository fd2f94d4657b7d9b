"""Stripe Checkout: credit comes only from the signed ``checkout.session.completed`` webhook.

Events are built as Stripe sends them and signed as Stripe signs them (``Stripe-Signature:
t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed by the endpoint secret>``), then
POSTed through the whole Django stack with CSRF checks on. Nothing here is mocked except
Stripe's HTTP API when a Checkout session is created.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from decimal import Decimal
from unittest import mock

import pytest
import stripe
from django.test import Client
from django.urls import reverse

from billing.models import AccountKind, LedgerTransaction, TopUp
from billing.payments import StripeCheckoutProvider
from billing.selectors import account_balance
from billing.services.ledger import system_account, wallet_for
from billing.services.topups import top_up_create
from billing.webhooks import (
    BAD_PAYLOAD,
    BAD_SIGNATURE,
    NOTE_DUPLICATE,
    NOTE_UNKNOWN_TOP_UP,
)

D = Decimal
SECRET = "whsec_test_vitrine_0123456789abcdef"
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def stripe_settings(settings):
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    settings.STRIPE_SECRET_KEY = "sk_test_vitrine"
    return settings


@pytest.fixture
def payer(django_user_model):
    return django_user_model.objects.create_user("payer", "payer@example.com", "pw-payer-1")


@pytest.fixture
def top_up(payer) -> TopUp:
    return top_up_create(user=payer, credit=D("10"), provider="stripe")  # pays 10.50


@pytest.fixture
def stripe_client() -> Client:
    # Stripe sends no CSRF token: the view must be exempt, and the test must prove it.
    return Client(enforce_csrf_checks=True)


def checkout_event(
    top_up: TopUp,
    *,
    event_id: str = "evt_1PvitrineTest000001",
    event_type: str = "checkout.session.completed",
    amount_total: int | None = None,
    currency: str = "usd",
    payment_status: str = "paid",
    reference: str | None = None,
) -> str:
    cents = int(top_up.total * 100) if amount_total is None else amount_total
    reference = str(top_up.pk) if reference is None else reference
    event = {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
        "data": {
            "object": {
                "id": "cs_test_a1vitrine",
                "object": "checkout.session",
                "amount_subtotal": cents,
                "amount_total": cents,
                "client_reference_id": reference,
                "currency": currency,
                "customer_details": {"email": "payer@example.com", "name": None},
                "metadata": {"top_up": reference},
                "mode": "payment",
                "payment_intent": "pi_3Pvitrine",
                "payment_status": payment_status,
                "status": "complete",
                "success_url": "http://testserver/account/?top_up=pending",
            }
        },
    }
    return json.dumps(event)


def sign(payload: str, *, secret: str = SECRET, timestamp: int | None = None) -> str:
    """The Stripe-Signature header, computed as Stripe documents it."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def deliver(client: Client, payload: str, signature: str | None):
    headers = {} if signature is None else {"Stripe-Signature": signature}
    return client.post(
        reverse("billing:stripe_webhook"),
        data=payload,
        content_type="application/json",
        headers=headers,
    )


def money(user) -> dict[str, Decimal]:
    return {
        "wallet": wallet_for(user).balance,
        "fee_revenue": account_balance(system_account(AccountKind.FEE_REVENUE)),
        "clearing": account_balance(system_account(AccountKind.PAYMENT_CLEARING)),
    }


NOTHING = {"wallet": D(0), "fee_revenue": D(0), "clearing": D(0)}
CREDITED = {"wallet": D("10"), "fee_revenue": D("0.50"), "clearing": D("-10.50")}


def test_our_signature_is_stripes_signature():
    payload = '{"id": "evt_1"}'
    assert sign(payload, timestamp=1700000000) == (
        stripe.WebhookSignature.generate_signature_header(payload, SECRET, timestamp=1700000000)
    )


def test_a_signed_event_replayed_ten_times_credits_once(stripe_client, payer, top_up):
    payload = checkout_event(top_up)
    signature = sign(payload)

    responses = [deliver(stripe_client, payload, signature) for _ in range(10)]

    assert [r.status_code for r in responses] == [200] * 10
    assert responses[0].json()["received"] is True
    assert all(r.json()["note"] == NOTE_DUPLICATE.format(top_up=top_up.pk) for r in responses[1:])
    assert money(payer) == CREDITED
    top_up.refresh_from_db()
    assert top_up.status == "completed"
    assert top_up.completed_at is not None
    assert top_up.provider_event_id == "evt_1PvitrineTest000001"
    assert top_up.provider_session_id == "cs_test_a1vitrine"
    txn = LedgerTransaction.objects.get(kind="top_up")
    assert top_up.transaction == txn
    assert sorted(txn.entries.values_list("amount", flat=True)) == [
        D("-10.50"),
        D("0.50"),
        D("10"),
    ]


def test_stripe_retries_are_re_signed_and_still_credit_once(stripe_client, payer, top_up):
    payload = checkout_event(top_up)
    now = int(time.time())
    for attempt in range(3):
        response = deliver(stripe_client, payload, sign(payload, timestamp=now - 60 * attempt))
        assert response.status_code == 200
    assert money(payer) == CREDITED


def test_a_second_event_for_the_same_top_up_credits_nothing_more(stripe_client, payer, top_up):
    for event_id, event_type in [
        ("evt_first", "checkout.session.completed"),
        ("evt_second", "checkout.session.completed"),
        ("evt_third", "checkout.session.async_payment_succeeded"),
    ]:
        payload = checkout_event(top_up, event_id=event_id, event_type=event_type)
        assert deliver(stripe_client, payload, sign(payload)).status_code == 200
    assert money(payer) == CREDITED
    top_up.refresh_from_db()
    assert top_up.provider_event_id == "evt_first"


def _tamper(payload: str) -> str:
    return payload.replace('"amount_total": 1050', '"amount_total": 1050000')


@pytest.mark.parametrize(
    "make_signature",
    [
        pytest.param(lambda payload: sign(payload, secret="whsec_someone_else"), id="wrong-secret"),
        pytest.param(lambda payload: sign(_tamper(payload)), id="signed-another-body"),
        pytest.param(lambda payload: None, id="no-header"),
        pytest.param(lambda payload: "", id="empty-header"),
        pytest.param(lambda payload: "garbage", id="garbage-header"),
        pytest.param(lambda payload: sign(payload).split(",")[0], id="timestamp-only"),
        pytest.param(lambda payload: sign(payload).replace("v1=", "v0="), id="wrong-scheme"),
        pytest.param(
            lambda payload: sign(payload, timestamp=int(time.time()) - 3600), id="an-hour-old"
        ),
    ],
)
def test_a_bad_signature_gets_400_and_credits_nothing(stripe_client, payer, top_up, make_signature):
    payload = checkout_event(top_up)
    response = deliver(stripe_client, payload, make_signature(payload))
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": BAD_SIGNATURE,
            "type": "invalid_request_error",
            "code": "invalid_signature",
            "param": None,
        }
    }
    assert money(payer) == NOTHING
    top_up.refresh_from_db()
    assert (top_up.status, top_up.provider_event_id) == ("pending", None)
    assert not LedgerTransaction.objects.exists()


def test_a_tampered_body_with_the_original_signature_gets_400(stripe_client, payer, top_up):
    payload = checkout_event(top_up)
    response = deliver(stripe_client, _tamper(payload), sign(payload))
    assert response.status_code == 400
    assert money(payer) == NOTHING


def test_without_a_configured_secret_nothing_is_trusted(stripe_client, settings, payer, top_up):
    settings.STRIPE_WEBHOOK_SECRET = ""
    payload = checkout_event(top_up)
    response = deliver(stripe_client, payload, sign(payload, secret=""))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_signature"
    assert money(payer) == NOTHING


def test_a_signed_payload_that_is_not_an_event_gets_400(stripe_client, payer):
    for payload in ["not json", "[1, 2]", '{"object": "list"}']:
        response = deliver(stripe_client, payload, sign(payload))
        assert response.status_code == 400, payload
        assert response.json()["error"]["message"] == BAD_PAYLOAD
    assert money(payer) == NOTHING


@pytest.mark.parametrize(
    ("amount_total", "currency"), [(1049, "usd"), (1000, "usd"), (105000, "usd"), (1050, "eur")]
)
def test_a_wrong_amount_is_not_credited(
    stripe_client, payer, top_up, caplog, amount_total, currency
):
    payload = checkout_event(top_up, amount_total=amount_total, currency=currency)
    with caplog.at_level(logging.WARNING, logger="billing.webhooks"):
        responses = [deliver(stripe_client, payload, sign(payload)) for _ in range(2)]
    assert [r.status_code for r in responses] == [200, 200]
    assert money(payer) == NOTHING
    top_up.refresh_from_db()
    assert top_up.status == "failed"
    assert not LedgerTransaction.objects.exists()
    assert str(top_up.pk) in caplog.text
    # A later event with the right amount does not revive a failed top-up either.
    right = checkout_event(top_up, event_id="evt_right_amount")
    assert deliver(stripe_client, right, sign(right)).status_code == 200
    assert money(payer) == NOTHING


@pytest.mark.parametrize(
    "reference", [str(uuid.uuid4()), "not-a-uuid", ""], ids=["unknown-uuid", "not-a-uuid", "empty"]
)
def test_an_unknown_top_up_gets_200_and_a_warning(stripe_client, payer, caplog, reference):
    ghost = TopUp(pk=uuid.uuid4(), total=D("10.50"))
    payload = checkout_event(ghost, reference=reference)
    with caplog.at_level(logging.WARNING, logger="billing.webhooks"):
        response = deliver(stripe_client, payload, sign(payload))
    assert response.status_code == 200
    assert response.json()["note"] == NOTE_UNKNOWN_TOP_UP.format(ref=reference)
    assert "evt_1PvitrineTest000001" in caplog.text
    assert not LedgerTransaction.objects.exists()


# checkout.session.expired marks its top-up failed (tests/billing/test_money_probe_s40.py).
@pytest.mark.parametrize("event_type", ["payment_intent.succeeded", "charge.refunded"])
def test_other_event_types_are_ignored_with_200(stripe_client, payer, top_up, event_type):
    payload = checkout_event(top_up, event_type=event_type)
    response = deliver(stripe_client, payload, sign(payload))
    assert response.status_code == 200
    assert money(payer) == NOTHING
    top_up.refresh_from_db()
    assert top_up.status == "pending"


def test_an_unpaid_session_waits_for_the_async_payment(stripe_client, payer, top_up):
    unpaid = checkout_event(top_up, event_id="evt_completed", payment_status="unpaid")
    assert deliver(stripe_client, unpaid, sign(unpaid)).status_code == 200
    assert money(payer) == NOTHING
    top_up.refresh_from_db()
    assert top_up.status == "pending"

    paid = checkout_event(
        top_up, event_id="evt_async", event_type="checkout.session.async_payment_succeeded"
    )
    assert deliver(stripe_client, paid, sign(paid)).status_code == 200
    assert money(payer) == CREDITED


def test_the_checkout_line_writes_money_as_the_site_does(payer):
    from billing.payments import product_name

    top_up = top_up_create(user=payer, credit=D("10000"), provider="stripe")
    assert product_name(top_up) == "Vitrine credit $10,000 + 5% platform fee"  # was $10000.00


def test_the_webhook_accepts_only_post(client):
    assert client.get(reverse("billing:stripe_webhook")).status_code == 405


def test_checkout_is_created_for_the_top_up_total_in_cents(rf, payer):
    top_up = top_up_create(user=payer, credit=D("12"), provider="stripe")  # pays 12.60
    fake = stripe.checkout.Session.construct_from(
        {"id": "cs_test_created", "url": "https://checkout.stripe.com/c/pay/cs_test_created"},
        "sk_test_vitrine",
    )
    with mock.patch.object(
        stripe.checkout.Session, "create", autospec=True, return_value=fake
    ) as create:
        url = StripeCheckoutProvider().start(top_up=top_up, request=rf.get("/account/"))

    assert url == "https://checkout.stripe.com/c/pay/cs_test_created"
    create.assert_called_once()
    params = create.call_args.kwargs
    assert params["api_key"] == "sk_test_vitrine"
    assert params["mode"] == "payment"
    assert params["client_reference_id"] == str(top_up.pk)
    assert params["metadata"] == {"top_up": str(top_up.pk)}
    (item,) = params["line_items"]
    assert item["quantity"] == 1
    assert item["price_data"]["currency"] == "usd"
    assert item["price_data"]["unit_amount"] == 1260
    assert item["price_data"]["product_data"]["name"] == "Vitrine credit $12 + 5% platform fee"
    assert params["success_url"].startswith("http://testserver/")
    top_up.refresh_from_db()
    assert top_up.provider_session_id == "cs_test_created"
    # Coming back from Checkout grants nothing: only the webhook does.
    assert top_up.status == "pending"
    assert money(payer) == NOTHING
