from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_init
from celery.worker.strategy import default as default_strategy
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from playground import events
from playground.models import WorkerHeartbeat
from playground.runtime import ImageError, WeightsNotInstalled, decode_image
from playground.runtime.fit import check_model_fit, rule_from_processor
from playground.runtime.images import decode_many
from playground.storage import StorageUnavailable, upload_read
from playground.tracing import REQUEST_ID_HEADER

logger = logging.getLogger(__name__)
# A transient error's retries wait 5 s, then 20, then 60 at most: three attempts ride out an
# upload store's or a database's restart of ~25 s, where a flat 5 s failed the job in ~15.
RETRY_DELAY = 5
RETRY_DELAY_MAX = 60
IMAGE_MISSING = "The upload is gone."

# Jobs this process ended (succeeded or failed). The jobs a batch claimed beside its own
# still have their messages on the way, and each would find its job ended after a claim
# and a look at the row: two round trips per job of every batch, more than a GPU's forward
# per image. No state leaves an end (succeeded, failed, cancelled: every change to queued
# or running is a compare-and-set from running or queued), so such a message is done here
# without a query. Bounded: a job forgotten costs its message those two round trips.
_ended_here: OrderedDict[str, None] = OrderedDict()
ENDED_KEPT = 4096


def _ended(job_ids) -> None:
    for job_id in job_ids:
        _ended_here[str(job_id)] = None
    while len(_ended_here) > ENDED_KEPT:
        _ended_here.popitem(last=False)


ENDED_ELSEWHERE_LOG = "job %s: ended in another job's batch; its message acknowledged unrun"

# What a run_detection task returns: the jobs it ended, space-separated. Celery hands a
# pool process's return value back to the worker's main process as its repr, cut at the
# task's resultrepr_maxsize (a cut id is not an id, and is ignored).
ENDED_REPORT_MAX_JOBS = 256
ENDED_REPORT_MAX_CHARS = (36 + 1) * ENDED_REPORT_MAX_JOBS + 8  # an id and a space each; quotes


def _ended_report(job_ids) -> str | None:
    return " ".join(str(job_id) for job_id in job_ids) or None


def _ended_reported(text) -> list[str]:
    """The job ids in a report's repr: only whole, canonical UUIDs."""
    if not isinstance(text, str):
        return []
    text = text.strip("'\"").removesuffix("...")  # the cut's mark (a cut id stays cut)
    ids = []
    for token in text.split(" "):
        try:
            if str(uuid.UUID(token)) == token:
                ids.append(token)
        except ValueError:
            continue
    return ids


def job_strategy(task, app, consumer, **kwargs):
    """Celery's default strategy for run_detection's messages, with one thing first: a
    message of a job that a pool process ended in another job's batch (which the main
    process learns from that batch's return value, before its message is acknowledged) is
    acknowledged here, without handing it to a pool process. On a GPU a batch of 32 claims
    31 jobs whose messages are still queued; each took the hand-off to the pool, the
    task's set-up in it and the result's way back, only to find its job ended.

    Only what a pool process reported ended is skipped (no state leaves an end); any other
    message, or one this process cannot read, takes Celery's own path unchanged."""
    handle = default_strategy(task, app, consumer, **kwargs)
    errors = consumer.connection_errors

    def learn_from(request) -> None:
        done = request.on_success

        def on_success(failed__retval__runtime, **kw):
            failed, retval, _ = failed__retval__runtime
            if not failed:
                _ended(_ended_reported(retval))
            return done(failed__retval__runtime, **kw)

        request.on_success = on_success

    def handle_message(message, body, ack, reject, callbacks, **kw):
        job_id = _message_job_id(message)
        if job_id is not None and job_id in _ended_here:
            logger.info(ENDED_ELSEWHERE_LOG, job_id)
            ack(logger, errors)
            return None
        return handle(message, body, ack, reject, [*(callbacks or ()), learn_from], **kw)

    return handle_message


def _message_job_id(message) -> str | None:
    try:
        args = message.decode()[0]
        return str(args[0])
    except Exception:  # an odd message: Celery's own handling reports it
        return None


# The detection families' modules (the catalogue's four; a family added in the admin is
# imported on its first load, as before).
PREFORK_MODULES = tuple(
    f"transformers.models.{family}.{kind}_{family}"
    for family in ("detr", "conditional_detr", "rt_detr", "yolos")
    for kind in ("modeling", "image_processing_pil")
)


