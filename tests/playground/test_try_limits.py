"""Free tries are limited per client IP and per signed-in user, not per session cookie."""

from __future__ import annotations

import pytest
from django.test import Client

from playground.models import Job
from tests.playground.test_playground_page import JSON, card, try_url, upload  # noqa: F401

pytestmark = pytest.mark.django_db


def attempt(client, card, ip: str):  # noqa: F811
    return client.post(try_url(card), {"image": upload()}, headers=JSON, REMOTE_ADDR=ip)


def test_dropping_the_cookie_does_not_reset_the_tries(
    card,  # noqa: F811
    settings,
    limits_redis,
    django_capture_on_commit_callbacks,
):
    settings.VITRINE_PLAYGROUND_PER_HOUR = 2
    with django_capture_on_commit_callbacks():
        # A fresh client per try: no session cookie is ever sent back.
        responses = [attempt(Client(), card, "203.0.113.7") for _ in range(3)]
        elsewhere = attempt(Client(), card, "198.51.100.9")
    assert [r.status_code for r in responses] == [202, 202, 429]
    refused = responses[2]
    assert 1 <= int(refused["Retry-After"]) <= 3600
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert error["message"].startswith("You have run 2 free tries this hour")
    assert elsewhere.status_code == 202  # another IP has its own tries
    assert Job.objects.count() == 3


def test_a_signed_in_user_is_limited_across_ips(
    client,
    card,  # noqa: F811
    other_user,
    settings,
    limits_redis,
    django_capture_on_commit_callbacks,
):
    settings.VITRINE_PLAYGROUND_PER_HOUR = 2
    client.force_login(other_user)
    with django_capture_on_commit_callbacks():
        responses = [attempt(client, card, f"192.0.2.{i}") for i in range(3)]
    assert [r.status_code for r in responses] == [202, 202, 429]
    # Told what runs more for someone already signed up (they were told to sign up).
    message = responses[2].json()["error"]["message"]
    assert "top up your wallet" in message and "sign up" not in message


def test_the_page_without_javascript_says_when_to_come_back(
    client,
    card,  # noqa: F811
    settings,
    django_capture_on_commit_callbacks,
):
    settings.VITRINE_PLAYGROUND_PER_HOUR = 1
    with django_capture_on_commit_callbacks():
        client.post(try_url(card), {"image": upload()})
        page = client.post(try_url(card), {"image": upload()}, follow=True)
    assert "You have run 1 free tries this hour; try again in 60 min" in page.content.decode()
