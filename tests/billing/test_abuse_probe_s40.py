"""Session 40's abuse probe, account side: what a client with threads got past the limits."""

from __future__ import annotations

import pytest
from django.contrib.auth.backends import ModelBackend
from django.test import Client
from django.urls import reverse

from tests import factories
from tests.billing.test_account_limits import sign_in

pytestmark = pytest.mark.django_db


class GuessInFlightBackend(ModelBackend):
    """Django's backend, plus: while the first sign-in's password is being checked, a second
    guess for the same account arrives (as from another thread or web process) and its
    answer is kept. It is what several guesses sent at once look like to the limiter."""

    seen: list[int] = []

    def authenticate(self, request, username=None, password=None, **kwargs):
        if not GuessInFlightBackend.seen:
            GuessInFlightBackend.seen.append(0)  # the nested sign-in does not nest again
            response = sign_in(Client(), username, "another-guess", ip="198.51.100.7")
            GuessInFlightBackend.seen.append(response.status_code)
        return super().authenticate(request, username=username, password=password, **kwargs)


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_guesses_in_flight_at_once_cannot_pass_the_lockout(settings, store, request):
    """With one failure allowed, a guess sent while another is being checked is refused:
    the attempt is counted before its password is checked, not after (19 guesses sent at
    once were all checked against a limit of 5)."""
    if store == "redis":
        request.getfixturevalue("limits_redis")
    settings.VITRINE_LOGIN_FAILURES_PER_USER = 1
    settings.AUTHENTICATION_BACKENDS = [f"{__name__}.GuessInFlightBackend"]
    GuessInFlightBackend.seen = []
    factories.user(username="grace")

    assert sign_in(Client(), "grace", "first-guess").status_code == 200
    assert GuessInFlightBackend.seen == [0, 429]  # the second guess was not checked
    assert sign_in(Client(), "grace", "pw-grace-1").status_code == 429  # locked: 1 failure


def test_a_right_password_does_not_count_against_its_ip(settings, limits_redis):
    """A sign-in is counted against its IP while it is checked and taken back when right:
    an office's many good sign-ins never lock its network."""
    settings.VITRINE_LOGIN_FAILURES_PER_IP = 2
    for name in ("ada", "grace", "linus"):
        factories.user(username=name)
        client = Client()
        assert sign_in(client, name, f"pw-{name}-1", ip="203.0.113.20").status_code == 302
    assert sign_in(Client(), "nobody", "guess", ip="203.0.113.20").status_code == 200
    assert sign_in(Client(), "ada", "pw-ada-1", ip="203.0.113.20").status_code == 302


def test_an_account_has_at_most_the_configured_number_of_active_keys(client, settings):
    """Keys were unlimited: 150 a minute from the dashboard's form, and the dashboard lists
    every one (3,150 keys made it a 1.5 MB page). Past the limit the form says to revoke
    one; a revoked key frees its place."""
    from billing.models import ApiKey
    from billing.services.keys import api_key_revoke

    settings.VITRINE_MAX_API_KEYS = 2
    user = factories.user(username="grace")
    client.force_login(user)
    url = reverse("billing:api_key_create")
    codes = [client.post(url, {"name": f"k{i}"}) for i in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 200]
    assert ApiKey.objects.filter(user=user).count() == 2
    page = codes[2].content.decode()
    assert "This account has 2 active API keys, the most it may have" in page
    api_key_revoke(key=ApiKey.objects.filter(user=user).first())
    assert client.post(url, {"name": "k3"}).status_code == 200
    assert ApiKey.objects.filter(user=user, revoked_at__isnull=True).count() == 2
    assert ApiKey.objects.filter(user=user).count() == 3


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_a_sign_in_without_a_password_does_not_reset_the_usernames_failures(
    settings, store, request
):
    """A form with the password left out checks no password, and Django's clean() raises
    nothing for it: it cleared the username's failures as a right password does, so an
    empty password between guesses gave unlimited guesses (16 against a limit of 5, then
    the right password signed in). It counts as an attempt now."""
    if store == "redis":
        request.getfixturevalue("limits_redis")
    settings.VITRINE_LOGIN_FAILURES_PER_USER = 3
    factories.user(username="grace")
    codes = []
    for round_ in range(2):
        codes += [sign_in(Client(), "grace", f"guess-{round_}-{i}").status_code for i in range(2)]
        codes.append(sign_in(Client(), "grace", "").status_code)
    assert codes == [200, 200, 200, 429, 429, 429]
    assert sign_in(Client(), "grace", "pw-grace-1").status_code == 429


def test_payments_started_are_limited_per_account(client, settings, limits_redis, monkeypatch):
    """Each start is a payment provider's API call made while a pages worker waits (a
    Stripe Checkout Session) and a pending row; they were unlimited (50 in a row). Past the
    limit the dashboard says so with a 429, and nothing is created."""
    from billing import views
    from billing.models import TopUp

    settings.VITRINE_DEV_PAYMENTS = True
    settings.STRIPE_SECRET_KEY = ""
    monkeypatch.setattr(views, "TOP_UPS_STARTED_PER_HOUR", 2)
    user = factories.user(username="grace")
    client.force_login(user)
    url = reverse("billing:top_up_start")
    codes = [client.post(url, {"credit": "10", "provider": "dev"}) for _ in range(3)]
    assert [r.status_code for r in codes] == [302, 302, 429]
    assert 1 <= int(codes[2]["Retry-After"]) <= 3600
    assert "You started 2 payments in the last hour" in codes[2].content.decode()
    assert TopUp.objects.filter(user=user).count() == 2