@worker_init.connect
def import_the_runtime_before_fork(**kwargs) -> None:
    """Import transformers' detection code once in the worker's main process, before the
    pool forks: every pool process, including each one started after a kill -9 or by
    ``--max-tasks-per-child``, then begins its first job ~3 s sooner (the import measured
    2.7 s of a test-sized checkpoint's 6.5 s first load here). Code only: no model is
    loaded before the fork (a model and its thread pools belong to the process using it).

    Also the detection families' own modules (their models and PIL image processors), which
    transformers imports lazily on a model's first load, and transformers' table of
    checkpoint renamings, which it builds on the first load in each process by compiling
    ~1,000 regular expressions: a fresh pool process's first load of a test-sized checkpoint
    0.48 -> 0.27 s on a 2-core Zen 2 (0.28 s paid once here instead of after every kill -9
    or ``--max-tasks-per-child`` restart)."""
    from transformers import (  # noqa: F401
        AutoConfig,
        AutoImageProcessor,
        AutoModelForObjectDetection,
    )

    import playground.runtime.detector  # noqa: F401

    for module in PREFORK_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:  # another transformers: its first load imports what it has
            logger.info("not imported before the fork: %s", module)
    try:
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping

        get_checkpoint_conversion_mapping("detr")  # builds the table (a module-level cache)
    except Exception as exc:  # an optimisation only: each first load builds it otherwise
        logger.info("transformers' conversion table not built before the fork (%s)", exc)


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


def _send_again(job_id: str) -> None:
    """This job's message again, to its queue, in RETRY_DELAY seconds, with its request id."""
    request = run_detection.request
    run_detection.apply_async(
        (job_id,),
        queue=(request.delivery_info or {}).get("routing_key") or settings.VITRINE_INFERENCE_QUEUE,
        headers={REQUEST_ID_HEADER: getattr(request, REQUEST_ID_HEADER, None) or ""},
        countdown=RETRY_DELAY,
    )


def _is_transient(exc: BaseException) -> bool:
    """Errors worth another attempt: the GPU ran out of memory under a burst of work."""
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


@shared_task(
    name="playground.run_detection",
    acks_late=True,
    reject_on_worker_lost=True,
    Strategy="playground.tasks:job_strategy",
    resultrepr_maxsize=ENDED_REPORT_MAX_CHARS,
)
def run_detection(job_id: str) -> str | None:
    """Run one job, and queued jobs of the same model with it when batching pays.

    Safe to deliver twice: only the claim that wins the row runs it.
    """
    from playground import provenance, services
    from playground.runtime import get_detector, loaded_detectors

    if job_id in _ended_here:
        logger.info("job %s: ended here with another job's batch, nothing to do", job_id)
        return
    try:
        job = services.job_claim(
            job_id=job_id, worker=worker_id(), provenance=provenance.claim_provenance()
        )
        if job is None:
            # Not queued: done, cancelled, or running. A message comes back while the row
            # says running when the process that ran it died (see job_take_over).
            job = services.job_take_over(job_id=job_id, worker=worker_id())
    except services.JobHeld:
        # Its call's transaction (which sent this before committing the row) is still
        # open: neither committed nor rolled back. Ask again later; the sweeper is there too.
        logger.warning("job %s: still being created; its message is sent again", job_id)
        _send_again(job_id)
        return
    except (OperationalError, InterfaceError) as exc:
        # The database is down or restarting: nothing was claimed. The message was taken
        # off the queue (acks_late acks a task that raised), so it is sent again, later,
        # rather than the job waiting for the sweeper (VITRINE_REQUEUE_AFTER, 120 s).
        logger.warning("job %s: the database is unavailable (%s); sent again", job_id, exc)
        connection.close()  # the next attempt connects anew
        _send_again(job_id)
        return
    if job is None:
        logger.info("job %s: not queued any more, nothing to do", job_id)
        return
    if job.route_id and not job.route.is_own:
        with LeaseKeeper([job]):
            _run_on_provider(job)
        return
    spec = services.card_spec(job.card)
    keeper = LeaseKeeper([job])
    with keeper:
        # The first job of a model in this process waits for its load: say so on the row
        # (the demo's "loading the model"), and time it.
        loading = spec.key not in loaded_detectors()
        if loading:
            services.job_phase_set(job=job, phase="loading_model")
        started = time.perf_counter()
        try:
            detector = get_detector(spec)
        except WeightsNotInstalled as exc:
            services.job_fail(job=job, code=exc.code, message=str(exc))
            return
        except Exception as exc:
            logger.exception("job %s: the model did not load", job_id)
            message = f"{type(exc).__name__}: {exc}"
            services.job_fail(job=job, code="model_load_failed", message=message)
            return
        # On a GPU one forward pass over several images pays; on CPU the default batch is 1.
        more = services.jobs_claim_batch(
            like=job,
            worker=worker_id(),
            limit=detector.default_batch_size - 1,
            provenance=provenance.claim_provenance(),
        )
        if loading:
            services.job_phase_set(job=job, phase="")
        load = {job.pk: time.perf_counter() - started} if loading else {}
        keeper.jobs.extend(more)
        ended: list = []
        try:
            _run_batch(detector, [job, *more], ended, load_times=load)
        finally:
            _ended(ended)
        return _ended_report(ended)


