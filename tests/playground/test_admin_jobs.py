# ruff: noqa: F811  (the fixtures imported from test_flavour_errors are parameters here)
"""The Jobs admin: read-only, no delete (a deleted queued job left its charge held for ever
and its client a 404), and a "cancel" action that is the API's cancel."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import Charge
from billing.services.ledger import wallet_for
from playground import services
from playground.models import Job, JobStatus
from tests.playground.test_flavour_errors import (  # noqa: F401  (fixtures)
    account,
    card,
    funded,
    jpeg,
    post,
    storage,
)

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:playground_job_changelist")


def queued_jobs(client, card, funded, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        response = post(client, "vitrine", card.model_id, funded, jpeg(), Prefer="respond-async")
        assert response.status_code == 202
        ids.append(response.json()["id"])
    return ids


def test_a_job_cannot_be_deleted_in_the_admin(staff_client, client, card, funded, storage):
    (job_id,) = queued_jobs(client, card, funded, 1)
    page = staff_client.get(CHANGELIST)
    assert "delete_selected" not in page.context["action_form"].fields["action"].choices.__repr__()
    delete = reverse("admin:playground_job_delete", args=[job_id])
    assert staff_client.post(delete, {"post": "yes"}).status_code == 403
    assert Job.objects.filter(pk=job_id).exists()


def test_cancelling_queued_jobs_releases_their_charges(
    staff_client,
    client,
    card,
    funded,
    storage,
):
    queued, claimed = queued_jobs(client, card, funded, 2)
    services.job_claim(job_id=claimed, worker="t:1")  # a worker has this one
    assert wallet_for(funded["user"]).balance == Decimal("0.9996")

    response = staff_client.post(
        CHANGELIST,
        {"action": "cancel_queued", "_selected_action": [queued, claimed]},
        follow=True,
    )
    shown = [str(m) for m in response.context["messages"]]
    assert shown[0] == "1 queued job(s) cancelled, charges released."
    assert shown[1].startswith("1 job(s) were not queued")
    assert Job.objects.get(pk=queued).status == JobStatus.CANCELLED
    assert Charge.objects.get(job_id=queued).status == Charge.Status.VOIDED
    assert Job.objects.get(pk=claimed).status == JobStatus.RUNNING
    assert wallet_for(funded["user"]).balance == Decimal("0.9998")  # the one held is released
    # Its client sees it cancelled, as after DELETE /v1/jobs/<id>.
    read = client.get(f"/v1/jobs/{queued}", headers={"Authorization": funded["auth"]})
    assert read.status_code == 200 and read.json()["status"] == "cancelled"


def test_a_worker_heartbeat_cannot_be_added_by_hand(staff_client):
    assert staff_client.get(reverse("admin:playground_workerheartbeat_add")).status_code == 403


def test_a_jobs_page_shows_each_attempt_and_its_worker(staff_client, client, card, funded, storage):
    from django.utils import timezone

    (job_id,) = queued_jobs(client, card, funded, 1)
    job = Job.objects.get(pk=job_id)
    now = timezone.now()
    job.attempt_log.create(number=1, worker="wrk:23016", started_at=now, outcome="lost")
    job.attempt_log.create(number=2, worker="wrk2:31409", started_at=now, outcome="succeeded")
    page = staff_client.get(reverse("admin:playground_job_change", args=[job_id]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "wrk:23016" in html and "wrk2:31409" in html
    assert html.index("wrk:23016") < html.index("wrk2:31409")  # in the order they ran


def test_a_job_id_pasted_in_the_search_reads_the_primary_key_alone(
    staff_client, client, card, funded, storage
):
    # The admin ORs its search fields: request_id, image_sha256 and weights_revision have no
    # index, so a job id read every job (4.2-4.7 s at 1.5 million, session 42).
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    first, second = queued_jobs(client, card, funded, 2)
    with CaptureQueriesContext(connection) as queries:
        page = staff_client.get(CHANGELIST, {"q": f" {first} "})
    assert [str(job.pk) for job in page.context["cl"].result_list] == [first]
    jobs_table = Job._meta.db_table
    wheres = [
        q["sql"].split(" WHERE ", 1)[1] for q in queries
        if f'FROM "{jobs_table}"' in q["sql"] and " WHERE " in q["sql"]
    ]  # fmt: skip
    assert wheres and not any('"request_id"' in where for where in wheres), wheres
    # Anything else is searched as before: a request id still finds its job.
    request_id = Job.objects.get(pk=second).request_id
    found = staff_client.get(CHANGELIST, {"q": request_id}).context["cl"].result_list
    assert [str(job.pk) for job in found] == [second]
