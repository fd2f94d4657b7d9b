from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from billing import limits
from billing.models import LedgerAccount, LedgerTransaction, SignupCreditClaim
from billing.services.ledger import wallet_for
from billing.services.signup import (
    SIGNUP_CREDIT_REASON,
    email_verification_token,
    signup_email_verify,
)
from catalog.errors import ApplicationError
from tests import factories

pytestmark = pytest.mark.django_db

User = get_user_model()


def signup_data(username: str = "ada") -> dict:
    return {
        "username": username,
        "email": f"{username}@example.com",
        "password1": "a-long-Passphrase-42",
        "password2": "a-long-Passphrase-42",
    }


def verify_link(message) -> str:
    links = re.findall(r"http://testserver(/accounts/verify/\S+/)", message.body)
    assert len(links) == 1, message.body
    return links[0]


def test_signup_logs_the_user_in_and_credit_waits_for_the_verified_email(
    client, settings, mailoutbox
):
    settings.VITRINE_SIGNUP_CREDIT = Decimal("2.50")
    assert "receive $2.50 of free credit" in client.get(reverse("billing:signup")).content.decode()
    response = client.post(reverse("billing:signup"), signup_data())
    assert response.status_code == 302
    assert response["Location"] == reverse("billing:dashboard")

    page = client.get(reverse("billing:dashboard"))
    assert page.status_code == 200
    assert page.context["user"].username == "ada"
    assert page.context["user"].email == "ada@example.com"
    assert page.context["balance"] == "$0"
    body = page.content.decode()
    assert "Verify your email to receive <strong>$2.50</strong> of free credit" in body

    [message] = mailoutbox
    assert message.to == ["ada@example.com"]
    # The link works from another browser (a phone's mail app), signed in or not.
    verified = type(client)().get(verify_link(message), follow=True)
    assert "Your email is verified: $2.50 of credit is in your wallet." in (
        verified.content.decode()
    )
    page = client.get(reverse("billing:dashboard"))
    assert page.context["balance"] == "$2.50"
    assert '<strong class="big">$2.50</strong>' in page.content.decode()
    assert "Verify your email" not in page.content.decode()


def test_signup_refuses_mismatched_passwords_and_a_taken_email(client):
    factories.user(username="grace", email="grace@example.com")
    data = signup_data("ada") | {"password2": "something-else-42"}
    assert client.post(reverse("billing:signup"), data).status_code == 200
    data = signup_data("ada") | {"email": "GRACE@example.com"}
    response = client.post(reverse("billing:signup"), data)
    assert response.status_code == 200
    assert "An account with this email address already exists." in response.content.decode()
    assert not User.objects.filter(username="ada").exists()


def test_signup_credit_is_granted_once_per_mailbox(client, settings, mailoutbox):
    settings.VITRINE_SIGNUP_CREDIT = Decimal("1")
    for name, email in [("ada", "a.da+one@gmail.com"), ("ada2", "ADA@googlemail.com")]:
        response = type(client)().post(
            reverse("billing:signup"), signup_data(name) | {"email": email}
        )
        assert response.status_code == 302
    first, second = (verify_link(m) for m in mailoutbox)
    client.get(first)
    client.get(first)  # a link opened twice
    page = client.get(second, follow=True).content.decode()  # the same inbox, another account
    assert "This address already received its sign-up credit" in page

    grants = LedgerTransaction.objects.filter(kind=LedgerTransaction.Kind.GRANT)
    ada = User.objects.get(username="ada")
    assert [(t.idempotency_key, t.memo) for t in grants] == [
        (f"signup:{ada.pk}", SIGNUP_CREDIT_REASON)
    ]
    assert wallet_for(ada).balance == Decimal("1")
    assert wallet_for(User.objects.get(username="ada2")).balance == Decimal("0")
    assert list(SignupCreditClaim.objects.values_list("email", "user__username")) == [
        ("ada@gmail.com", "ada")
    ]