class LeaseKeeper:
    """The heartbeat of a running batch: while this process works on the jobs, their
    leases are renewed every third of VITRINE_JOB_LEASE. When the process dies (kill -9,
    out of memory, the machine lost) the renewals stop and the reaper queues the jobs again
    within a lease; while it lives, a long forward pass is never mistaken for a lost one.

    One thread per process beats for every batch it holds (torch releases the GIL in its
    kernels, so it runs during the forward pass): entering and leaving a batch only adds
    and removes its jobs, so a job's path pays for no thread start or join (a batch used to
    start its own thread). Each batch is renewed within a beat of entering, well inside
    its lease, and a job that ended is never renewed (the renewal is compare-and-set on
    running and this worker).
    """

    _lock = threading.Lock()  # guards _held and _beating
    _renewing = threading.Lock()  # held by the thread while it renews
    _held: dict[int, LeaseKeeper] = {}
    _beating: threading.Thread | None = None

    @classmethod
    def _forget_parent(cls) -> None:
        """In a forked child (a pool process): none of the parent's batches, thread or locks."""
        cls._lock, cls._renewing = threading.Lock(), threading.Lock()
        cls._held, cls._beating = {}, None

    def __init__(self, jobs: list) -> None:
        self.jobs = list(jobs)
        self.worker = worker_id()

    def __enter__(self) -> LeaseKeeper:
        cls = type(self)
        with cls._lock:
            cls._held[id(self)] = self
            if cls._beating is None or not cls._beating.is_alive():
                cls._beating = threading.Thread(target=cls._beat, name="lease-keeper", daemon=True)
                cls._beating.start()
        return self

    def __exit__(self, *exc_info) -> None:
        with self._lock:
            self._held.pop(id(self), None)
        # A beat already under way may hold this batch: wait for it (as a batch's own
        # thread was joined), so nothing of it is renewed once this returns.
        if self._renewing.acquire(timeout=10):
            self._renewing.release()

    @classmethod
    def _beat(cls) -> None:
        from django.db import connection

        from playground import services

        while True:
            time.sleep(settings.VITRINE_JOB_LEASE / 3)
            with cls._renewing:
                with cls._lock:
                    held = [(keeper.worker, list(keeper.jobs)) for keeper in cls._held.values()]
                try:
                    for worker, jobs in held:
                        try:
                            services.jobs_renew_leases(jobs=jobs, worker=worker)
                        except Exception:  # a database blip: the next beat tries again
                            logger.exception("lease renewal failed")
                finally:
                    connection.close()  # this thread's own: held only while it beats


os.register_at_fork(after_in_child=LeaseKeeper._forget_parent)


def _queue_wait(job) -> float:
    """Seconds the job waited in its queue before this attempt started."""
    if job.started_at is None or job.queued_at is None:
        return 0.0
    return max(0.0, (job.started_at - job.queued_at).total_seconds())


