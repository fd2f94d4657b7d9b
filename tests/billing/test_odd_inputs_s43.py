"""Odd inputs in billing (session 43's outside probe): money in the admin's object names,
and email addresses whose domain the mail spells differently (below).

Money in the admin's object names, as the site prints it.

A price of $0.0000000005 typed as ``5e-10`` was saved exactly, and the pages and the API
printed it so, but the admin named its price change "...: $5E-10 from ..." (the route's
page, the history inline, Recent actions), and a ledger entry, a charge or a top-up of an
amount under a millionth was "1.000E-7": Python's ``str`` of a Decimal read back with the
column's ten places. They use the site's one format (``catalog.pricing.format_usd``).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from billing.emails import normalise_email
from billing.models import Charge, LedgerEntry, TopUp
from billing.services.signup import signup_credit_claim, signup_credit_pending
from billing.views import EMAIL_TAKEN
from catalog.models import PriceChange
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_tiny_price_change_is_named_in_dollars_not_exponents():
    route = factories.route(price=Decimal("5e-10"))
    change = PriceChange.objects.filter(route=route).latest()
    name = str(change)
    assert "$0.0000000005 from " in name
    assert "E" not in name.split(":")[-1]


def test_a_tiny_ledger_entry_is_named_in_dollars():
    user = factories.funded(factories.user(), "0.0000001")
    entry = LedgerEntry.objects.get(account__user=user)
    assert str(entry).endswith(": $0.0000001")


def test_tiny_charges_and_top_ups_are_named_in_dollars():
    user = factories.user()
    charge = Charge(job_id=uuid.uuid4(), amount=Decimal("0.0000001000"), status="posted")
    assert str(charge).startswith("charge $0.0000001 for job ")
    top_up = TopUp(user=user, credit=Decimal("1E+3"), fee=0, total=0, status="pending")
    assert str(top_up).startswith("top-up $1,000 for ")


# --- email addresses as the mail is sent ------------------------------------------------
# A domain with an invisible character (a soft hyphen, a zero-width space or joiner) or a
# full-width letter passed the sign-up form as a new address, and the mail went to the
# plain domain: four accounts on farm@example.org each verified and each got the sign-up
# credit. A domain holding a bidi override passed the form too, the account was created,
# and its verification mail raised UnicodeError: a 500.
SAME_INBOX = [
    "farm@exa\u00admple.org",
    "farm@\uff45xample.org",
    "farm@exa\u200bmple.org",
    "farm@exa\u200dmple.org",
    "farm@EXAMPLE.org",
]


def _signup(client, username: str, email: str):
    password = "Corr3ct-horse-battery!"
    data = {"username": username, "email": email, "password1": password, "password2": password}
    return client.post(reverse("billing:signup"), data)


@pytest.mark.parametrize("email", SAME_INBOX)
def test_an_address_the_mail_sends_to_an_existing_inbox_is_taken(client, email):
    assert _signup(Client(), "first", "farm@example.org").status_code == 302
    response = _signup(client, "second", email)
    assert response.status_code == 200
    assert EMAIL_TAKEN in response.content.decode()
    assert not get_user_model().objects.filter(username="second").exists()


def test_an_address_no_mail_can_be_sent_to_is_a_form_error(client, settings, mailoutbox):
    settings.VITRINE_SIGNUP_CREDIT = Decimal(1)  # so that a verification mail is sent
    response = _signup(client, "bidi", "zed@x\u202e.org")
    assert response.status_code == 200
    assert "Enter a valid email address." in response.content.decode()
    assert not get_user_model().objects.filter(username="bidi").exists()
    assert mailoutbox == []


def test_an_international_domain_is_kept_readable_and_matched_in_any_spelling(client):
    assert _signup(client, "u1", "zed@\u00dcBER.example").status_code == 302
    assert get_user_model().objects.get(username="u1").email == "zed@\u00fcber.example"
    response = _signup(Client(), "u2", "zed@xn--ber-goa.example")
    assert EMAIL_TAKEN in response.content.decode()


@pytest.mark.parametrize("email", SAME_INBOX[:4])
def test_the_sign_up_credit_is_once_per_inbox_whatever_the_domain_spelling(settings, email):
    # Accounts made before the form kept the mail's spelling still share one claim.
    settings.VITRINE_SIGNUP_CREDIT = Decimal(1)
    first = factories.user(email="farm@example.org")
    twin = factories.user(email=email)
    assert signup_credit_claim(user=first) == Decimal(1)
    assert not signup_credit_pending(user=twin)
    assert signup_credit_claim(user=twin) == Decimal(0)
    assert normalise_email(email) == "farm@example.org"


def test_a_verification_link_no_mail_can_carry_is_said_not_a_500(client, settings, mailoutbox):
    # An account kept from before the form checked domains: "send a new link" raised the
    # mail's UnicodeError, a 500; now the dashboard says it could not be sent.
    settings.VITRINE_SIGNUP_CREDIT = Decimal(1)
    user = factories.user(email="zed@x\u202e.org")
    client.force_login(user)
    response = client.post(reverse("billing:verify_email_resend"), follow=True)
    assert response.status_code == 200
    assert "We could not send a verification link to" in response.content.decode()
    assert mailoutbox == []
