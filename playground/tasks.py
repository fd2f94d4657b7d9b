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
from playground.storage import StorageUnavailable, upload_read

logger = logging.getLogger(__name__)
RETRY_DELAY = 5
IMAGE_MISSING = "The upload is gone."


def worker_id() -> str:
    """This process, read when a job is claimed: the pool's child, not the parent that
    imported this module before forking."""
    return f"{socket.gethostname()}:{os.getpid()}"


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
    """Run one job, and queued jobs of the same model with it when batching pays.

    Safe to deliver twice: only the claim that wins the row runs it.
    """
    from playground import services
    from playground.runtime import get_detector

    job = services.job_claim(job_id=job_id, worker=worker_id())
    if job is None:
        logger.info("job %s: not queued any more, nothing to do", job_id)
        return
    if job.route_id and not job.route.is_own:
        _run_on_provider(job)
        return
    card = job.card
    spec = CheckpointSpec(
        repo=card.checkpoint_repo,
        revision=card.checkpoint_revision,
        local_dir=card.checkpoint_local_dir,
    )
    try:
        detector = get_detector(spec)
    except WeightsNotInstalled as exc:
        services.job_fail(job=job, code=exc.code, message=str(exc))
        return
    except Exception as exc:
        logger.exception("job %s: the model did not load", job_id)
        services.job_fail(job=job, code="model_load_failed", message=f"{type(exc).__name__}: {exc}")
        return
    # On a GPU one forward pass over several images pays; on CPU the default batch is 1.
    more = services.jobs_claim_batch(
        like=job, worker=worker_id(), limit=detector.default_batch_size - 1
    )
    _run_batch(detector, [job, *more])


def _run_batch(detector, jobs) -> None:
    from playground import services

    images, ready, decode_times = [], [], {}
    for job in jobs:
        started = time.perf_counter()
        try:
            images.append(
                decode_image(
                    upload_read(job.image_name), max_pixels=settings.VITRINE_MAX_IMAGE_PIXELS
                )
            )
        except ImageError as exc:
            services.job_fail(job=job, code=exc.code, message=str(exc))
            continue
        except FileNotFoundError:
            services.job_fail(job=job, code="image_missing", message=IMAGE_MISSING)
            continue
        except StorageUnavailable as exc:
            _retry_or_fail(job, code="storage_unavailable", message=str(exc))
            continue
        decode_times[job.pk] = time.perf_counter() - started
        ready.append(job)
    if not ready:
        return
    try:
        results = detector.detect(
            images, threshold=settings.VITRINE_DETECTION_FLOOR, batch_size=len(images)
        )
    except SoftTimeLimitExceeded:
        for job in ready:
            services.job_fail(job=job, code="timeout", message="The job ran out of time.")
        return
    except Exception as exc:
        transient = _is_transient(exc)
        if not transient:
            logger.exception("batch of %d failed", len(ready))
        for job in ready:
            if transient and job.attempts < job.max_attempts:
                if services.job_release_for_retry(job=job):
                    run_detection.apply_async(
                        (str(job.pk),), queue=job.queue, countdown=RETRY_DELAY
                    )
            else:
                message = f"{type(exc).__name__}: {exc}"
                services.job_fail(job=job, code="inference_error", message=message)
        return
    for job, result in zip(ready, results, strict=True):
        timings = {"decode": decode_times[job.pk], **result.timings, "batch": len(ready)}
        services.job_succeed(job=job, result=result.detections, timings=timings)


def _retry_or_fail(job, *, code: str, message: str) -> None:
    """A transient error: give the job back to the queue while it has attempts left."""
    from playground import services

    if job.attempts < job.max_attempts:
        logger.warning("job %s: %s; retrying", job.pk, message)
        if services.job_release_for_retry(job=job):
            run_detection.apply_async((str(job.pk),), queue=job.queue, countdown=RETRY_DELAY)
    else:
        services.job_fail(job=job, code=code, message=message)


@shared_task(name="playground.reap_stale_jobs")
def reap_stale_jobs() -> dict[str, int]:
    """Periodic (Celery beat): re-queue jobs whose worker died, fail those out of attempts."""
    from playground import services

    counts = services.jobs_reap_stale()
    if any(counts.values()):
        logger.warning("reaper: %s", counts)
    return counts


@shared_task(name="playground.purge_expired_uploads")
def purge_expired_uploads() -> dict[str, int]:
    """Periodic (Celery beat): delete expired free tries and the images of expired paid jobs
    (``VITRINE_TRY_RETENTION``, ``VITRINE_UPLOAD_RETENTION``)."""
    from playground.retention import uploads_purge_expired

    counts = uploads_purge_expired()
    if any(counts.values()):
        logger.info("retention: %s", counts)
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
        image = upload_read(job.image_name)
    except FileNotFoundError:
        services.job_fail(job=job, code="image_missing", message=IMAGE_MISSING)
        return
    except StorageUnavailable as exc:
        _retry_or_fail(job, code="storage_unavailable", message=str(exc))
        return
    try:
        detections = run(
            secret=provider_key_reveal(key=key),
            model_id=route.provider_model_id,
            image=image,
            size=(job.width, job.height),
            floor=settings.VITRINE_DETECTION_FLOOR,
        )
    except ProviderError as exc:
        services.job_fail(job=job, code=exc.code, message=str(exc))
        return
    services.job_succeed(
        job=job, result=detections, timings={"provider": time.perf_counter() - started}
    )
