"""Abuse limits on sign-in, sign-up and password reset: per IP and per account identity."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse

from billing import limits
from billing.emails import normalise_email
from tests import factories
from tests.billing.test_accounts import signup_data

pytestmark = pytest.mark.django_db
User = get_user_model()


def sign_in(client, username: str, password: str, ip: str = "203.0.113.1"):
    return client.post(
        reverse("billing:login"), {"username": username, "password": password}, REMOTE_ADDR=ip
    )


def signed_in(client) -> bool:
    return client.get(reverse("billing:dashboard")).status_code == 200


def test_failed_sign_ins_lock_the_account_even_for_the_right_password(settings, limits_redis):
    settings.VITRINE_LOGIN_FAILURES_PER_USER = 3
    factories.user(username="grace")
    attacker = Client()
    assert [sign_in(attacker, "grace", f"guess-{i}").status_code for i in range(3)] == [200] * 3

    # From another network and browser, with the right password: still locked.
    owner = Client()
    response = sign_in(owner, "grace", "pw-grace-1", ip="198.51.100.2")
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= settings.VITRINE_LOGIN_LOCKOUT_SECONDS
    body = response.content.decode()
    assert "Sign-in is locked for 15 min, even with the right password" in body
    assert not signed_in(owner)

    # Another account from the attacker's IP is not locked by grace's failures.
    factories.user(username="ada")
    assert sign_in(attacker, "ada", "pw-ada-1").status_code == 302


def test_the_owners_known_browser_signs_in_while_others_guesses_lock_the_username(
    settings, limits_redis
):
    settings.VITRINE_LOGIN_FAILURES_PER_USER = 3
    factories.user(username="grace")
    owner = Client()
    assert sign_in(owner, "grace", "pw-grace-1", ip="198.51.100.2").status_code == 302
    owner.post(reverse("billing:logout"))
    # Anyone fills grace's count from elsewhere: a new browser is locked out...
    attacker = Client()
    assert [sign_in(attacker, "grace", f"guess-{i}").status_code for i in range(4)] == [
        200, 200, 200, 429,
    ]  # fmt: skip
    assert sign_in(Client(), "grace", "pw-grace-1", ip="198.51.100.2").status_code == 429
    # ...the browser grace signed in with before is not.
    assert sign_in(owner, "grace", "pw-grace-1", ip="198.51.100.2").status_code == 302
    assert signed_in(owner)
    # Its own wrong guesses are still limited (a stolen laptop gets no more than anyone).
    owner.post(reverse("billing:logout"))
    codes = [sign_in(owner, "grace", f"typo-{i}", ip="198.51.100.2").status_code for i in range(3)]
    assert codes == [200, 200, 200]
    assert sign_in(owner, "grace", "pw-grace-1", ip="198.51.100.2").status_code == 429
    # A forged or tampered cookie is no known browser.
    forged = Client()
    forged.cookies[limits.KNOWN_DEVICE_COOKIE] = (
        owner.cookies[limits.KNOWN_DEVICE_COOKIE].value + "x"
    )
    assert sign_in(forged, "grace", "pw-grace-1", ip="198.51.100.2").status_code == 429
    # The cookie does not name the accounts it is for.
    assert "grace" not in owner.cookies[limits.KNOWN_DEVICE_COOKIE].value.lower()


def test_a_known_browser_for_a_look_alike_username_is_no_key_to_anothers_account(
    settings, limits_redis
):
    # "ẞ" (capital sharp s) lower-cases to "ß", but neither database's case-insensitive
    # match takes them for one (SQLite's is ASCII only; PostgreSQL's UPPER keeps ß), so the
    # sign-up form lets a look-alike of a taken username through.
    from billing.views import SignupForm

    settings.VITRINE_LOGIN_FAILURES_PER_USER = 3
    settings.VITRINE_LOGIN_FAILURES_PER_IP = 1000
    factories.user(username="straße")
    assert SignupForm(data={**signup_data("straẞe"), "email": "m@example.com"}).is_valid()
    factories.user(username="straẞe", email="m@example.com")
    # The attacker signs in to their own look-alike account from a few browsers...
    browsers = []
    for _ in range(3):
        attacker = Client()
        assert sign_in(attacker, "straẞe", "pw-straẞe-1").status_code == 302
        attacker.post(reverse("billing:logout"))
        browsers.append(attacker)
    # ...straße's count fills: anyone guessing its password is refused...
    assert [sign_in(Client(), "straße", f"guess-{i}").status_code for i in range(4)] == [
        200, 200, 200, 429,
    ]  # fmt: skip
    # ...and none of those browsers is a known one for straße's account: each would bring
    # three more guesses at its password, as many browsers as the attacker signs in with.
    checked = sum(
        [sign_in(browser, "straße", f"more-{i}").status_code for i in range(3)].count(200)
        for browser in browsers
    )
    assert checked == 0


def test_signing_in_to_a_look_alike_account_does_not_clear_anothers_failures(
    settings, limits_redis
):
    # straẞe lower-cases to straße: counted under one lower-cased name, the attacker's
    # sign-in to their own look-alike cleared the victim's count between guesses.
    settings.VITRINE_LOGIN_FAILURES_PER_USER = 3
    factories.user(username="straße")
    factories.user(username="straẞe", password="attacker-own-1")
    attacker = Client()
    for round_ in range(2):
        codes = [sign_in(attacker, "straße", f"guess-{round_}-{i}").status_code for i in range(2)]
        assert sign_in(attacker, "straẞe", "attacker-own-1").status_code == 302
        attacker.post(reverse("billing:logout"))
        if round_ == 1:
            assert codes == [200, 429]  # the third and fourth guesses: locked
    assert sign_in(Client(), "straße", "pw-straße-1", ip="198.51.100.9").status_code == 429


def test_failed_sign_ins_from_one_ip_lock_that_ip(settings, limits_redis):
    settings.VITRINE_LOGIN_FAILURES_PER_IP = 3
    factories.user(username="grace")
    client = Client()
    for name in ("a", "b", "c"):  # a spray over many usernames
        assert sign_in(client, name, "guess").status_code == 200
    assert sign_in(client, "grace", "pw-grace-1").status_code == 429
    assert sign_in(Client(), "grace", "pw-grace-1", ip="198.51.100.2").status_code == 302


def test_a_successful_sign_in_clears_the_usernames_failures(settings):
    settings.VITRINE_LOGIN_FAILURES_PER_USER = 3
    factories.user(username="grace")
    client = Client()
    for _ in range(2):
        assert sign_in(client, "grace", "typo").status_code == 200
    assert sign_in(client, "grace", "pw-grace-1").status_code == 302
    client.post(reverse("billing:logout"))
    for _ in range(2):
        assert sign_in(client, "grace", "typo").status_code == 200
    assert sign_in(client, "grace", "pw-grace-1").status_code == 302


def test_sign_ups_are_limited_per_ip(settings, limits_redis):
    settings.VITRINE_SIGNUPS_PER_IP_PER_HOUR = 2
    codes = [
        Client()
        .post(reverse("billing:signup"), signup_data(f"user{i}"), REMOTE_ADDR="203.0.113.5")
        .status_code
        for i in range(3)
    ]
    assert codes == [302, 302, 429]
    refused = Client().post(
        reverse("billing:signup"), signup_data("user9"), REMOTE_ADDR="203.0.113.5"
    )
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert "Too many sign-ups were tried from your network" in refused.content.decode()
    assert User.objects.count() == 2
    other = Client().post(reverse("billing:signup"), signup_data("x"), REMOTE_ADDR="192.0.2.1")
    assert other.status_code == 302


def test_asking_whether_an_email_has_an_account_is_bounded_by_the_sign_up_limit(
    settings, limits_redis
):
    # A form with errors (a taken email) counts like a created account: otherwise the
    # sign-up page would tell, without any limit, which addresses have an account.
    settings.VITRINE_SIGNUPS_PER_IP_PER_HOUR = 3
    for name in ("grace", "alan", "edsger", "barbara"):
        factories.user(username=name, email=f"{name}@example.com")
    taken = "An account with this email address already exists."

    def probe(name: str, ip: str = "203.0.113.7"):
        data = signup_data(f"new-{name}") | {"email": f"{name}@example.com"}
        return Client().post(reverse("billing:signup"), data, REMOTE_ADDR=ip)

    answers = [probe(name) for name in ("grace", "alan", "edsger")]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert all(taken in r.content.decode() for r in answers)
    refused = probe("barbara")
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    body = refused.content.decode()
    assert taken not in body and "Too many sign-ups were tried from your network" in body
    assert 'value="barbara@example.com"' in body  # what was typed is kept, not judged
    # Nor can a valid form be slipped in once the errors used the budget up.
    assert (
        Client()
        .post(reverse("billing:signup"), signup_data("ada"), REMOTE_ADDR="203.0.113.7")
        .status_code
        == 429
    )
    assert not User.objects.filter(username="ada").exists()
    # Another network still gets its answers.
    assert probe("barbara", ip="198.51.100.9").status_code == 200


def test_a_mistyped_sign_up_counts_too(settings):
    settings.VITRINE_SIGNUPS_PER_IP_PER_HOUR = 2
    typo = signup_data("ada") | {"password2": "something-else-42"}
    assert Client().post(reverse("billing:signup"), typo).status_code == 200
    assert Client().post(reverse("billing:signup"), signup_data("ada")).status_code == 302
    assert Client().post(reverse("billing:signup"), signup_data("bob")).status_code == 429
    assert Client().get(reverse("billing:signup")).status_code == 200  # the page itself: free


def test_password_reset_mails_are_limited_per_address_without_telling(settings, limits_redis):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.VITRINE_PASSWORD_RESETS_PER_EMAIL_PER_HOUR = 3
    factories.user(username="grace", email="grace@example.com")
    responses = [
        Client().post(
            reverse("billing:password_reset"),
            {"email": "grace@example.com"},
            REMOTE_ADDR=f"192.0.2.{i}",  # many IPs, one mailbox
        )
        for i in range(6)
    ]
    # Every request gets the same answer: sent (as for an unknown address).
    assert {(r.status_code, r["Location"]) for r in responses} == {
        (302, reverse("billing:password_reset_done"))
    }
    limits.reset_mails_sent()  # sent after the answer
    assert len(mail.outbox) == 3


def test_password_reset_requests_are_limited_per_ip(settings, limits_redis):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.VITRINE_PASSWORD_RESETS_PER_IP_PER_HOUR = 2
    client = Client()
    codes = [
        client.post(
            reverse("billing:password_reset"), {"email": f"n{i}@example.com"}, REMOTE_ADDR="::1"
        ).status_code
        for i in range(3)
    ]
    assert codes == [302, 302, 429]


def test_the_client_ip_comes_from_x_forwarded_for_only_behind_trusted_proxies(settings):
    settings.VITRINE_LOGIN_FAILURES_PER_IP = 2
    settings.VITRINE_TRUSTED_PROXY_COUNT = 1
    factories.user(username="grace")
    client = Client()
    # The proxy appends the real client; what the client wrote itself (left) is ignored.
    for forged in ("1.1.1.1", "2.2.2.2"):
        forwarded = f"{forged}, 203.0.113.9"
        response = client.post(
            reverse("billing:login"),
            {"username": "x", "password": "guess"},
            HTTP_X_FORWARDED_FOR=forwarded,
        )
        assert response.status_code == 200
    response = client.post(
        reverse("billing:login"),
        {"username": "grace", "password": "pw-grace-1"},
        HTTP_X_FORWARDED_FOR="3.3.3.3, 203.0.113.9",
    )
    assert response.status_code == 429
    # Another client behind the same proxy is someone else.
    response = Client().post(
        reverse("billing:login"),
        {"username": "grace", "password": "pw-grace-1"},
        HTTP_X_FORWARDED_FOR="203.0.113.10",
    )
    assert response.status_code == 302


@pytest.mark.parametrize(
    ("email", "normalised"),
    [
        ("Ada@Example.com", "ada@example.com"),
        ("ada+vitrine@example.com", "ada@example.com"),
        ("a.da@example.com", "a.da@example.com"),  # dots matter outside Gmail
        ("A.Da+x@Gmail.com", "ada@gmail.com"),
        ("a.da@googlemail.com", "ada@gmail.com"),
        (" ada@example.com ", "ada@example.com"),
        # A quoted local part reaches the same mailbox as the bare one.
        ('"ada.lovelace"@gmail.com', "adalovelace@gmail.com"),
        ('"Ada.Lovelace+x"@Gmail.com', "adalovelace@gmail.com"),
        ('"ada"@example.com', "ada@example.com"),
        ('"a.da"@example.com', "a.da@example.com"),
        ('"a\\da"@example.com', "ada@example.com"),  # an escaped ordinary character
        ('"a\\"b"@example.com', 'a"b@example.com'),  # an escaped quote is the character
        ('"ada@home"@example.com', "ada@home@example.com"),  # the last @ is the domain's
        ('"ada".lovelace@gmail.com', "adalovelace@gmail.com"),  # quoted pieces between dots
    ],
)
def test_email_normalisation(email, normalised):
    assert normalise_email(email) == normalised


def test_the_admin_sign_in_shares_the_lockout(settings, staff):
    settings.VITRINE_LOGIN_FAILURES_PER_USER = 2
    client = Client()
    url = reverse("admin:login")
    for _ in range(2):
        client.post(url, {"username": "operator", "password": "guess"})
    response = client.post(url, {"username": "operator", "password": "pw-operator-1"})
    assert "Sign-in is locked" in response.content.decode()
    assert client.get(reverse("admin:index")).status_code == 302  # still not signed in
    assert sign_in(Client(), "operator", "pw-operator-1").status_code == 429


def test_the_operators_browser_signed_in_at_the_admin_is_known_there(settings, staff, limits_redis):
    # /admin/login/ shares the username's count but set no device cookie: an operator who
    # signs in only there was locked out by anyone's guesses, for as long as they went on.
    settings.VITRINE_LOGIN_FAILURES_PER_USER = 2
    url = reverse("admin:login")
    operator = Client()
    assert (
        operator.post(url, {"username": "operator", "password": "pw-operator-1"}).status_code == 302
    )
    assert limits.KNOWN_DEVICE_COOKIE in operator.cookies
    operator.post(reverse("admin:logout"))

    attacker = Client()
    for i in range(2):
        attacker.post(url, {"username": "operator", "password": f"guess-{i}"})
    locked = attacker.post(url, {"username": "operator", "password": "pw-operator-1"})
    assert locked.status_code == 429 and int(locked["Retry-After"]) >= 1
    assert "Sign-in is locked" in locked.content.decode()

    response = operator.post(url, {"username": "operator", "password": "pw-operator-1"})
    assert response.status_code == 302
    assert operator.get(reverse("admin:index")).status_code == 200
