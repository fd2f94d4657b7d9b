# ruff: noqa: F811  (the receiver fixture imported from test_api_jobs_live is a parameter here)
"""What an outside probe of webhooks found, each as a receiver sees it: the body's ``url``
is the absolute URL the API gives for the job (it was a bare path with SITE_URL empty), the
body carries no ``webhook`` object (it said ``pending``, 0 attempts, in the delivery that
succeeded), and after a rotation of the signing secret the previous one keeps signing for
24 hours (a receiver being redeployed rejected every event at once).

In process: jobs are created and cancelled through the API with Django's test client (their
messages captured on commit: no worker), and delivered by calling the delivery, as the task
does, to a receiver on loopback.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from PIL import Image

from billing.models import WebhookSecret
from billing.services.keys import api_key_create
from billing.services.topups import credit_grant
from billing.services.webhook_secrets import webhook_secret_get, webhook_secret_rotate
from playground import webhooks
from playground.models import WebhookDelivery
from tests import factories
from tests.playground.test_api_jobs_live import readme_verify, receiver  # noqa: F401

pytestmark = pytest.mark.django_db
README = Path(django_settings.BASE_DIR) / "README.md"


@pytest.fixture
def card(settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card()
    factories.route(card=card, price=Decimal("0.0002"))
    return card


@pytest.fixture
def auth(other_user):
    credit_grant(user=other_user, amount=Decimal("1"), reason="test")
    _, key = api_key_create(user=other_user, name="probe")
    return {"Authorization": f"Bearer {key}"}


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 90)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _ended_job_with_webhook(client, card, auth, receiver, capture, **extra) -> dict:
    """A job created with ``webhook=`` and cancelled through the API (an ended job whose
    webhook is due), as the API answers ``GET /v1/jobs/<id>`` for it afterwards."""
    with capture():
        created = client.post(
            f"/v1/detections/{card.model_id}?webhook={receiver.url}",
            data=_jpeg(),
            content_type="image/jpeg",
            headers={**auth, "Prefer": "respond-async"},
            **extra,
        )
    assert created.status_code == 202, created.content
    job_id = created.json()["id"]
    with capture():
        cancelled = client.delete(f"/v1/jobs/{job_id}", headers=auth, **extra)
    assert cancelled.status_code == 200, cancelled.content
    return client.get(f"/v1/jobs/{job_id}", headers=auth, **extra).json()


def _deliver(job: dict) -> WebhookDelivery:
    """One delivery attempt of the job's webhook, as the task makes it."""
    delivery = WebhookDelivery.objects.get(job_id=job["id"])
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=WebhookDelivery.Status.PENDING)
    assert webhooks.webhook_deliver(delivery_id=delivery.pk, attempts=0) == "delivered"
    return WebhookDelivery.objects.get(pk=delivery.pk)


# --- 1. the body's URLs are absolute, as the API's --------------------------------------
@pytest.mark.parametrize("secure", [False, True])
def test_the_body_url_is_the_absolute_url_the_api_gives_without_site_url(
    client, card, auth, receiver, settings, django_capture_on_commit_callbacks, secure
):
    """It was "/v1/jobs/<id>" under ``make run`` (SITE_URL empty); the schema says uri."""
    settings.SITE_URL = ""
    job = _ended_job_with_webhook(
        client, card, auth, receiver, django_capture_on_commit_callbacks, secure=secure
    )
    scheme = "https" if secure else "http"
    assert job["url"] == f"{scheme}://testserver/v1/jobs/{job['id']}"

    _deliver(job)

    (hit,) = receiver.hits
    body = json.loads(hit["body"])
    assert body["url"] == job["url"]
    assert WebhookDelivery.objects.get(job_id=job["id"]).site_url == f"{scheme}://testserver"


def test_site_url_still_wins_when_it_is_set(
    client, card, auth, receiver, settings, django_capture_on_commit_callbacks
):
    settings.SITE_URL = "https://vitrine.example"
    job = _ended_job_with_webhook(client, card, auth, receiver, django_capture_on_commit_callbacks)

    _deliver(job)

    body = json.loads(receiver.hits[0]["body"])
    assert body["url"] == f"https://vitrine.example/v1/jobs/{job['id']}"


def test_a_job_without_a_webhook_writes_nothing_for_it(
    client, card, auth, django_capture_on_commit_callbacks
):
    """The site is kept on the delivery's row: a job without a webhook has none."""
    with django_capture_on_commit_callbacks():
        created = client.post(
            f"/v1/detections/{card.model_id}", data=_jpeg(), content_type="image/jpeg",
            headers={**auth, "Prefer": "respond-async"},
        )  # fmt: skip
    assert created.status_code == 202 and created.json()["webhook"] is None
    assert WebhookDelivery.objects.count() == 0


# --- 2. no stale webhook object in the body ----------------------------------------------
def test_the_body_leaves_out_its_own_webhook_object_the_job_resource_keeps_it(
    client, card, auth, receiver, django_capture_on_commit_callbacks
):
    """It said status "pending", attempts 0, in the very delivery that succeeded."""
    job = _ended_job_with_webhook(client, card, auth, receiver, django_capture_on_commit_callbacks)

    _deliver(job)

    body = json.loads(receiver.hits[0]["body"])
    assert "webhook" not in body
    # Everything else is the job resource as the API shows it.
    assert body == {k: v for k, v in job.items() if k != "webhook"}
    after = client.get(f"/v1/jobs/{job['id']}", headers=auth).json()["webhook"]
    assert (after["url"], after["status"], after["attempts"]) == (receiver.url, "delivered", 1)


