"""A job's own times on one clock (session 45). The web writes a job's creation and a worker
its start and end: on each machine's own clock, a machine whose clock was off showed queue
waits of 0 or of hours (a start before the creation), and the model pages' queue
percentiles with them. On PostgreSQL every one of them is now the database's clock.

The machines' clocks are moved with libfaketime, as in test_clock_skew_s43.py (skipped
without it, and on SQLite: one machine, one clock).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from playground import services
from playground.models import Job
from tests import factories
from tests.conftest import REPO, database_url, wait_for
from tests.playground.test_clock_skew_s43 import faketime, photo, skewed  # noqa: F401

pytestmark = pytest.mark.worker

CREATE_AND_CANCEL = """
import sys, django
django.setup()
from catalog.models import ModelCard
from playground import services
card = ModelCard.objects.get(pk=int(sys.argv[1]))
job = services.job_create(card=card, image_bytes=sys.stdin.buffer.read(), queue="nobody-s45")
print(job.pk, job.created_at.isoformat(), flush=True)
services.job_cancel(job=job)
"""


@pytest.mark.django_db(transaction=True)  # committed: the "web" is another process
def test_a_job_made_on_a_web_machine_whose_clock_is_ahead_has_the_databases_times(
    skewed,  # noqa: F811 (the fixture)
    broker_url,
    settings,
):
    """The web's machine 90 s ahead of the database: the job it makes (and cancels) is
    stamped on the database's clock, and the instance it answers with carries that time."""
    from django.db import connection

    card = factories.card()
    env = {
        **os.environ,
        **skewed("+90s"),
        "DATABASE_URL": database_url(connection.settings_dict),
        "CELERY_BROKER_URL": broker_url,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "VITRINE_JOB_STORAGE": str(settings.VITRINE_JOB_STORAGE),
    }
    web = subprocess.run(
        [sys.executable, "-c", CREATE_AND_CANCEL, str(card.pk)],
        cwd=REPO, env=env, input=photo(), capture_output=True, timeout=120,
    )  # fmt: skip
    assert web.returncode == 0, web.stderr.decode()
    job_id, answered = web.stdout.decode().split()
    job = Job.objects.get(pk=job_id)
    now = services.db_now()
    # Before, each was the web's clock: 90 s past the database's now.
    assert job.created_at <= job.finished_at <= now, (job.created_at, job.finished_at, now)
    assert job.created_at.isoformat() == answered
    assert job.created_at == job.queued_at == job.enqueued_at
    assert job.status == "cancelled"


def test_a_job_run_on_a_worker_whose_clock_is_behind_starts_after_it_was_made(
    start_worker,
    skewed,  # noqa: F811 (the fixture)
    runtime_checkpoint,
):
    """A worker 90 s behind: the job's start and end (and its attempt's) are the database's
    clock, so the job starts after it was made and its queue wait is what it waited.
    Before, its start was 90 s before its creation."""
    worker = start_worker(env_extra=skewed("-90s"), fresh=True)
    card = factories.card(checkpoint_local_dir=str(runtime_checkpoint("yolos_tiny")))
    job = services.job_create(card=card, image_bytes=photo())
    wait_for(
        lambda: Job.objects.get(pk=job.pk).is_final, timeout=240, interval=0.2,
        message=worker.output(),
    )  # fmt: skip
    job.refresh_from_db()
    assert job.status == "succeeded", worker.output()
    assert job.created_at <= job.started_at <= job.finished_at <= services.db_now()
    (attempt,) = job.attempt_log.all()
    assert job.started_at == attempt.started_at <= attempt.finished_at == job.finished_at
