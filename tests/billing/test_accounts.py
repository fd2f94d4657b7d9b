from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from billing.models import LedgerAccount, LedgerTransaction
from billing.services.ledger import wallet_for
from billing.signals import SIGNUP_CREDIT_REASON, grant_signup_credit
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


def test_signup_logs_the_user_in_and_shows_the_balance(
    client, settings, django_capture_on_commit_callbacks
):
    settings.VITRINE_SIGNUP_CREDIT = Decimal("2.50")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("billing:signup"), signup_data())
    assert response.status_code == 302
    assert response["Location"] == reverse("billing:dashboard")

    page = client.get(reverse("billing:dashboard"))
    assert page.status_code == 200
    assert page.context["user"].username == "ada"
    assert page.context["user"].email == "ada@example.com"
    assert page.context["balance"] == "$2.50"
    assert '<strong class="big">$2.50</strong>' in page.content.decode()


def test_signup_refuses_mismatched_passwords_and_a_taken_email(client):
    factories.user(username="grace", email="grace@example.com")
    data = signup_data("ada") | {"password2": "something-else-42"}
    assert client.post(reverse("billing:signup"), data).status_code == 200
    data = signup_data("ada") | {"email": "GRACE@example.com"}
    response = client.post(reverse("billing:signup"), data)
    assert response.status_code == 200
    assert "An account with this email address already exists." in response.content.decode()
    assert not User.objects.filter(username="ada").exists()


def test_signup_credit_is_granted_once(settings, django_capture_on_commit_callbacks):
    settings.VITRINE_SIGNUP_CREDIT = Decimal("1")
    with django_capture_on_commit_callbacks(execute=True):
        user = factories.user()
    with django_capture_on_commit_callbacks(execute=True):
        user.first_name = "Ada"
        user.save()  # an update, not a creation: nothing more
        # The same creation signal delivered twice still grants once (idempotency key).
        grant_signup_credit(sender=User, instance=user, created=True)

    grants = LedgerTransaction.objects.filter(kind=LedgerTransaction.Kind.GRANT)
    assert [(t.idempotency_key, t.memo) for t in grants] == [
        (f"signup:{user.pk}", SIGNUP_CREDIT_REASON)
    ]
    assert wallet_for(user).balance == Decimal("1")


def test_no_signup_credit_when_the_setting_is_zero(settings, django_capture_on_commit_callbacks):
    settings.VITRINE_SIGNUP_CREDIT = Decimal("0")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        factories.user()
    assert callbacks == []
    assert not LedgerTransaction.objects.exists()
    assert not LedgerAccount.objects.exists()


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
