"""The bounded wait of the drop-in flavours, which never answer 202.

Hugging Face's and Cloudflare's clients expect the result in the response. So these
flavours wait for the job (holding no thread: ``playground.events``) up to a bound; if the
job is still queued then, it is cancelled (its reservation released: nothing is charged)
and the caller gets 503 + ``Retry-After`` + ``estimated_time``. A job that a worker has
already started is waited for up to the task's hard time limit more, so a call is never
answered 503 for a job that then succeeds and is charged; past that (a lost worker), the
503 stands and a retry with the same ``Idempotency-Key`` (or, on the Hugging Face flavour,
the result cache) answers with that job instead of running it again.

With the database away at the bound (the job cannot be cancelled, nor its row read), the
call gives the job up in Redis (``events.job_give_up``) and answers 503 "nothing is
charged"; the worker that later runs it ends it cancelled, unbilled. If a worker marked the
job finishing first, the call waits on for it (its finished signal needs no database).
"""

from __future__ import annotations

import logging
import math
import statistics
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from catalog.models import ModelCard
from playground import events, offload, services
from playground.models import Job, JobStatus

logger = logging.getLogger(__name__)

FINAL = "final"
CANCELLED = "cancelled"  # we cancelled the queued job at the bound: nothing charged
RUNNING = "running"  # still running after the grace: the answer is a 503
GIVEN_UP = "given_up"  # the database away at the bound: given up, it ends unbilled

# A model that ran a job this recently is taken as loaded in some worker.
WARM_WINDOW = timedelta(minutes=10)
# What one job takes when no recent job says otherwise (seconds).
DEFAULT_JOB_SECONDS = 1.0


# A job's timings that are not its own compute: its wait in the queue, and its batch's size
# (a count). Summed in, a burst's queue waits made an idle model's estimate minutes long
# (a 2 s model: "retry in about 108 s", 503 at once with nothing queued).
NOT_COMPUTE = frozenset({"queue", "batch"})


def _job_seconds(timings: dict) -> float:
    """A job's own compute time, without a model load it may have paid for, its queue
    wait or its batch's size."""
    return sum(
        float(v) for k, v in (timings or {}).items() if k not in NOT_COMPUTE and "load" not in k
    )


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


async def _is_final(job_id) -> bool:
    """The row's look of a wait: with the database away it is not final (yet), and the
    wait goes on hearing for the job's finished signal, which needs no database."""
    try:
        return await sync_to_async(offload.call_closing)(events.job_is_final, job_id)
    except (OperationalError, InterfaceError):
        return False


async def _cancel_or_give_up(job_id) -> str | None:
    """At a bound: ``CANCELLED`` when the job was still queued (cancelled, nothing charged),
    None when a worker has it. With the database away, the job is given up in Redis
    (``events.job_give_up``): ``GIVEN_UP`` (it will end unbilled), or None when a worker is
    finishing it; and when that cannot be told either (no Redis), the database's error."""
    try:
        if await sync_to_async(offload.call_closing)(_cancel_if_queued, job_id):
            return CANCELLED
        return None
    except (OperationalError, InterfaceError) as exc:
        given_up = await sync_to_async(events.job_give_up, thread_sensitive=False)(job_id)
        if given_up is None:
            raise
        logger.warning("job %s: the database is away at the wait's bound (%s)", job_id, exc)
        return GIVEN_UP if given_up else None


async def job_wait(job_id, *, bound: float) -> tuple[str, tuple | None]:
    """Wait for the job: ``FINAL``, ``CANCELLED`` (still queued at ``bound``: cancelled,
    nothing charged), ``GIVEN_UP`` (the database away at the bound: the job will end
    unbilled) or ``RUNNING`` (started but not done within the hard time limit); with
    ``FINAL``, the answer row its finished signal carried when that was heard
    (``events.carried_answer``; else None: the answer reads the row)."""
    heard = await events.job_finished_heard(
        job_id, timeout=bound, is_final=lambda: _is_final(job_id)
    )
    if heard:
        return FINAL, events.carried_answer(heard)
    ended = await _cancel_or_give_up(job_id)
    if ended:
        return ended, None
    grace = settings.CELERY_TASK_HARD_TIME_LIMIT + settings.VITRINE_JOB_LEASE
    heard = await events.job_finished_heard(
        job_id, timeout=grace, is_final=lambda: _is_final(job_id)
    )
    if heard:
        return FINAL, events.carried_answer(heard)
    # Re-queued by the reaper meanwhile?
    return (await _cancel_or_give_up(job_id)) or RUNNING, None
