"""Runs a visitor made before signing in are theirs after (session 47's probe behind nginx):
they belonged to the browser session's key, which Django changes at sign-in, so My runs
lost them and their permalinks answered 404, for good, also after signing out."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from playground.models import Job
from tests import factories
from tests.playground.test_compare_run import cards, start  # noqa: F401  (fixture)
from tests.playground.test_playground_page import JSON

pytestmark = pytest.mark.django_db


def test_a_visitors_tries_become_theirs_when_they_sign_in(
    client,
    cards,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks():  # queued, not sent: no worker needed
        made = start(client, cards[:2])
    assert made.status_code == 202
    url = made.json()["url"]
    someone_elses = Job.objects.create(
        **{f: getattr(Job.objects.first(), f) for f in ("card", "image_sha256", "image_bytes",
           "original_width", "original_height", "width", "height", "queue")},
        session_key="another-browser",
    )  # fmt: skip
    factories.user(username="ada", password="pw-ada-long-1")

    signed_in = client.post(
        reverse("billing:login"), {"username": "ada", "password": "pw-ada-long-1"}
    )

    assert signed_in.status_code == 302
    ada = Job.objects.filter(owner__username="ada")
    assert ada.count() == 2
    assert client.get(url, headers=JSON).status_code == 200
    listing = client.get("/runs").content.decode()
    assert all(f'data-run="{job.pk}"' in listing for job in ada)
    someone_elses.refresh_from_db()
    assert someone_elses.owner is None  # another browser's try stays that browser's
    assert Client().get(url, headers=JSON).status_code == 404
