"""During a rolling deploy the previous release keeps running beside the migrated database:
its web makes jobs with webhooks and its code makes webhook secrets, naming only the
columns it knows. The columns added since (playground/0014 ``site_url``, billing/0013
``previous_ciphertext``) are NOT NULL, so they carry a database default (playground/0016,
billing/0014): without one every call with a webhook on the old web answered 500
(NotNullViolation, seen on PostgreSQL with the previous release's web during ``migrate``).
The inserts below are the ones the previous release's ORM sends."""

from __future__ import annotations

import io

import pytest
from django.db import connection
from django.utils import timezone
from PIL import Image

from billing.models import WebhookSecret
from playground.models import WebhookDelivery
from tests import factories

pytestmark = pytest.mark.django_db


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_delivery_inserted_without_site_url_as_the_previous_release_does():
    job = factories.finished_run(card=factories.card(), image_bytes=_png(), result=[])
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO playground_webhookdelivery"
            " (job_id, url, status, attempts, last_status_code, last_error,"
            " last_attempt_at, delivered_at) VALUES (%s, %s, %s, 0, NULL, '', NULL, NULL)",
            [
                job.pk.hex if connection.vendor == "sqlite" else job.pk,
                "https://a.test/h",
                "waiting",
            ],
        )
    assert WebhookDelivery.objects.get(job=job).site_url == ""


def test_a_webhook_secret_inserted_without_previous_ciphertext_as_the_previous_release_does():
    user = factories.user()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billing_webhooksecret (user_id, ciphertext, created_at, rotated_at)"
            " VALUES (%s, %s, %s, NULL)",
            [user.pk, "x", timezone.now()],
        )
    secret = WebhookSecret.objects.get(user=user)
    assert (secret.previous_ciphertext, secret.previous_expires_at) == ("", None)