@pytest.mark.parametrize(
    "emails",
    [
        ("ada.lovelace@gmail.com", '"ada.lovelace"@gmail.com'),
        ('"ada.lovelace"@gmail.com', "ada.lovelace@gmail.com"),
        ('"ada\\.lovelace"@example.com', "ada.lovelace@example.com"),
    ],
)
def test_a_quoted_address_does_not_earn_the_same_mailbox_a_second_credit(
    client, settings, mailoutbox, emails
):
    settings.VITRINE_SIGNUP_CREDIT = Decimal("1")
    for name, email in zip(("ada", "ada2"), emails, strict=True):
        response = type(client)().post(
            reverse("billing:signup"), signup_data(name) | {"email": email}
        )
        assert response.status_code == 302, response.content.decode()
    first, second = (verify_link(m) for m in mailoutbox)
    client.get(first)
    page = client.get(second, follow=True).content.decode()
    assert "This address already received its sign-up credit" in page
    assert wallet_for(User.objects.get(username="ada")).balance == Decimal("1")
    assert wallet_for(User.objects.get(username="ada2")).balance == Decimal("0")
    assert SignupCreditClaim.objects.count() == 1


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda token: token[:-2] + "xx", "This verification link is not valid"),
        (lambda token: "nonsense", "This verification link is not valid"),
    ],
)
def test_a_tampered_verification_link_grants_nothing(client, settings, tamper, message):
    settings.VITRINE_SIGNUP_CREDIT = Decimal("1")
    user = factories.user(username="ada", email="ada@example.com")
    token = tamper(email_verification_token(user=user))
    page = client.get(reverse("billing:verify_email", args=[token]), follow=True)
    assert message in page.content.decode()
    assert not LedgerTransaction.objects.exists()


def test_a_link_for_an_address_the_account_no_longer_has_grants_nothing(settings):
    settings.VITRINE_SIGNUP_CREDIT = Decimal("1")
    user = factories.user(username="ada", email="ada@example.com")
    token = email_verification_token(user=user)
    User.objects.filter(pk=user.pk).update(email="other@example.com")
    with pytest.raises(ApplicationError, match="not valid"):
        signup_email_verify(token=token)
    assert not SignupCreditClaim.objects.exists()


def test_no_signup_credit_and_no_mail_when_the_setting_is_zero(client, settings, mailoutbox):
    settings.VITRINE_SIGNUP_CREDIT = Decimal("0")
    assert client.post(reverse("billing:signup"), signup_data()).status_code == 302
    assert mailoutbox == []
    assert "Verify your email" not in client.get(reverse("billing:dashboard")).content.decode()
    assert not LedgerTransaction.objects.exists()
    assert not LedgerAccount.objects.filter(kind="wallet", balance__gt=0).exists()


def test_login_and_logout(client):
    factories.user(username="grace")
    anonymous = client.get(reverse("catalog:model_list")).content.decode()
    assert ">Sign in</a>" in anonymous

    response = client.post(
        reverse("billing:login"), {"username": "grace", "password": "pw-grace-1"}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("billing:dashboard")
    page = client.get(reverse("billing:dashboard")).content.decode()
    assert ">Account</a>" in page
    assert ">Log out</button>" in page

    assert client.get(reverse("billing:logout")).status_code == 405  # POST only
    response = client.post(reverse("billing:logout"))
    assert response.status_code == 302
    dashboard = client.get(reverse("billing:dashboard"))
    assert dashboard.status_code == 302
    assert dashboard["Location"].startswith(reverse("billing:login"))


def test_wrong_password_is_refused(client):
    factories.user(username="grace")
    response = client.post(reverse("billing:login"), {"username": "grace", "password": "nope"})
    assert response.status_code == 200
    assert "didn't match" in response.content.decode()
    assert client.get(reverse("billing:dashboard")).status_code == 302


def test_password_reset_sends_a_console_email_whose_link_works(client, settings, capsys):
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    factories.user(username="grace", email="grace@example.com")

    response = client.post(reverse("billing:password_reset"), {"email": "grace@example.com"})
    assert response.status_code == 302
    assert response["Location"] == reverse("billing:password_reset_done")

    limits.reset_mails_sent()  # sent after the answer (billing/limits.py)
    printed = capsys.readouterr().out
    assert "To: grace@example.com" in printed
    links = re.findall(r"http://testserver(/accounts/reset/\S+/\S+/)", printed)
    assert len(links) == 1

    # Django swaps the token in the link for a session-held one, then asks for a password.
    form_page = client.get(links[0], follow=True)
    assert form_page.context["validlink"] is True
    new = "another-Passphrase-77"
    done = client.post(
        form_page.redirect_chain[-1][0], {"new_password1": new, "new_password2": new}
    )
    assert done.status_code == 302
    assert done["Location"] == reverse("billing:password_reset_complete")
    assert client.login(username="grace", password=new)
    # The link is single-use.
    assert client.get(links[0], follow=True).context["validlink"] is False
