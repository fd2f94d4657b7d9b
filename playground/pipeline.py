"""The part of every paid inference call that creates (or finds) its job.

Every flavour of the API (Vitrine's own ``/v1/inference``, the Hugging Face and the
Cloudflare drop-ins in ``playground/flavours/``) validates its own request shape, then calls
``job_submit``: the idempotent replay (``Idempotency-Key``), the result cache (Hugging
Face's ``x-use-cache``), the in-flight limit, the job row, the reservation of its price and
the enqueue, in one transaction, so a refused call stores, queues and charges nothing.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.services.charges import Reservation, key_allow_list_check
from catalog import errors
from catalog.models import ModelCard, PriceRoute
from playground import events, idempotency, limits, services
from playground.failures import FAILURES, SERVICE_UNAVAILABLE
from playground.models import CachedCall, Job, JobStatus
from playground.runtime import ImageError
from playground.storage import STORAGE_DOWN, StorageUnavailable, upload_discard

logger = logging.getLogger(__name__)

# What a caller told 503 should wait before trying again.
RETRY_AFTER_SECONDS = 5
# The HTTP status a refused upload answers with, by its ImageError code (others: 400).
IMAGE_ERROR_STATUS = {"image_too_large": 413, "unsupported_format": 415}
# A job in these states can still give (or gave) an answer worth reusing.
_REUSABLE = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED)


@dataclass(frozen=True)
class Submitted:
    job: Job
    replayed: bool = False  # an earlier call with the same Idempotency-Key made it
    cached: bool = False  # an earlier identical call made it (x-use-cache): nothing charged


# On the answer to a call that an earlier one with the same Idempotency-Key made (Stripe's
# header): the same job and answer, and nothing charged by this call.
REPLAYED_HEADER = "Idempotent-Replayed"


def replay_mark(response, submitted: Submitted):
    """``response`` with ``Idempotent-Replayed: true`` when ``submitted`` is a replay."""
    if submitted.replayed:
        response[REPLAYED_HEADER] = "true"
    return response


def image_sha256(image: bytes) -> str:
    return hashlib.sha256(image).hexdigest()


def cache_fingerprint(*, card: ModelCard, route: PriceRoute, sha256: str, threshold) -> str:
    """What makes two calls identical for the result cache: the model, what computes its
    answer, the route, the image and the parameters.

    The model is its row, not its id: a renamed model's calls are the same calls (they were
    misses after a rename, run and paid again). What computes the answer is the checkpoint
    the worker would load, in ``resolve_weights``'s order (a local folder, else the Hub
    repository at its revision), or a provider route's model: a hit must never be an answer
    of other weights (session 47: a changed repository, or a local folder set beside a
    revision, was answered from the old weights' job)."""
    if not route.is_own:
        computed = ["provider", route.provider_model_id]
    elif card.checkpoint_local_dir:
        computed = ["local", card.checkpoint_local_dir]
    else:
        computed = [card.checkpoint_repo, card.checkpoint_revision]
    return idempotency.fingerprint(
        card=card.pk, computed=computed, route=route.slug, image=sha256, threshold=threshold
    )


def cached_job(*, user, print_: str) -> Job | None:
    """The newest job of an identical call within ``VITRINE_HF_CACHE_TTL`` that succeeded
    or is still on its way (a duplicate then waits for it instead of running again)."""
    ttl = settings.VITRINE_HF_CACHE_TTL
    if not ttl:
        return None
    hit = (
        CachedCall.objects.select_related("job__card", "job__route")
        .filter(
            owner=user,
            fingerprint=print_,
            created_at__gte=timezone.now() - timedelta(seconds=ttl),
            job__status__in=_REUSABLE,
        )
        .order_by("-created_at")
        .first()
    )
    if hit is None or _given_up(hit.job) or not _ran_as_named(hit.job):
        return None
    return hit.job


def _ran_as_named(job: Job) -> bool:
    """Whether a finished job of the card's own model ran the revision the card names now,
    as its call's fingerprint did: a job queued before an operator changed the revision
    runs the new one (its worker loads what the card names then, and records it as the
    job's ``model_revision``), so its answer is no hit for the revision it was asked under
    (session 47: switched to v2 and back, a call under ``main`` was answered v2's boxes)."""
    if job.status != JobStatus.SUCCEEDED or (job.route is not None and not job.route.is_own):
        return True
    return job.model_revision == job.card.checkpoint_revision


def _usable(job: Job | None) -> Job | None:
    """A failed or cancelled job charged nothing: its key may run the call again. So may a
    job its call gave up (``_given_up``)."""
    return job if job is not None and job.status in _REUSABLE and not _given_up(job) else None


def _given_up(job: Job) -> bool:
    """Whether the unfinished ``job`` was given up by its call (a drop-in call that met its
    bound with the database away: ``events.FATE``). It ends unbilled, so a retry (the same
    Idempotency-Key, the Hugging Face cache) must not wait for it: one still queued is
    cancelled now (its reservation released); a running one, by its worker. Only a job
    old enough to have been given up is looked up (``events.give_up_possible``)."""
    if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
        return False
    if not events.give_up_possible(job.created_at, timezone.now()):
        return False
    if events.job_fate(job.pk) != events.GIVEN_UP:
        return False
    services.job_cancel(job=job)
    return True


def request_print(
    *,
    flavour: str,
    card: ModelCard,
    route: PriceRoute,
    image: bytes,
    threshold: float,
    extra_parameters: dict | None = None,
    webhook: str | None = None,
) -> idempotency.RequestPrint:
    """What an Idempotency-Key's request is: two calls with one key must agree on it.

    The model is its row (``card``), so a retry after a rename is the same request whatever
    became of the old id since (another card may take it). Records stored before session
    47 named the model by its id: those are matched under its current and former ids."""
    parameters = {"threshold": threshold, **(extra_parameters or {})}
    # Only when set: a plain call's fingerprint stays what it was for stored keys.
    extras = {"parameters": parameters, "webhook": webhook} if extra_parameters or webhook else {}
    sha256 = image_sha256(image)
    common = {"flavour": flavour, "route": route.slug, "image": sha256, "threshold": threshold}

    def by_id(model_id: str) -> str:
        return idempotency.fingerprint(model=model_id, **common, **extras)

    def earlier() -> list[str]:
        former = card.former_ids.values_list("model_id", flat=True)
        return [by_id(card.model_id), *(by_id(old) for old in former)]

    return idempotency.RequestPrint(
        idempotency.fingerprint(card=card.pk, **common, **extras), earlier
    )


def job_submit(
    *,
    request,
    card: ModelCard,
    route: PriceRoute,
    image: bytes,
    threshold: float,
    flavour: str,
    idempotency_key: str | None = None,
    cache_print: str | None = None,
    use_cache: bool = False,
    admit: Callable[[], None] | None = None,
    extra_parameters: dict | None = None,
    webhook: str | None = None,
    answer_waits: bool = False,
) -> Submitted:
    """Find or create the call's job, reserving its price.

    In order: the job an earlier call with the same ``Idempotency-Key`` made (422 when the
    key was used for another request); with ``use_cache``, the job of an identical earlier
    call (``cache_print``); then ``admit()`` (a flavour's last check, e.g. a 503 when the
    queue is too long) and a new job with its price reserved (402 when the wallet cannot
    cover it), enqueued on commit. A key whose earlier job failed or was cancelled (nothing
    was charged) runs the call again.

    ``extra_parameters`` (e.g. Vitrine's ``box_format``) are kept on the job beside the
    threshold; ``webhook`` (already validated) is registered with it. Both are part of
    what an Idempotency-Key's request is.

    ``answer_waits``: the caller answers once the job has ended, or calls
    ``services.creation_flush`` before saying anything else about it (a synchronous call):
    on PostgreSQL the job's creation then commits without waiting for its WAL fsync.
    """
    from playground import webhooks

    parameters = {"threshold": threshold, **(extra_parameters or {})}
    user = request.user
    # No API key when the demo's signed-in visitor pays through the page (playground/demo.py).
    # A replay or a cached answer charges nothing, but answers only what the key may call.
    api_key = getattr(request, "auth", None)
    key_print = None
    if idempotency_key:
        key_print = request_print(
            flavour=flavour, card=card, route=route, image=image, threshold=threshold,
            extra_parameters=extra_parameters, webhook=webhook,
        )  # fmt: skip
        found = idempotency.idempotent_job_find(user=user, key=idempotency_key, print_=key_print)
        if found is not None and _usable(found.job):
            key_allow_list_check(api_key, card)
            return Submitted(found.job, replayed=True, cached=found.cached)
        if found is not None:
            idempotency.idempotent_job_release(user=user, key=idempotency_key)
    if use_cache and cache_print:
        hit = cached_job(user=user, print_=cache_print)
        if hit is not None:
            key_allow_list_check(api_key, card)
            if idempotency_key:
                idempotency.idempotent_job_record(
                    user=user, key=idempotency_key, print_=key_print, job=hit
                )
            return Submitted(hit, cached=True)
    if admit is not None:
        admit()
    job = None
    job_id = uuid.uuid4()
    # Its message leaves before the commit where this transaction is the outermost one.
    send_now = services.sends_before_commit()
    try:
        with transaction.atomic():
            if idempotency_key:
                # Before the in-flight check: a concurrent duplicate waits here for the
                # first call's commit and answers with its job, not with a 429.
                found = idempotency.idempotent_job_claim(
                    user=user, key=idempotency_key, print_=key_print
                )
                if found is not None:
                    key_allow_list_check(api_key, card)
                    return Submitted(found.job, replayed=True, cached=found.cached)
            # The job's reservation.
            reservation = Reservation(
                job_id=job_id, user=user, card=card, route=route, api_key=api_key
            )  # fmt: skip
            # Locks the user row (no overshoot); takes the job's hold and, on PostgreSQL,
            # makes the reservation in the same round trip (a 429 or a refused image
            # undoes it with the transaction).
            try:
                reserved = limits.inflight_jobs_check(
                    user=user,
                    hold=job_id if send_now else None,
                    flushed=not answer_waits,
                    then=reservation.statement(),
                )
            except errors.ApplicationError as exc:
                if exc.code == limits.TOO_MANY_INFLIGHT_CODE:
                    limits.call_give_back(request)  # no job: its minute's hits back
                raise
            if use_cache and cache_print:
                # Again, now that the account's lock is held: identical calls sent at once
                # all missed the look before it, and each ran and paid (session 46's probe:
                # 4 calls at once, 4 jobs, 4 charges); those that waited for the lock find
                # the job the first one committed. Raised: the reservation is undone.
                meanwhile = cached_job(user=user, print_=cache_print)
                if meanwhile is not None:
                    raise _CachedMeanwhile(meanwhile)
            # Its answer is read (a 402 raised) once the image passed its checks and before
            # it is stored: a refused call leaves no upload. The row names its charge.
            job = services.job_create(
                card=card,
                route=route,
                image_bytes=image,
                parameters=parameters,
                owner=user,
                job_id=job_id,
                send_now=send_now,
                reserve=lambda _job_id: reservation.answer(reserved).pk,
            )
            if webhook is not None:
                webhooks.webhook_register(job=job, url=webhook, request=request)
            if idempotency_key:
                idempotency.idempotent_job_bind(user=user, key=idempotency_key, job=job)
            if cache_print:
                CachedCall.objects.create(owner=user, fingerprint=cache_print, job=job)
    except _CachedMeanwhile as meanwhile:
        key_allow_list_check(api_key, card)
        if idempotency_key:
            idempotency.idempotent_job_record(
                user=user, key=idempotency_key, print_=key_print, job=meanwhile.job
            )
        return Submitted(meanwhile.job, cached=True)
    except (ImageError, StorageUnavailable) as exc:
        raise upload_refused(exc) from None
    except errors.ApplicationError:
        if job is not None:  # the row rolled back: the stored upload goes too
            upload_discard(job.image_name)
        raise
    _queued_check(job)
    return Submitted(job)


class _CachedMeanwhile(Exception):
    """Raised inside ``job_submit``'s transaction to undo it: an identical call's job was
    committed while this one waited for the account's lock."""

    def __init__(self, job: Job) -> None:
        super().__init__(str(job.pk))
        self.job = job


def try_submit(
    *, card: ModelCard, route: PriceRoute | None, image: bytes, threshold: float, visitor: dict
) -> Submitted:
    """A free try from the demo (the try page, the model page, /playground): the same job,
    the same upload checks and the same enqueue as a paid call, with no price reserved.
    ``visitor`` is ``{"owner": user}`` or ``{"owner": None, "session_key": ...}``; the
    per-hour limit was counted by the caller (playground/views.py). Refused with a 503 while
    ``VITRINE_FREE_TRIES_QUEUED`` free jobs wait (``limits.free_tries_queued_check``)."""
    limits.free_tries_queued_check(queue=settings.VITRINE_INFERENCE_QUEUE)
    try:
        job = services.job_create(
            card=card,
            route=route,
            image_bytes=image,
            parameters={"threshold": threshold},
            owner=visitor["owner"],
            session_key=visitor.get("session_key", ""),
        )
    except (ImageError, StorageUnavailable) as exc:
        raise upload_refused(exc) from None
    _queued_check(job)
    return Submitted(job)


def upload_refused(exc: ImageError | StorageUnavailable) -> errors.ApplicationError:
    """The 4xx for an image the runtime refused, or the 503 for a storage outage."""
    if isinstance(exc, ImageError):
        return errors.ApplicationError(
            str(exc), code=exc.code, status=IMAGE_ERROR_STATUS.get(exc.code, 400)
        )
    logger.error("the upload storage failed", exc_info=exc)
    return errors.ApplicationError(
        STORAGE_DOWN,
        code="storage_unavailable",
        status=503,
        type=SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _queued_check(job: Job) -> None:
    if job.enqueued_at is None and services.job_abandon_unqueued(job=job):
        # The broker is unreachable: the job is failed and its money released in one
        # transaction, so the caller told to retry holds nothing (and the sweeper would
        # have sent it again had we kept it).
        raise errors.ApplicationError(
            FAILURES["queue_unavailable"].message or "",
            code="queue_unavailable",
            status=503,
            type=SERVICE_UNAVAILABLE,
            # The failed job's id, as job_lost's 503 names its job: the caller can look it
            # up (failed, nothing charged) or quote it to support.
            extra={"job": str(job.pk)},
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
