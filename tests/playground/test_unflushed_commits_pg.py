"""On PostgreSQL a job's claim and its provenance commit without waiting for their fsync.

Both run on every job before its forward, each in its own transaction; the job's finish (a
synchronous commit) flushes them with it, as WAL is written in order. The setting is local
to the statement's own transaction (``set_config(..., true)``): it must never reach the
session (a wallet's commit later on the same connection) nor a caller's transaction (the
claim or the provenance called inside one waits for its fsync as before).
"""

from __future__ import annotations

import io

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from PIL import Image

from playground import provenance, services
from playground.models import Job, JobAttempt, JobStatus
from tests import factories

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="synchronous_commit is PostgreSQL's"
)
PROVENANCE = {
    "revision": "abc123", "model_revision": "main", "untrained": True, "backend": "openvino",
    "precision": "f32",
}  # fmt: skip


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def setting(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s)", [name])
        return cursor.fetchone()[0]


def synchronous_commit() -> str:
    return setting("synchronous_commit")


@pytest.fixture
def queued(settings, tmp_path, django_capture_on_commit_callbacks):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    with django_capture_on_commit_callbacks(execute=False):  # no broker: nothing is sent
        return services.job_create(card=factories.card(), image_bytes=png())


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_they_skip_the_fsync_and_leave_the_session_alone(queued):
    assert not connection.in_atomic_block
    with CaptureQueriesContext(connection) as queries:
        job = services.job_claim(job_id=queued.pk, worker="host:1", now=timezone.now())
        recorded = provenance.jobs_record_provenance(
            jobs=[job], provenance=PROVENANCE, worker="host:1"
        )
    # One write each (the claim after the job's hold, in one round trip), and each the
    # variant that commits without its fsync.
    hold, *writes = [q["sql"] for q in queries.captured_queries]
    assert "pg_advisory_xact_lock" in hold and len(writes) == 2
    assert all("synchronous_commit" in sql for sql in writes)
    assert synchronous_commit() == "on"  # the session's own settings are untouched
    assert setting("lock_timeout") == "0"
    assert recorded == 1
    row = Job.objects.get(pk=queued.pk)
    assert (row.status, row.attempts, row.worker) == (JobStatus.RUNNING, 1, "host:1")
    assert (row.weights_revision, row.weights_untrained, row.runtime_backend) == (
        "abc123", True, "openvino",
    )  # fmt: skip
    assert JobAttempt.objects.filter(job=row, number=1, worker="host:1").exists()
    # Another worker's provenance writes nothing: the compare-and-set holds.
    assert provenance.jobs_record_provenance(jobs=[job], provenance=PROVENANCE, worker="x:2") == 0


@pytest.mark.django_db
def test_inside_a_transaction_its_commit_stays_synchronous(queued):
    with transaction.atomic():
        job = services.job_claim(job_id=queued.pk, worker="host:1", now=timezone.now())
        assert job is not None
        # set_config(..., true) here would turn off the fsync of the caller's commit.
        assert synchronous_commit() == "on"
        assert provenance.jobs_record_provenance(
            jobs=[job], provenance=PROVENANCE, worker="host:1"
        ) == 1  # fmt: skip
        assert synchronous_commit() == "on"