def _run_batch(detector, jobs, ended: list, *, load_times: dict | None = None) -> None:
    """Run the jobs; the ids of those it ended (succeeded or failed) go into ``ended``."""
    from playground import provenance, services

    def job_fail(*, job, code: str, message: str) -> None:
        if services.job_fail(job=job, code=code, message=message):
            ended.append(job.pk)

    # Every job records what runs it (most with their claim: provenance.claim_provenance);
    # a paid job on untrained weights fails unbilled unless VITRINE_ALLOW_UNTRAINED.
    # With the revision the card names as the batch runs (its checkpoint may have changed
    # since the jobs were queued), read from the card, not the detector: one loaded from a
    # local folder serves every revision naming that folder, and its own spec may carry an
    # earlier one.
    ran = {**detector.provenance, "model_revision": jobs[0].card.checkpoint_revision}
    fields = provenance.provenance_fields(ran)
    unrecorded = [j for j in jobs if not provenance.recorded(j, fields)]
    if unrecorded:
        provenance.jobs_record_provenance(jobs=unrecorded, provenance=ran, worker=worker_id())
    provenance.remember(card_id=jobs[0].card_id, fields=fields)
    refused = [j for j in jobs if provenance.untrained_refused(j, untrained=detector.untrained)]
    for job in refused:
        logger.error(
            provenance.UNTRAINED_REFUSED_LOG.format(label=detector.spec.label, job_id=job.pk)
        )
        job_fail(job=job, code="untrained_weights", message="untrained weights")
    jobs = [j for j in jobs if j not in refused]
    images, ready, decode_times = [], [], {}
    # The web process checked the fit from the config file; the loaded processor is the truth
    # (a checkpoint installed after the upload, a config the web could not read).
    rule = rule_from_processor(detector.processor)
    uploads = []  # (job, bytes, seconds to read them)
    for job in jobs:  # read here: the storage client is this thread's
        started = time.perf_counter()
        try:
            data = upload_read(job.image_name)
            uploads.append((job, data, time.perf_counter() - started))
        except FileNotFoundError:
            job_fail(job=job, code="image_missing", message=IMAGE_MISSING)
        except StorageUnavailable as exc:
            _retry_or_fail(job, code="storage_unavailable", message=str(exc), outage=True)

    def decode(upload):  # on the decode threads for a batch: no database here
        started = time.perf_counter()
        decoded = decode_image(upload[1], max_pixels=settings.VITRINE_MAX_IMAGE_PIXELS)
        check_model_fit(*decoded.image.size, rule)
        return decoded, time.perf_counter() - started

    for (job, _, read_s), outcome in zip(uploads, decode_many(uploads, decode), strict=True):
        if isinstance(outcome, ImageError):
            job_fail(job=job, code=outcome.code, message=str(outcome))
            continue
        if isinstance(outcome, Exception):
            raise outcome
        images.append(outcome[0])
        decode_times[job.pk] = read_s + outcome[1]  # reading it and decoding it
        ready.append(job)
    if not ready:
        return
    try:
        results = detector.detect(
            images,
            threshold=settings.VITRINE_DETECTION_FLOOR,
            batch_size=len(images),
            float_boxes=True,  # kept beside the ints for box_format=float
        )
    except SoftTimeLimitExceeded:
        for job in ready:
            job_fail(job=job, code="timeout", message="The job ran out of time.")
        return
    except Exception as exc:
        transient = _is_transient(exc)
        if not transient:
            logger.exception("batch of %d failed", len(ready))
        for job in ready:
            if transient and job.attempts < job.max_attempts:
                if services.job_release_for_retry(job=job):
                    run_detection.apply_async(
                        (str(job.pk),), **job_message(job), countdown=RETRY_DELAY
                    )
            else:
                message = f"{type(exc).__name__}: {exc}"
                job_fail(job=job, code="inference_error", message=message)
        return
    # A drop-in call whose database was away at its bound may have given its job up (it
    # answered 503, nothing charged): such a job ends cancelled, unbilled (events.FATE).
    now = timezone.now()
    given_up = events.jobs_given_up(
        [job.pk for job in ready if events.give_up_possible(job.created_at, now)]
    )
    finished = []
    for job, result in zip(ready, results, strict=True):
        if job.pk in given_up:
            logger.warning("job %s: its call gave it up while the database was away", job.pk)
            if services.job_cancel_given_up(job=job):
                ended.append(job.pk)
            continue
        timings = {"queue": _queue_wait(job), "decode": decode_times[job.pk]}
        if load_times and job.pk in load_times:
            timings["load"] = load_times[job.pk]  # this job waited for the model's load
        timings.update(result.timings, batch=len(ready))
        finished.append((job, result.detections, timings))
    done = services.jobs_succeed(finished=finished)
    ended.extend(job.pk for (job, _, _), ok in zip(finished, done, strict=True) if ok)


def job_message(job) -> dict:
    """The options of a job's ``run_detection`` message: its queue, and its row's request id
    as a header, which the worker binds to the task's log lines (playground.tracing)."""
    return {"queue": job.queue, "headers": {REQUEST_ID_HEADER: job.request_id or ""}}


