"""What a paying user sees of their money, page by page, found by probing the running
site from outside (session 40): every page states a call's cost the way the API does, in
the site's one money format.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from PIL import Image

from billing.models import TopUp
from billing.services.charges import charge_post, charge_reserve, charge_void
from billing.services.keys import api_key_create
from billing.services.ledger import wallet_for
from billing.services.signup import SIGNUP_CREDIT_REASON
from billing.services.topups import (
    TOP_UP_TOO_LARGE,
    TOP_UP_TOO_SMALL,
    WHOLE_CENTS,
    credit_grant,
    credit_refund,
    top_up_complete,
    top_up_create,
)
from billing.webhooks import NOTE_DUPLICATE, NOTE_UNPAID
from catalog.errors import ApplicationError
from tests import factories
from tests.billing.test_stripe_webhook import SECRET as STRIPE_SECRET
from tests.billing.test_stripe_webhook import checkout_event, deliver, sign
from tests.playground.runtime_helpers import encode

pytestmark = pytest.mark.django_db


def _job(*, user, route, outcome: str | None, key=None):
    job_id = uuid.uuid4()
    charge_reserve(job_id=job_id, user=user, card=route.card, route=route, api_key=key)
    if outcome == "post":
        charge_post(job_id=job_id)
    elif outcome == "void":
        charge_void(job_id=job_id)
    return job_id


def test_the_dashboard_shows_a_failed_call_as_costing_nothing(owner_client, owner):
    # A failed job's charge is voided: the API answers `"cost": "0"` and "nothing was
    # charged". The dashboard listed it at its reserved price ($0.0002), so its Cost
    # column added up to more than the wallet paid.
    factories.funded(owner, "1")
    detr = factories.route(price=Decimal("0.0002"))
    key, _ = api_key_create(user=owner, name="laptop")
    _job(user=owner, route=detr, key=key, outcome="post")
    _job(user=owner, route=detr, key=key, outcome="void")
    _job(user=owner, route=detr, key=key, outcome=None)  # still running: held

    page = owner_client.get(reverse("billing:dashboard"))

    usage = sorted((u["charge"].status, u["amount"]) for u in page.context["usage"])
    assert usage == [("posted", "$0.0002"), ("reserved", "$0.0002"), ("voided", "$0")]
    assert page.context["balance"] == "$0.9996"  # 1 - 0.0002 paid - 0.0002 held
    assert '<tr data-status="voided">' in page.content.decode()
    voided_row = page.content.decode().split('<tr data-status="voided">')[1].split("</tr>")[0]
    assert "<td>$0</td>" in voided_row and "$0.0002" not in voided_row


def test_my_runs_writes_a_cost_as_every_other_page_does(client, owner, settings, tmp_path):
    # My runs wrote "$" + the bare decimal ("$0.5", "$1250"), the dashboard and the run's
    # page "$0.50" and "$1,250" (catalog.pricing.format_usd, the site's one format).
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    factories.funded(owner, "2000")
    image = encode(Image.new("RGB", (32, 32), (200, 10, 10)), "PNG")
    for price in (Decimal("0.5"), Decimal("1250")):
        route = factories.route(price=price)
        job_id = _job(user=owner, route=route, outcome="post")
        factories.finished_run(
            card=route.card, image_bytes=image, result=[], id=job_id, owner=owner,
            cost_ref=str(job_id),
        )  # fmt: skip
    client.force_login(owner)

    html = client.get("/runs").content.decode()

    assert '<td class="num">$0.50</td>' in html
    assert '<td class="num">$1,250</td>' in html


@pytest.mark.parametrize(
    ("credit", "message"),
    [
        # The form's max_digits=12 answered "Ensure that there are no more than 12 digits
        # in total." to both, not the service's reason.
        ("99999999999999", TOP_UP_TOO_LARGE.format(maximum="$10,000")),
        ("1e30", TOP_UP_TOO_LARGE.format(maximum="$10,000")),
        ("10.0000000000001", WHOLE_CENTS),
        ("12.345", WHOLE_CENTS),
        ("0.000000000000001", TOP_UP_TOO_SMALL.format(minimum="$5")),
    ],
)
def test_a_refused_top_up_says_why_whatever_its_digits(owner_client, owner, credit, message):
    response = owner_client.post(
        reverse("billing:top_up_start"), {"credit": credit, "provider": "dev"}
    )

    assert response.status_code == 200
    assert response.context["top_up_form"].errors["credit"] == [message]
    assert not TopUp.objects.filter(user=owner).exists()


def test_the_top_up_service_refuses_a_huge_amount_as_too_large(owner):
    # quantize() to the cent raised decimal.InvalidOperation past 28 digits.
    with pytest.raises(ApplicationError) as raised:
        top_up_create(user=owner, credit=Decimal("1e30"), provider="dev")
    assert raised.value.code == "top_up_too_large"


def test_the_dashboard_lists_every_credit_so_the_balance_adds_up(owner_client, owner):
    # The page listed top-ups and calls only: a sign-up credit or an operator's grant put
    # money in, and an operator's refund took it out, with no line saying so.
    credit_grant(user=owner, amount=Decimal("1"), reason=SIGNUP_CREDIT_REASON)
    top_up_complete(top_up=top_up_create(user=owner, credit=Decimal("10"), provider="dev"))
    credit_grant(user=owner, amount=Decimal("2.5"), reason="outage goodwill", operator=None)
    credit_refund(user=owner, amount=Decimal("4"), reason="asked for it back")
    detr = factories.route(price=Decimal("0.0002"))
    _job(user=owner, route=detr, outcome="post")

    page = owner_client.get(reverse("billing:dashboard"))

    credits = [(row["kind"], row["what"], row["amount"]) for row in page.context["credits"]]
    assert sorted(credits) == [
        ("grant", "Credit granted", "$2.50"),
        ("grant", "Sign-up credit", "$1"),
        ("refund", "Refund", "-$4"),
    ]
    # 10 topped up + 1 + 2.50 - 4 - 0.0002 for the call: what the page shows adds up.
    assert page.context["balance"] == "$9.4998"
    html = page.content.decode()
    assert '<tr data-kind="refund">' in html and "<td>-$4</td>" in html


@pytest.mark.parametrize(
    "event_type", ["checkout.session.expired", "checkout.session.async_payment_failed"]
)
def test_a_checkout_that_is_never_paid_is_not_left_pending(settings, owner, event_type):
    # An abandoned Checkout (expired) or a failed bank debit was "ignored": the top-up
    # stayed "Pending payment" on the dashboard forever.
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    top_up = top_up_create(user=owner, credit=Decimal("10"), provider="stripe")
    unpaid = checkout_event(top_up, event_type=event_type, payment_status="unpaid")

    response = deliver(Client(enforce_csrf_checks=True), unpaid, sign(unpaid, secret=STRIPE_SECRET))

    assert response.status_code == 200
    assert response.json()["note"] == NOTE_UNPAID.format(top_up=top_up.pk)
    top_up.refresh_from_db()
    assert top_up.status == TopUp.Status.FAILED
    assert wallet_for(owner).balance == 0


def test_a_late_unpaid_event_leaves_a_credited_top_up_as_it_is(settings, owner):
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    client = Client(enforce_csrf_checks=True)
    top_up = top_up_create(user=owner, credit=Decimal("10"), provider="stripe")
    paid = checkout_event(top_up, event_id="evt_paid")
    assert deliver(client, paid, sign(paid, secret=STRIPE_SECRET)).status_code == 200
    late = checkout_event(top_up, event_id="evt_late", event_type="checkout.session.expired")

    response = deliver(client, late, sign(late, secret=STRIPE_SECRET))

    assert response.json()["note"] == NOTE_DUPLICATE.format(top_up=top_up.pk)
    top_up.refresh_from_db()
    assert top_up.status == TopUp.Status.COMPLETED
    assert wallet_for(owner).balance == Decimal("10")


def test_a_late_paid_event_for_a_failed_top_up_says_it_failed(settings, owner):
    """Session 46's probe: after an expiry marked the top-up failed, a later paid event was
    answered "was already settled", though nothing had been credited. Nothing is credited
    still; the note says what the top-up is."""
    from billing.webhooks import NOTE_ALREADY_FAILED

    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    client = Client(enforce_csrf_checks=True)
    top_up = top_up_create(user=owner, credit=Decimal("10"), provider="stripe")
    expired = checkout_event(
        top_up, event_id="evt_expired", event_type="checkout.session.expired",
        payment_status="unpaid",
    )  # fmt: skip
    assert deliver(client, expired, sign(expired, secret=STRIPE_SECRET)).status_code == 200
    paid = checkout_event(top_up, event_id="evt_paid_late")

    response = deliver(client, paid, sign(paid, secret=STRIPE_SECRET))

    assert response.json()["note"] == NOTE_ALREADY_FAILED.format(top_up=top_up.pk)
    top_up.refresh_from_db()
    assert top_up.status == TopUp.Status.FAILED
    assert wallet_for(owner).balance == 0
