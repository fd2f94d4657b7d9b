"""After a rotation of the webhook signing secret the dashboard says until when the
previous one is still accepted (it keeps signing deliveries for 24 hours, beside the new
one: tests/playground/test_webhook_probe_fixes.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.models import WebhookSecret

pytestmark = pytest.mark.django_db


def test_the_dashboard_says_until_when_the_previous_secret_is_accepted(owner_client):
    page = owner_client.get(reverse("billing:dashboard"))
    assert 'id="webhook-secret-previous"' not in page.content.decode()

    response = owner_client.post(reverse("billing:webhook_secret_rotate"), follow=True)

    row = WebhookSecret.objects.get(user=response.context["user"])
    until = timezone.localtime(row.previous_expires_at)
    assert until - timezone.now() > timedelta(hours=23, minutes=59)
    text = response.content.decode()
    assert "The previous secret is still accepted until" in text
    assert f'<time datetime="{until.isoformat()}">{until:%Y-%m-%d %H:%M} UTC</time>' in text
    # The flash message after the button says so too.
    assert f"also with the previous one until {until:%Y-%m-%d %H:%M} UTC" in text
    # Once the 24 hours are over the dashboard no longer mentions it.
    WebhookSecret.objects.filter(pk=row.pk).update(
        previous_expires_at=timezone.now() - timedelta(seconds=1)
    )
    later = owner_client.get(reverse("billing:dashboard")).content.decode()
    assert 'id="webhook-secret-previous"' not in later
