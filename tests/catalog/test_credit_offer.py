"""A coming-soon page offers the sign-up credit (seeds 002 and 004: "Sign in for free
credit and be ready when it lands") when there is one, and promises none when there is not
(production's default is no sign-up credit)."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db
RTDETR = "/models/PekingU/rtdetr_r50vd"


@pytest.fixture
def seeded():
    call_command("seed_catalog", stdout=io.StringIO())


@pytest.mark.parametrize(("credit", "offered"), [(Decimal("1"), True), (Decimal("0"), False)])
def test_the_credit_is_offered_only_when_there_is_one(client, seeded, settings, credit, offered):
    settings.VITRINE_SIGNUP_CREDIT = credit
    page = client.get(RTDETR).content.decode()
    assert ("for $1 of free credit" in page) is offered
    assert ('class="credit-offer"' in page) is offered


def test_a_member_is_not_asked_to_sign_up(client, seeded, settings, django_user_model):
    settings.VITRINE_SIGNUP_CREDIT = Decimal("1")
    client.force_login(django_user_model.objects.create_user("m", "m@example.com", "pw-long-1"))
    assert 'class="credit-offer"' not in client.get(RTDETR).content.decode()