# --- 3. the previous secret stays valid for 24 hours after a rotation -----------------------
def _signatures(header: str) -> list[str]:
    return [part.split("=", 1)[1] for part in header.split(",") if part.startswith("v1=")]


def test_after_a_rotation_deliveries_are_signed_with_both_secrets_for_24_hours(
    client, card, auth, receiver, other_user, django_capture_on_commit_callbacks
):
    verify = readme_verify()
    before = webhook_secret_get(user=other_user)
    job = _ended_job_with_webhook(client, card, auth, receiver, django_capture_on_commit_callbacks)
    webhook_secret_rotate(user=other_user)  # after the job was created, before its delivery
    after = webhook_secret_get(user=other_user)
    assert after != before

    _deliver(job)

    hit = receiver.hits[0]
    header = hit["headers"]["Vitrine-Signature"]
    assert header.startswith("t=") and len(_signatures(header)) == 2
    # A receiver still on the old secret and one already on the new both accept it, with
    # the README's own check; another secret or a changed body does not pass.
    assert verify(before, hit["body"], header) is True
    assert verify(after, hit["body"], header) is True
    assert verify("whsec_other", hit["body"], header) is False
    assert verify(before, hit["body"] + b" ", header) is False
    # The current signature last: a check that keeps only the last v1 checks the new one.
    current = webhooks.sign(secret=after, timestamp=int(header[2:].split(",")[0]), body=hit["body"])
    assert _signatures(header)[-1] == current


def test_once_the_24_hours_are_over_only_the_new_secret_signs(
    card, auth, receiver, other_user, client, django_capture_on_commit_callbacks
):
    verify = readme_verify()
    before = webhook_secret_get(user=other_user)
    webhook_secret_rotate(user=other_user, now=timezone.now() - timedelta(hours=24, seconds=1))
    after = webhook_secret_get(user=other_user)
    job = _ended_job_with_webhook(client, card, auth, receiver, django_capture_on_commit_callbacks)

    _deliver(job)

    hit = receiver.hits[0]
    header = hit["headers"]["Vitrine-Signature"]
    assert len(_signatures(header)) == 1
    assert verify(after, hit["body"], header) is True
    assert verify(before, hit["body"], header) is False


def test_rotating_twice_within_24_hours_keeps_only_the_immediately_previous_secret(
    card, auth, receiver, other_user, client, django_capture_on_commit_callbacks
):
    verify = readme_verify()
    first = webhook_secret_get(user=other_user)
    webhook_secret_rotate(user=other_user)
    second = webhook_secret_get(user=other_user)
    rotated = webhook_secret_rotate(user=other_user)
    third = webhook_secret_get(user=other_user)
    assert len({first, second, third}) == 3
    job = _ended_job_with_webhook(client, card, auth, receiver, django_capture_on_commit_callbacks)

    _deliver(job)

    hit = receiver.hits[0]
    header = hit["headers"]["Vitrine-Signature"]
    assert len(_signatures(header)) == 2
    assert verify(third, hit["body"], header) and verify(second, hit["body"], header)
    assert verify(first, hit["body"], header) is False
    # The window runs from the second rotation.
    assert rotated.previous_expires_at == rotated.rotated_at + timedelta(hours=24)
    # At rest, the previous secret is encrypted too.
    row = WebhookSecret.objects.get(user=other_user)
    assert second not in row.previous_ciphertext and row.previous_ciphertext


def test_the_readme_check_accepts_either_signature_in_either_order():
    verify = readme_verify()
    body, timestamp = b'{"id":"x"}', int(timezone.now().timestamp())
    old, new = "whsec_old", "whsec_new"
    ours = webhooks.signature_header(secret=new, previous=old, timestamp=timestamp, body=body)
    assert ours.count("v1=") == 2
    swapped = f"t={timestamp},v1={webhooks.sign(secret=new, timestamp=timestamp, body=body)}"
    swapped += f",v1={webhooks.sign(secret=old, timestamp=timestamp, body=body)}"
    for header in (ours, swapped):
        assert verify(old, body, header) and verify(new, body, header)
        assert not verify("whsec_third", body, header)
    # Malformed headers are refused, never an exception in the receiver.
    for header in ("", "t=1", "v1=abc", f"t={timestamp},v1", f"t={timestamp},v1=é"):
        assert verify(new, body, header) is False


# --- 4. an attempt that does not finish is a failed attempt, retried --------------------
def test_an_attempt_cut_by_the_tasks_time_limit_is_retried_not_left_under_way(
    client, card, auth, receiver, monkeypatch, django_capture_on_commit_callbacks
):
    """The task's soft time limit raised inside the POST (a receiver the attempt's own
    deadline could not cut, session 46's probe): the delivery stayed marked "Attempt under
    way." with nothing scheduled until the sweep, over an hour later. The limit's exception
    is raised into the POST here as Celery raises it into the task."""
    from celery.exceptions import SoftTimeLimitExceeded

    job = _ended_job_with_webhook(client, card, auth, receiver, django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get(job_id=job["id"])
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=WebhookDelivery.Status.PENDING)

    def cut_by_the_time_limit(*args, **kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(webhooks, "post_signed", cut_by_the_time_limit)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = webhooks.webhook_deliver(delivery_id=delivery.pk, attempts=0)
    assert outcome == WebhookDelivery.Status.PENDING
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.last_error != webhooks.UNDER_WAY
    assert "did not finish (SoftTimeLimitExceeded)" in delivery.last_error
    # The next attempt is on its way (its message sent, or kept for the sweep to send).
    monkeypatch.undo()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(resend_at=None)
    assert webhooks.webhook_deliver(delivery_id=delivery.pk, attempts=1) == "delivered"
