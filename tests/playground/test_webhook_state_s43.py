"""A job's answer never says its webhook waits for a job that has ended.

A synchronous call with a webhook is answered from the row its worker's finish read, before
the end's commit queued the delivery (``webhooks.webhook_job_finished``): it said
``"status": "waiting"`` (documented as "waiting for the job") beside ``"succeeded"``
(session 43's outside probe, 3 calls out of 3)."""

from __future__ import annotations

import pytest

from playground.models import Job, JobStatus, WebhookDelivery
from tests import factories
from tests.playground.test_jobs_list import account, make_jobs  # noqa: F401 (a fixture)


@pytest.mark.parametrize(
    ("job_status", "shown"),
    [
        (JobStatus.QUEUED, "waiting"),
        (JobStatus.RUNNING, "waiting"),
        (JobStatus.SUCCEEDED, "pending"),
        (JobStatus.FAILED, "pending"),
        (JobStatus.CANCELLED, "pending"),
    ],
)
def test_a_waiting_webhook_of_an_ended_job_is_shown_as_due(
    client,
    account,  # noqa: F811 (the imported fixture)
    django_capture_on_commit_callbacks,
    job_status,
    shown,
):
    card = factories.card(slug="detr")
    factories.route(card=card)
    [job_id] = make_jobs(client, account, card, 1, django_capture_on_commit_callbacks)
    WebhookDelivery.objects.create(job_id=job_id, url="https://hooks.example.com/vitrine")
    ended = {"result": []} if job_status == JobStatus.SUCCEEDED else {}
    Job.objects.filter(pk=job_id).update(status=job_status, **ended)

    answer = client.get(f"/v1/jobs/{job_id}", headers=account).json()

    assert (answer["status"], answer["webhook"]["status"]) == (job_status, shown)
    # Delivered or failed deliveries are shown as they are.
    WebhookDelivery.objects.filter(job_id=job_id).update(status=WebhookDelivery.Status.FAILED)
    assert client.get(f"/v1/jobs/{job_id}", headers=account).json()["webhook"]["status"] == "failed"
