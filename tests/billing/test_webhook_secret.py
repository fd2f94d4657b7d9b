"""The account's webhook signing secret on the dashboard: shown, encrypted at rest, rotatable."""

from __future__ import annotations

import pytest
from django.urls import reverse

from billing.models import WebhookSecret
from billing.services.webhook_secrets import webhook_secret_get

pytestmark = pytest.mark.django_db


def test_the_dashboard_shows_the_secret_and_rotation_replaces_it(owner_client, other_user):
    page = owner_client.get(reverse("billing:dashboard"))
    owner = page.context["user"]
    secret = webhook_secret_get(user=owner)
    assert secret.startswith("whsec_") and len(secret) > 40
    assert f'<code id="webhook-secret">{secret}</code>' in page.content.decode()
    assert "no-store" in page["Cache-Control"]
    # Encrypted at rest: the row does not hold the plaintext.
    assert secret not in WebhookSecret.objects.get(user=owner).ciphertext
    # Each account has its own.
    assert webhook_secret_get(user=other_user) != secret

    response = owner_client.post(reverse("billing:webhook_secret_rotate"))
    assert response.status_code == 302 and response["Location"].endswith("#webhooks")
    rotated = webhook_secret_get(user=owner)
    assert rotated != secret and rotated.startswith("whsec_")
    assert rotated in owner_client.get(reverse("billing:dashboard")).content.decode()
    assert WebhookSecret.objects.get(user=owner).rotated_at is not None


def test_rotation_needs_a_signed_in_post(owner_client):
    from django.test import Client

    anonymous = Client().post(reverse("billing:webhook_secret_rotate"))
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    assert WebhookSecret.objects.count() == 0
    assert owner_client.get(reverse("billing:webhook_secret_rotate")).status_code == 405
