"""The messages of jobs a batch ran beside its own job: done without a query.

A worker that takes a batch claims the queued jobs of the same model with the job whose
message it is running; their own messages arrive afterwards. The process remembers the jobs
it ended (``tasks._ended_here``: no state leaves an end), so each of those messages is done
without a claim and a look at the row. The task runs in this process on a real
random-weight checkpoint; test_job_worker.py runs a batch through a real worker process.
"""

from __future__ import annotations

import uuid

import pytest
from celery.utils.saferepr import saferepr

from playground import services, tasks
from playground.models import Job
from playground.tasks import run_detection
from tests import factories
from tests.playground.runtime_helpers import blocks_image, encode


@pytest.fixture
def card(db, settings, tmp_path, runtime_checkpoint):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    return factories.card(checkpoint_local_dir=str(runtime_checkpoint("yolos_tiny")))


def image() -> bytes:
    return encode(blocks_image(320, 240, seed=1), "JPEG")


def test_the_messages_of_jobs_a_batch_ended_are_done_without_a_query(
    card, monkeypatch, django_assert_num_queries
):
    monkeypatch.setenv("VITRINE_BATCH_SIZE", "3")
    jobs = [services.job_create(card=card, image_bytes=image()) for _ in range(3)]
    report = run_detection(str(jobs[0].pk))  # claims the other two with it
    # What the worker's main process reads from it (Celery passes the repr): the three.
    seen = tasks._ended_reported(saferepr(report, run_detection.resultrepr_maxsize))
    assert sorted(seen) == sorted(str(job.pk) for job in jobs)
    done = [Job.objects.get(pk=job.pk) for job in jobs]
    assert [(job.status, job.timings["batch"]) for job in done] == [("succeeded", 3)] * 3
    for job in jobs[1:]:
        with django_assert_num_queries(0):
            run_detection(str(job.pk))
    assert [Job.objects.get(pk=job.pk).attempts for job in jobs] == [1, 1, 1]

    # A job this process did not end is claimed and run as before.
    later = services.job_create(card=card, image_bytes=image())
    run_detection(str(later.pk))
    assert Job.objects.get(pk=later.pk).status == "succeeded"


def test_a_job_that_failed_in_a_batch_is_remembered_and_one_given_back_is_not(card, monkeypatch):
    """A failure is an end too; a job given back to the queue (a transient error) is not,
    and its message must still claim it."""
    from playground.storage import upload_delete

    monkeypatch.setenv("VITRINE_BATCH_SIZE", "2")
    first, gone = (services.job_create(card=card, image_bytes=image()) for _ in range(2))
    upload_delete(gone.image_name)
    run_detection(str(first.pk))
    assert Job.objects.get(pk=gone.pk).error_code == "image_missing"
    assert {str(first.pk), str(gone.pk)} <= set(tasks._ended_here)

    retried = services.job_create(card=card, image_bytes=image())
    claimed = services.job_claim(job_id=retried.pk, worker=tasks.worker_id())
    assert services.job_release_for_retry(job=claimed)
    assert str(retried.pk) not in tasks._ended_here
    run_detection(str(retried.pk))
    assert Job.objects.get(pk=retried.pk).status == "succeeded"


def test_the_memory_of_ended_jobs_is_bounded(monkeypatch):
    monkeypatch.setattr(tasks, "ENDED_KEPT", 3)
    monkeypatch.setattr(tasks, "_ended_here", type(tasks._ended_here)())
    tasks._ended(["a", "b", "c", "d"])
    assert list(tasks._ended_here) == ["b", "c", "d"]  # the oldest forgotten


def test_a_report_cut_by_celery_names_only_whole_jobs():
    """Celery cuts a return value's repr at the task's resultrepr_maxsize: a cut id, or
    anything else that is not a whole job id, names no job."""
    ids = [str(uuid.uuid4()) for _ in range(5)]
    cut = saferepr(tasks._ended_report(ids), 90)  # two whole ids and part of a third
    assert cut.endswith("...'")
    assert tasks._ended_reported(cut) == ids[:2]
    assert tasks._ended_reported(saferepr(tasks._ended_report(ids), 20)) == []  # a cut id
    assert tasks._ended_reported(saferepr(None)) == []
    assert tasks._ended_reported("'not-a-job " + ids[0].upper() + "'") == []  # not canonical
    assert tasks._ended_reported(ids) == []  # not a repr at all
    # A batch as large as the report carries, read whole.
    many = [str(uuid.uuid4()) for _ in range(tasks.ENDED_REPORT_MAX_JOBS)]
    report = saferepr(tasks._ended_report(many), run_detection.resultrepr_maxsize)
    assert tasks._ended_reported(report) == many
