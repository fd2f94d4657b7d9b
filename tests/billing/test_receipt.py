"""A paid top-up's receipt: the owner's only, only once paid, with the figures the ledger
holds (credit, fee, total), as a page to print or save."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import TopUp
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def payment_settings(settings):
    settings.VITRINE_DEV_PAYMENTS = True
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = ""
    settings.VITRINE_MIN_TOP_UP = Decimal("5")


def receipt(top_up) -> str:
    return reverse("billing:top_up_receipt", args=[top_up.pk])


def test_a_paid_top_up_has_a_receipt_linked_from_the_dashboard(owner_client, owner):
    owner_client.post(reverse("billing:top_up_start"), {"credit": "1234.56", "provider": "dev"})
    top_up = TopUp.objects.get()
    dashboard = owner_client.get(reverse("billing:dashboard")).content.decode()
    assert receipt(top_up) in dashboard

    page = owner_client.get(receipt(top_up))

    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    html = page.content.decode()
    lines = re.findall(r'<td class="num">(?:<strong>)?([^<]+)', html)
    assert lines == ["$1,234.56", "$61.73", "$1,296.29"]  # 5% half up to the cent
    assert str(top_up.pk) in html and str(top_up.pk).split("-")[0].upper() in html
    assert "owner@example.com" in html and "Development" in html


def test_no_receipt_for_a_payment_not_made_or_for_someone_else(owner_client, owner):
    pending = TopUp.objects.create(
        user=owner, credit=10, fee=Decimal("0.50"), total=Decimal("10.50"), provider="stripe"
    )
    failed = TopUp.objects.create(
        user=owner, credit=10, fee=Decimal("0.50"), total=Decimal("10.50"), provider="stripe",
        status=TopUp.Status.FAILED,
    )  # fmt: skip
    dashboard = owner_client.get(reverse("billing:dashboard")).content.decode()
    assert receipt(pending) not in dashboard and receipt(failed) not in dashboard
    assert owner_client.get(receipt(pending)).status_code == 404
    assert owner_client.get(receipt(failed)).status_code == 404

    stranger = factories.user()
    owner_client.post(reverse("billing:top_up_start"), {"credit": "10", "provider": "dev"})
    paid = TopUp.objects.get(status=TopUp.Status.COMPLETED)
    owner_client.force_login(stranger)
    assert owner_client.get(receipt(paid)).status_code == 404
    owner_client.logout()
    assert owner_client.get(receipt(paid)).status_code == 302  # to sign in
