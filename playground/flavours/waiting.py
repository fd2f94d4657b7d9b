"""The bounded wait of the drop-in flavours, which never answer 202.

Hugging Face's and Cloudflare's clients expect the result in the response. So these
flavours wait for the job (holding no thread: ``playground.events``) up to a bound; if the
job is still queued then, it is cancelled (its reservation released: nothing is charged)
and the caller gets 503 + ``Retry-After`` + ``estimated_time``. A job that a worker has
already started is waited for up to the task's hard time limit more, so a call is never
answered 503 for a job that then succeeds and is charged; past that (a lost worker), the
503 stands and a retry with the same ``Idempotency-Key`` (or, on the Hugging Face flavour,
the result cache) answers with that job instead of running it again.
"""

from __future__ import annotations

import math
import statistics
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from catalog.models import ModelCard
from playground import events, offload, services
from playground.models import Job, JobStatus

FINAL = "final"
CANCELLED = "cancelled"  # we cancelled the queued job at the bound: nothing charged
RUNNING = "running"  # still running after the grace: the answer is a 503

# A model that ran a job this recently is taken as loaded in some worker.
WARM_WINDOW = timedelta(minutes=10)
# What one job takes when no recent job says otherwise (seconds).
DEFAULT_JOB_SECONDS = 1.0


def _job_seconds(timings: dict) -> float:
    """A job's own compute time, without a model load it may have paid for."""
    return sum(float(v) for k, v in (timings or {}).items() if "load" not in k)


def estimate_seconds(*, card: ModelCard, queue: str | None = None) -> float:
    """A rough estimate of how long a new job for ``card`` would take to finish: the jobs
    queued ahead of it times a recent job's time, plus ``VITRINE_MODEL_LOAD_ESTIMATE`` when
    no job of this model finished within ``WARM_WINDOW`` (it is probably not loaded)."""
    queue = queue or settings.VITRINE_INFERENCE_QUEUE
    now = timezone.now()
    ahead = Job.objects.filter(status=JobStatus.QUEUED, queue=queue).count()
    recent = list(
        Job.objects.filter(
            card=card, status=JobStatus.SUCCEEDED, finished_at__gte=now - WARM_WINDOW
        )
        .order_by("-finished_at")
        .values_list("timings", flat=True)[:20]
    )
    per_job = statistics.median(_job_seconds(t) for t in recent) if recent else 0.0
    per_job = per_job or DEFAULT_JOB_SECONDS
    load = 0 if recent else settings.VITRINE_MODEL_LOAD_ESTIMATE
    return round((ahead + 1) * per_job + load, 1)


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def _cancel_if_queued(job_id) -> bool:
    return services.job_cancel(job=Job(pk=job_id))


async def job_wait(job_id, *, bound: float) -> tuple[str, tuple | None]:
    """Wait for the job: ``FINAL``, ``CANCELLED`` (still queued at ``bound``: cancelled,
    nothing charged) or ``RUNNING`` (started but not done within the hard time limit); with
    ``FINAL``, the answer row its finished signal carried when that was heard
    (``events.carried_answer``; else None: the answer reads the row)."""
    heard = await events.job_finished_heard(job_id, timeout=bound)
    if heard:
        return FINAL, events.carried_answer(heard)
    if await sync_to_async(offload.call_closing)(_cancel_if_queued, job_id):
        return CANCELLED, None
    grace = settings.CELERY_TASK_HARD_TIME_LIMIT + settings.VITRINE_JOB_LEASE
    heard = await events.job_finished_heard(job_id, timeout=grace)
    if heard:
        return FINAL, events.carried_answer(heard)
    # Re-queued by the reaper meanwhile?
    if await sync_to_async(offload.call_closing)(_cancel_if_queued, job_id):
        return CANCELLED, None
    return RUNNING, None