def retry_delay(attempts: int) -> int:
    """Seconds before the next attempt of a job that has made ``attempts``: 5, 20, 60."""
    return min(RETRY_DELAY_MAX, RETRY_DELAY * 4 ** max(0, attempts - 1))


def _retry_or_fail(job, *, code: str, message: str, outage: bool = False) -> None:
    """A transient error: give the job back to the queue while it has attempts left.
    ``outage``: the upload's storage is away, no fault of the job's: it is tried again,
    using up none of its attempts, until ``VITRINE_QUEUE_TIMEOUT`` from its creation (as a
    job no worker took is given up). Its attempts (5 s and 20 s apart) saw it through 25 s
    of an S3 outage before."""
    from playground import services

    # On the database's clock, as the sweeper's queue timeout is: a worker 20 min ahead
    # gave up at once (session 43).
    age = (services.db_now() - job.created_at).total_seconds() if outage else 0.0
    if outage and age < settings.VITRINE_QUEUE_TIMEOUT:
        logger.warning("job %s: %s; waiting for the storage", job.pk, message)
        if services.job_release_for_retry(job=job, extend=True):
            countdown = retry_delay(job.attempts)
            run_detection.apply_async((str(job.pk),), **job_message(job), countdown=countdown)
        return
    if job.attempts < job.max_attempts:
        logger.warning("job %s: %s; retrying", job.pk, message)
        if services.job_release_for_retry(job=job):
            countdown = retry_delay(job.attempts)
            run_detection.apply_async((str(job.pk),), **job_message(job), countdown=countdown)
    else:
        services.job_fail(job=job, code=code, message=message)


@shared_task(name="playground.reap_stale_jobs")
def reap_stale_jobs() -> dict[str, int]:
    """Periodic (Celery beat): re-queue jobs whose worker died, fail those out of attempts;
    send again the messages of queued jobs nobody claimed, fail those queued too long."""
    from playground import services
    from playground.webhooks import webhooks_sweep

    counts = {**services.jobs_reap_stale(), **services.jobs_sweep_queued()}
    counts["webhooks_resent"] = webhooks_sweep()
    if any(counts.values()):
        logger.warning("reaper: %s", counts)
    return counts


@shared_task(name="playground.deliver_webhook", acks_late=True, soft_time_limit=60, time_limit=90)
def deliver_webhook(
    delivery_id: int,
    attempts: int | None = None,
    due: float | None = None,
    started: float | None = None,
) -> str:
    """POST a finished job to its webhook, signed; on failure the next try is queued with
    backoff (playground/webhooks.py; ``due``: when a long backoff's attempt is due).
    Delivery is at least once: receivers dedupe on ``Vitrine-Webhook-Id``."""
    from playground.webhooks import webhook_deliver

    return webhook_deliver(delivery_id=delivery_id, attempts=attempts, due=due, started=started)


@shared_task(name="playground.purge_expired_uploads")
def purge_expired_uploads() -> dict[str, int]:
    """Periodic (Celery beat): delete expired free tries and the images of expired paid jobs
    (``VITRINE_TRY_RETENTION``, ``VITRINE_UPLOAD_RETENTION``), and the rows nothing else
    deletes: expired sessions, old health pings, Idempotency-Keys past their TTL."""
    from playground.idempotency import call_records_purge_expired
    from playground.retention import records_purge_expired, uploads_purge_expired

    counts = uploads_purge_expired()
    forgotten = call_records_purge_expired()  # Idempotency-Keys and HF cache entries past TTL
    forgotten |= records_purge_expired()  # expired sessions, health pings past a day
    if any(forgotten.values()):
        logger.info("retention: %s", forgotten)
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
        _retry_or_fail(job, code="storage_unavailable", message=str(exc), outage=True)
        return
    # Its call gave it up (the database away, events.FATE): the provider is not paid for it.
    if events.give_up_possible(job.created_at, timezone.now()) and events.jobs_given_up([job.pk]):
        services.job_cancel_given_up(job=job)
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


@shared_task(name="playground.refresh_model_stats")
def refresh_model_stats() -> dict[str, int]:
    """Periodic (Celery beat, every ``VITRINE_STATS_INTERVAL`` s): recompute the measured
    latency and run counts the model pages show (catalog.ModelStats)."""
    from playground.stats import model_stats_refresh

    counts = model_stats_refresh()
    logger.info("model stats: %s", counts)
    return counts
