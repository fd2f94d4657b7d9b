from __future__ import annotations

import logging
import os
import socket
import time

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from playground.models import WorkerHeartbeat
from playground.runtime import CheckpointSpec, ImageError, WeightsNotInstalled, decode_image

logger = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
RETRY_DELAY = 5


@shared_task(name="playground.health_ping")
def health_ping(token: str) -> None:
    """Record that a worker is alive. Idempotent: a redelivered message writes nothing new."""
    WorkerHeartbeat.objects.get_or_create(
        token=token, defaults={"hostname": socket.gethostname(), "pid": os.getpid()}
    )


def _is_transient(exc: BaseException) -> bool:
    """Errors worth another attempt: the GPU ran out of memory under a burst of work."""
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


@shared_task(name="playground.run_detection", acks_late=True, reject_on_worker_lost=True)
def run_detection(job_id: str) -> None:
    """Run one job. Safe to deliver twice: only the claim that wins the row runs it."""
    from playground import services
    from playground.runtime import get_detector

    job = services.job_claim(job_id=job_id, worker=WORKER_ID)
    if job is None:
        logger.info("job %s: not queued any more, nothing to do", job_id)
        return
    card = job.card
    spec = CheckpointSpec(
        repo=card.checkpoint_repo,
        revision=card.checkpoint_revision,
        local_dir=card.checkpoint_local_dir,
    )
    timings: dict[str, float] = {}
    if job.route_id and not job.route.is_own:
        _run_on_provider(job)
        return
    try:
        started = time.perf_counter()
        image = decode_image(
            services.job_image_path(job).read_bytes(),
            max_pixels=settings.VITRINE_MAX_IMAGE_PIXELS,
        )
        timings["decode"] = time.perf_counter() - started
        detector = get_detector(spec)
        (result,) = detector.detect([image], threshold=settings.VITRINE_DETECTION_FLOOR)
    except WeightsNotInstalled as exc:
        services.job_fail(job=job, code=exc.code, message=str(exc), timings=timings)
    except ImageError as exc:
        services.job_fail(job=job, code=exc.code, message=str(exc), timings=timings)
    except FileNotFoundError:
        services.job_fail(job=job, code="image_missing", message="The upload is gone.")
    except SoftTimeLimitExceeded:
        services.job_fail(job=job, code="timeout", message="The job ran out of time.")
    except Exception as exc:
        if _is_transient(exc) and job.attempts < job.max_attempts:
            logger.warning("job %s: transient error, retrying: %s", job_id, exc)
            if services.job_release_for_retry(job=job):
                run_detection.apply_async((job_id,), queue=job.queue, countdown=RETRY_DELAY)
            return
        logger.exception("job %s failed", job_id)
        services.job_fail(job=job, code="inference_error", message=f"{type(exc).__name__}: {exc}")
    else:
        services.job_succeed(job=job, result=result.detections, timings=timings | result.timings)


@shared_task(name="playground.reap_stale_jobs")
def reap_stale_jobs() -> dict[str, int]:
    """Periodic (Celery beat): re-queue jobs whose worker died, fail those out of attempts."""
    from playground import services

    counts = services.jobs_reap_stale()
    if any(counts.values()):
        logger.warning("reaper: %s", counts)
    return counts


def _run_on_provider(job) -> None:
    """A BYOK job on a provider route: the provider runs the model with the user's key."""
    from billing.models import ProviderKey
    from billing.services.keys import provider_key_reveal
    from playground import services
    from playground.providers import PROVIDERS, ProviderError

    route = job.route
    key = ProviderKey.objects.filter(user_id=job.owner_id, provider=route.slug).first()
    run = PROVIDERS.get(route.schema_flavour)
    if key is None or run is None:
        services.job_fail(job=job, code="provider_unavailable", message="No key or adapter.")
        return
    started = time.perf_counter()
    try:
        detections = run(
            secret=provider_key_reveal(key=key),
            model_id=route.provider_model_id,
            image=services.job_image_path(job).read_bytes(),
            size=(job.width, job.height),
            floor=settings.VITRINE_DETECTION_FLOOR,
        )
    except ProviderError as exc:
        services.job_fail(job=job, code=exc.code, message=str(exc))
        return
    services.job_succeed(
        job=job, result=detections, timings={"provider": time.perf_counter() - started}
    )
