"""Writes to jobs. Every state change is a compare-and-set update on the job row.

A job is created in the request's transaction and its id enqueued on commit; a worker
claims it with ``UPDATE ... WHERE status='queued'`` so two deliveries of one message (a
redelivery after a lost worker, a reaper re-queue) never run it twice at once, and it is
finished with ``UPDATE ... WHERE status='running' AND attempts=<its attempt>`` so a
worker that lost its claim cannot overwrite the result of the one that holds it.

Nothing is stranded: a job whose message could not be sent is failed at once with its
money released (``job_abandon_unqueued``), or, if it was kept, found by the sweeper
(``jobs_sweep_queued``) and sent again or failed; a running job is held by a short lease
that its worker's heartbeat renews (``jobs_renew_leases``), so a lost worker's job is
queued again by the reaper within a lease, or taken over at once when its message comes
back and its holder is provably dead (``job_take_over``).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache as shared_cache
from django.db import DatabaseError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone

from billing.models import AccountKind
from billing.services.charges import (
    SETTLE_IN_FINISH_CALL,
    SETTLE_NEEDS_ORM,
    charge_post,
    charge_void,
    settle_params,
)
from catalog.db import (
    DB_NOW,
    UNFLUSHED_COMMIT,
    JoinedRow,
    db_value,
    prepared_insert,
    prepared_pipeline,
    prepared_row,
    prepared_rows,
)
from catalog.errors import ApplicationError
from catalog.models import ModelCard, Organisation, PriceRoute
from catalog.observability import current_request_id
from playground.events import job_finished_publish, jobs_finished_publish
from playground.failures import QUEUE_TIMEOUT, QUEUE_UNAVAILABLE
from playground.limits import ACCOUNT_CLOSED
from playground.models import Job, JobAttempt, JobStatus, WebhookDelivery
from playground.runtime import CheckpointSpec, ImageFacts, inspect_image
from playground.runtime.fit import check_model_fit, processor_config, rule_from_config
from playground.selectors import answer_carry, answer_sql
from playground.storage import StorageUnavailable, upload_delete, upload_save

logger = logging.getLogger(__name__)

EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif"}
FINAL = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED]


def card_spec(card: ModelCard) -> CheckpointSpec:
    """The checkpoint a card's own route runs."""
    return CheckpointSpec(
        repo=card.checkpoint_repo,
        revision=card.checkpoint_revision,
        local_dir=card.checkpoint_local_dir,
    )


def _lease() -> timedelta:
    return timedelta(seconds=settings.VITRINE_JOB_LEASE)


def _lease_from(now: datetime) -> datetime:
    return now + _lease()


def db_clock():
    """The time an ORM update writes for a job: the database's clock on PostgreSQL (the
    statement's, ``Now()``), so a job's times from the web and from a worker are on one
    clock; this machine's on SQLite (one machine)."""
    return Now() if connection.vendor == "postgresql" else timezone.now()


def db_now() -> datetime:
    """The database's clock. Leases are written and compared on it, not on each machine's
    own: a worker whose clock was 60 s behind the reaper's had its running jobs reaped and
    run again, up to their last attempt (session 43). SQLite: one machine, one clock."""
    if connection.vendor != "postgresql":
        return timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        return cursor.fetchone()[0]


# Sending a message must fail fast when the broker is away: the caller is told at once
# (503) rather than held while kombu retries, and the sweeper sends it again later.
ENQUEUE_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}


# A send that failed, or took past BROKER_SLOW seconds, marks the broker suspect in this
# process for BROKER_SUSPECT_FOR seconds; a send that succeeded within BROKER_SLOW clears
# it. While it is suspect, new jobs' messages leave after their transaction commits rather
# than inside it (``sends_before_commit``): a send into a silent broker waits its socket
# timeout, and inside the transaction it held the account's user row and wallet, so one
# account's concurrent calls waited on each other's timeouts in turn (up to ~33 s measured
# in session 43, each told 503 in the end); after the commit they wait side by side.
BROKER_SLOW = 1.0
BROKER_SUSPECT_FOR = 30.0
_broker_suspect_until = 0.0


def broker_suspect() -> bool:
    """Whether this process's last sends found the broker failing or slow (see above)."""
    return time.monotonic() < _broker_suspect_until


def _broker_seen(*, sent: bool, took: float) -> None:
    global _broker_suspect_until
    if sent and took <= BROKER_SLOW:
        _broker_suspect_until = 0.0
    else:
        _broker_suspect_until = time.monotonic() + BROKER_SUSPECT_FOR


def _send(job: Job) -> bool:
    """Send the job's message; False (logged, never raised) when the broker is unreachable."""
    started = time.monotonic()
    try:
        # Imported on a web process's first send, so inside the try: with no file
        # descriptor free (a burst past `ulimit -n`) the import itself fails, and that call
        # was a 500 instead of the 503 of a broker it cannot reach (session 44).
        from playground.messages import publish
        from playground.tasks import job_message, run_detection

        publish(
            run_detection, (str(job.pk),), **job_message(job), retry=True,
            retry_policy=ENQUEUE_RETRY_POLICY,
        )  # fmt: skip
    except Exception as exc:  # kombu/redis/amqp raise many types; all mean "not sent"
        logger.warning("job %s: not enqueued (%s: %s)", job.pk, type(exc).__name__, exc)
        _broker_seen(sent=False, took=time.monotonic() - started)
        return False
    _broker_seen(sent=True, took=time.monotonic() - started)
    return True


def _enqueue(job: Job) -> bool:
    """``_send`` after the job's commit; a failure is recorded on the row (``enqueued_at``
    cleared), so the sweeper knows which queued jobs have no message."""
    if _send(job):
        return True
    Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(enqueued_at=None)
    job.enqueued_at = None
    return False


def _publish_on_commit(job_id, *, webhook: bool | None = None, answer: tuple | None = None) -> None:
    """After the commit that ended the job: its finished signal, then its webhook queued.
    ``webhook`` False: the job is known to have none (read with its claim), so no query
    looks for one; None: not known, look. ``answer``: the job's answer row as committed
    (``selectors.answer_sql``), carried by the signal so a waiting call need not read it."""
    from playground.webhooks import webhook_job_finished

    transaction.on_commit(lambda: job_finished_publish(job_id, answer=answer))
    # Every path that ends a job passes here: its webhook (if any) is queued after commit.
    if webhook is not False:
        transaction.on_commit(lambda: webhook_job_finished(job_id))


def _known_webhook(job: Job) -> bool | None:
    """Whether the job has a webhook, as read with it (its claim); None when not read.
    A webhook is registered with its job, in the transaction that creates it, so what the
    claim read holds until the job ends."""
    related = Job.webhook_delivery.related
    if not related.is_cached(job):
        return None
    return related.get_cached_value(job) is not None


# Not atomic itself: its writes are the row's INSERT and, for a paid call, the reservation
# before it. A paid call creates the job inside its own transaction (pipeline.job_submit),
# where an atomic block here cost a savepoint (two round trips) on every call; there, on
# PostgreSQL, the message is sent before the row is written (see _HOLD_SQL), elsewhere on
# the commit that saves the row (at once outside a transaction).
def job_create(
    *,
    card: ModelCard,
    image_bytes: bytes,
    route: PriceRoute | None = None,
    parameters: dict | None = None,
    owner=None,
    session_key: str = "",
    queue: str | None = None,
    request_id: str | None = None,
    reserve: Callable[[uuid.UUID], object] | None = None,
    job_id: uuid.UUID | None = None,
    send_now: bool = False,
) -> Job:
    """Validate and store the image, create the job row, enqueue its id on commit (with
    ``send_now``, before it).

    ``request_id`` defaults to the id of the request this runs in (``X-Request-Id``), so the
    job, its worker's log lines and the response share one id.
    Raises ``ImageError`` (bad input: nothing is stored, nothing queued), also for an image
    the model's processor could not use (a 10000x10 strip), checked from the checkpoint's
    processor config without loading the model; and ``StorageUnavailable`` (the upload
    storage failed: no row either).
    ``reserve(job_id)``: a paid call's reservation, run once the image passed its checks and
    before anything is stored (its refusal, a 402, leaves no upload behind); it returns the
    charge's id, which the row is inserted with (``cost_ref``). Both are in the caller's
    transaction: a later failure undoes them together.
    ``job_id``: the new job's id (default: a new one). ``send_now``: its message is sent
    before the caller's transaction commits (see ``_HOLD_SQL``; ``sends_before_commit``
    says where), which has taken the job's hold (``job_hold_statement``).
    """
    if owner is not None and reserve is None:
        # A free try of a signed-in visitor whose account was closed while the request was
        # on its way: no job for a closed account (billing/services/accounts.py). A paid
        # call (``reserve``) read it in the user row's lock statement it sends anyway
        # (``limits.inflight_jobs_check``), so its hot path pays no query for it.
        users = get_user_model().objects  # owner may be request.user, a SimpleLazyObject
        if connection.in_atomic_block:  # the try's transaction: ordered against the close
            users = users.select_for_update()
        if not users.filter(pk=owner.pk, is_active=True).exists():
            raise ApplicationError(
                ACCOUNT_CLOSED, code="invalid_api_key", status=401, type="authentication_error"
            )
    # Checked, not decoded: the worker decodes it for the model.
    decoded: ImageFacts = inspect_image(image_bytes, max_pixels=settings.VITRINE_MAX_IMAGE_PIXELS)
    if route is None or route.is_own:  # a provider route runs the provider's own processor
        check_model_fit(*decoded.oriented_size, rule_from_config(processor_config(card_spec(card))))
    job_id = job_id or uuid.uuid4()
    cost_ref = str(reserve(job_id)) if reserve is not None else ""
    # On PostgreSQL the row's times are the database's clock (``DB_NOW``, read back by the
    # insert), as the worker's are: a job's queue wait spans two machines.
    now = DB_NOW if connection.vendor == "postgresql" else timezone.now()
    job = Job(
        id=job_id,
        cost_ref=cost_ref,
        created_at=now,
        queued_at=now,
        enqueued_at=now,  # cleared by _enqueue if the message cannot be sent
        card=card,
        route=route,
        owner=owner,
        session_key=session_key,
        parameters=parameters or {},
        image_sha256=decoded.sha256,
        image_bytes=len(image_bytes),
        original_width=decoded.original_size[0],
        original_height=decoded.original_size[1],
        width=decoded.oriented_size[0],
        height=decoded.oriented_size[1],
        queue=queue or settings.VITRINE_INFERENCE_QUEUE,
        max_attempts=settings.VITRINE_JOB_MAX_ATTEMPTS,
        model_revision=(route.provider_model_id if route is not None and not route.is_own else "")
        or card.checkpoint_revision,
        request_id=current_request_id() if request_id is None else request_id,
    )
    if send_now and broker_suspect():
        # Decided before the caller's locks were taken: the broker may have gone bad while
        # this call waited for them. Sent after the commit instead, the locks released.
        send_now = False
    if send_now and not _send(job):  # before the row: see _HOLD_SQL
        job.enqueued_at = None
    # Through the shared storage (playground/storage.py): the worker that runs the job may
    # be on another machine. Keep the name the backend returns. Stored before the row is
    # written, so no row lock is held during the network round trip.
    job.image_name = upload_save(
        name=f"{uuid.uuid4().hex}{EXTENSIONS.get(decoded.format, '')}", content=image_bytes
    )
    # On PostgreSQL one prepared statement: every call makes a job, and the ORM's INSERT
    # costs ~1 ms of compiling on two cores (tests/playground/test_job_insert_pg.py holds
    # the two to the same row). No receiver listens for a Job's save signals.
    if connection.vendor == "postgresql":
        prepared_insert(job)
    else:
        job.save(force_insert=True)
    logger.info(
        "job_created", extra={"job_id": str(job.pk), "model": card.model_id, "queue": job.queue}
    )
    # If the transaction rolls back, the file is orphaned, never the reverse (and a message
    # sent before the commit finds no job). A failed send leaves job.enqueued_at None: the
    # caller decides (job_abandon_unqueued), or the sweeper sends it again.
    if not send_now:
        transaction.on_commit(lambda: _enqueue(job))
    return job


# A job's message is sent before the transaction that creates its row commits (on
# PostgreSQL, inside that transaction): the worker's hand-off and its claim then run while
# the call stores the image and commits, not after. The transaction first takes the job's
# hold, an advisory lock of the job's id held until it ends; a worker's claim takes the hold
# before its update (two statements, one round trip), so it waits for that commit and then
# sees the row, or finds none when the call failed and rolled back (the message is then
# dropped: nothing was queued). A call whose transaction outlives HOLD_WAIT (a storage
# stall) has its message sent again later (playground.tasks.run_detection).
_HOLD_SQL = "SELECT pg_advisory_xact_lock(%s::bigint)"
# The claim's: the same lock, waited for HOLD_WAIT at most (set for its transaction only).
_HOLD_WAIT_SQL = f"{_HOLD_SQL} FROM (SELECT set_config('lock_timeout', %s::text, true)) AS wait"
HOLD_WAIT = "10s"
_LOCK_NOT_AVAILABLE = "55P03"


class JobHeld(Exception):
    """The call creating this job has held it past HOLD_WAIT: neither committed nor gone."""


def _hold_key(job_id) -> int:
    """The advisory lock's key: the id's first 64 bits (another job sharing them only
    waits for the same commit)."""
    job_id = job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(str(job_id))
    return int.from_bytes(job_id.bytes[:8], "big", signed=True)


# A synchronous call's transaction, with the hold: it commits without waiting for its WAL
# fsync (catalog.db.UNFLUSHED_COMMIT), for the caller is told nothing until the job ends.
_HOLD_UNFLUSHED_SQL = f"{_HOLD_SQL} FROM {UNFLUSHED_COMMIT}"


def job_hold_statement(job_id, *, flushed: bool = True) -> tuple[str, list]:
    """The statement taking a new job's hold (``catalog.db.prepared_row``/``_pipeline``),
    for a caller that sends it with its own statements. ``flushed=False``: the transaction
    also commits without waiting for its WAL fsync; only for a call that answers once the
    job has ended (see ``creation_flush``)."""
    return (_HOLD_SQL if flushed else _HOLD_UNFLUSHED_SQL), [_hold_key(job_id)]


# A write whose own commit waits for the WAL fsync, and so for everything written before it.
_CREATION_FLUSH_SQL = (
    f"UPDATE {Job._meta.db_table} SET enqueued_at = enqueued_at WHERE id = %s::uuid RETURNING id"
)


def creation_flush(job_id) -> None:
    """Make the commit that created ``job_id`` durable, before a caller is told of a job
    that has not ended.

    A synchronous call's job is created by a transaction that commits without waiting for
    its WAL fsync (``job_hold_statement(flushed=False)``): on a slow disk that wait is ~0.7
    ms of every call, on the path the worker's claim waits on, and the call tells the
    caller nothing while it waits. Its answer normally comes from the job's end, written by
    a synchronous commit, whose fsync covers the creation with it (WAL is flushed in
    order; a final state is never written without one). Any other answer about the job
    while it has not ended (202 at the wait's bound, a flavour's "still running") comes
    after this: one write on the job's row committed synchronously. Should the database
    crash within the unflushed moment, the job, its reservation and its claim are lost
    together, before anyone was told of them: nothing was charged and the call is answered
    503, retry (``api.job_lost``). Does nothing outside PostgreSQL or inside a transaction.
    """
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return
    prepared_row(_CREATION_FLUSH_SQL, [job_id])


def sends_before_commit() -> bool:
    """Whether a job created in a transaction opened now can have its message sent before
    that transaction commits (``job_create(send_now=True)``): on PostgreSQL, when it is
    the outermost one (it commits as it ends; inside another, the message waits for that
    one's commit), and while this process's sends find the broker failing or slow
    (``broker_suspect``: not inside the transaction's locks)."""
    return (
        connection.vendor == "postgresql"
        and not connection.in_atomic_block
        and not broker_suspect()
    )


def job_abandon_unqueued(*, job: Job) -> bool:
    """Fail a job whose message could not be sent and release its money, in one
    transaction, so a caller told "503, retry" is holding nothing. False if a worker (via a
    message the sweeper sent meanwhile) already took it."""
    with transaction.atomic():
        done = Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
            status=JobStatus.FAILED,
            finished_at=db_clock(),
            error_code="queue_unavailable",
            error_message=QUEUE_UNAVAILABLE,
        )
        if done:
            _settle_charge(job_id=job.pk, status=JobStatus.FAILED)
            _publish_on_commit(job.pk)
    return bool(done)


# The claim on PostgreSQL, one prepared statement (see job_claim): the compare-and-set
# update, the attempt's row, and the job read back with what the worker reads next (and
# its webhook, so a job without one ends without a query looking for it).
_CLAIMED = JoinedRow(
    (Job, "j"), (ModelCard, "c"), (Organisation, "o"), (PriceRoute, "r"), (WebhookDelivery, "w")
)


# What the claim writes as the job's provenance when the worker names a card (the one it
# last ran: provenance.claim_provenance) and the job is that card's on its own route.
_CLAIM_PROVENANCE = (
    "model_revision",
    "weights_revision",
    "weights_untrained",
    "runtime_backend",
    "runtime_precision",
)


@cache
def _claim_sql(*, fsync: bool = True, batch: bool = False, routed: bool = False) -> str:
    """The claim's statement. ``batch``: instead of one job by id, up to a number of the
    oldest queued jobs like one (its card, its queue, and its route when ``routed``, else
    none), skipping rows another claim has locked; read back oldest first."""
    no_fsync = "" if fsync else f", {UNFLUSHED_COMMIT}"
    table = Job._meta.db_table
    # The worker's model runs jobs of its card on the card's own route (none, or is_own).
    ran_here = (
        f"{table}.card_id = p.card_id AND ({table}.route_id IS NULL OR {table}.route_id IN "
        f"(SELECT id FROM {PriceRoute._meta.db_table} WHERE is_own))"
    )
    provenance = ",\n        ".join(
        f"{name} = CASE WHEN {ran_here} THEN p.{name} ELSE {table}.{name} END"
        for name in _CLAIM_PROVENANCE
    )
    queued = f"status = '{JobStatus.QUEUED.value}' AND attempts < max_attempts"
    if batch:
        # Rows visible here were committed, so no call holds them (_HOLD_SQL): no hold to
        # wait for. SKIP LOCKED: a row another worker is claiming is left to it.
        route = "route_id = %s::bigint" if routed else "route_id IS NULL"
        picked = f"""picked AS (
    SELECT id FROM {table}
    WHERE {queued} AND card_id = %s::bigint AND queue = %s::text AND {route}
    ORDER BY created_at LIMIT %s::integer
    FOR UPDATE SKIP LOCKED
), """
        source, where = ", picked", f"{table}.id = picked.id"
    else:
        picked, source, where = "", "", f"id = %s::uuid AND {queued}"
    return f"""
WITH {picked}j AS (
    UPDATE {table}
    SET status = '{JobStatus.RUNNING.value}', attempts = attempts + 1,
        started_at = COALESCE(%s::timestamptz, statement_timestamp()),
        lease_expires_at = COALESCE(%s::timestamptz, statement_timestamp()) + %s::interval,
        worker = %s::text,
        {provenance}
    FROM (VALUES (%s::bigint, %s::text, %s::text, %s::boolean, %s::text, %s::text))
        AS p(card_id, {", ".join(_CLAIM_PROVENANCE)}){source}{no_fsync}
    WHERE {where}
    RETURNING {table}.*
), attempt AS (
    INSERT INTO {JobAttempt._meta.db_table} (job_id, number, worker, started_at, outcome)
    SELECT j.id, j.attempts, %s::text, j.started_at, '{JobAttempt.Outcome.RUNNING.value}' FROM j
)
SELECT {_CLAIMED.select_list}
FROM j
JOIN {ModelCard._meta.db_table} c ON c.id = j.card_id
JOIN {Organisation._meta.db_table} o ON o.id = c.organisation_id
LEFT JOIN {PriceRoute._meta.db_table} r ON r.id = j.route_id
LEFT JOIN {WebhookDelivery._meta.db_table} w ON w.job_id = j.id
ORDER BY j.created_at"""


def _job_claim_sql(
    *,
    job_id,
    worker: str,
    now: datetime,
    provenance: tuple[int, dict] | None = None,
    lease_from_now: bool = True,
) -> Job | None:
    # Its own transaction commits without waiting for its fsync (~0.6 ms of every job on
    # this disk; more on a slow one; catalog.db.UNFLUSHED_COMMIT): the job's finish, a
    # synchronous commit, flushes the claim with it. A database crash before then can only
    # lose the claim itself: the job is queued again as before it (no money moved) and the
    # sweeper sends its message again; its worker's later writes are compare-and-set, so
    # they change nothing, or finish the job another worker took again meanwhile with the
    # same model's answer, charged once (the settlement is idempotent per job). Inside a
    # caller's transaction the claim waits for its fsync as before.
    sql = _claim_sql(fsync=connection.in_atomic_block)
    card_id, fields = provenance or (None, {})
    written = [card_id, *(fields.get(name) for name in _CLAIM_PROVENANCE)]
    # None: the start and the lease are the database's clock (a caller's ``now``: its own)
    base = now if lease_from_now else None
    try:
        row = prepared_pipeline(
            [
                (_HOLD_WAIT_SQL, [_hold_key(job_id), HOLD_WAIT]),
                (sql, [base, base, _lease(), worker, *written, job_id, worker]),
            ]
        )[1]
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
            raise JobHeld(job_id) from exc
        raise
    if row is None:
        return None
    return _claimed_job(row)


def _claimed_job(row: tuple) -> Job:
    """A claim's joined row as the job, with its card, organisation, route and webhook."""
    job, card, organisation, route, delivery = _CLAIMED.build(row)
    ModelCard.organisation.field.set_cached_value(card, organisation)
    Job.card.field.set_cached_value(job, card)
    Job.route.field.set_cached_value(job, route)
    Job.webhook_delivery.related.set_cached_value(job, delivery)
    if delivery is not None:
        WebhookDelivery.job.field.set_cached_value(delivery, job)
    return job


def job_claim(
    *,
    job_id,
    worker: str,
    now: datetime | None = None,
    provenance: tuple[int, dict] | None = None,
) -> Job | None:
    """Take a queued job for this worker; None when it is gone, taken or out of attempts.

    On PostgreSQL it is one prepared statement, its own transaction: every job pays for a
    claim, and on two cores the ORM's four statements (update, joined read, insert,
    commit) cost ~5 ms of Python; SQLite runs the same steps through the ORM.
    tests/playground/test_claim_paths_pg.py holds the two to the same rows and instances.
    ``provenance`` (card id, fields; ``provenance.claim_provenance``): written with the
    claim on PostgreSQL when the job is that card's on its own route, so the worker need
    not write it before the forward (it checks, and writes the loaded model's otherwise).
    """
    # The lease runs from the database's clock (``db_now``) unless ``now`` is given.
    given, now = now is not None, now or timezone.now()
    if connection.vendor == "postgresql":
        job = _job_claim_sql(
            job_id=job_id, worker=worker, now=now, provenance=provenance, lease_from_now=given
        )
    else:
        job = _job_claim_orm(job_id=job_id, worker=worker, now=now)
    if job is not None:
        _log_claimed(job)
    return job


def _log_claimed(job: Job) -> None:
    # Explicit ids: a batch claims several jobs under the first one's bound context.
    logger.info(
        "job_claimed",
        extra={"job_id": str(job.pk), "request_id": job.request_id, "attempt": job.attempts},
    )


def _job_claim_orm(*, job_id, worker: str, now: datetime) -> Job | None:
    with transaction.atomic():
        claimed = Job.objects.filter(
            pk=job_id, status=JobStatus.QUEUED, attempts__lt=F("max_attempts")
        ).update(
            status=JobStatus.RUNNING,
            attempts=F("attempts") + 1,
            started_at=now,
            lease_expires_at=_lease_from(now),
            worker=worker,
        )
        if not claimed:
            return None
        # The route too: the worker reads it next (own model or a provider's); the webhook
        # (or its absence) is read once here rather than looked for when the job ends.
        job = Job.objects.select_related("card__organisation", "route", "webhook_delivery").get(
            pk=job_id
        )
        JobAttempt.objects.create(job=job, number=job.attempts, worker=worker, started_at=now)
    return job


def job_phase_set(*, job: Job, phase: str) -> None:
    """Record what a running job waits on (``Job.phase``); a job no longer running is left
    alone."""
    Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(phase=phase)


def job_queue_position(job: Job) -> int | None:
    """1 for the next job its queue hands out, 2 behind one, ...; None unless queued.
    Workers take a queue oldest first (``queued_at``), whatever the model."""
    if job.status != JobStatus.QUEUED:
        return None
    ahead = Job.objects.filter(
        queue=job.queue, status=JobStatus.QUEUED, queued_at__lt=job.queued_at
    ).count()
    return ahead + 1


def jobs_claim_batch(
    *, like: Job, worker: str, limit: int, provenance: tuple[int, dict] | None = None
) -> list[Job]:
    """Claim up to ``limit`` more queued jobs for the same model, route and queue as ``like``,
    oldest first, so they share a forward pass. Their own messages, when delivered, find
    them ended by this process (``tasks._ended_here``: no query) or claimed, and do nothing.

    On PostgreSQL one statement claims them all (``_claim_sql(batch=...)``): a GPU worker
    claiming 63 jobs one round trip each spent longer claiming than computing.
    ``provenance``: as ``job_claim``'s."""
    if limit <= 0:
        return []
    if connection.vendor == "postgresql":
        return _jobs_claim_batch_sql(like=like, worker=worker, limit=limit, provenance=provenance)
    candidates = (
        Job.objects.filter(
            status=JobStatus.QUEUED, card_id=like.card_id, route_id=like.route_id, queue=like.queue
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[: limit * 2]
    )
    claimed = []
    for pk in candidates:
        job = job_claim(job_id=pk, worker=worker)
        if job is not None:
            claimed.append(job)
            if len(claimed) == limit:
                break
    return claimed


def _jobs_claim_batch_sql(
    *, like: Job, worker: str, limit: int, provenance: tuple[int, dict] | None
) -> list[Job]:
    card_id, fields = provenance or (None, {})
    written = [card_id, *(fields.get(name) for name in _CLAIM_PROVENANCE)]
    routed = like.route_id is not None
    sql = _claim_sql(fsync=connection.in_atomic_block, batch=True, routed=routed)
    picked = [like.card_id, like.queue, *([like.route_id] if routed else []), limit]
    # The start and the lease on the database's clock (NULL: statement_timestamp()).
    rows = prepared_rows(sql, [*picked, None, None, _lease(), worker, *written, worker])
    claimed = [_claimed_job(row) for row in rows]
    for job in claimed:
        _log_claimed(job)
    return claimed


def _settle_charge(*, job_id, status: str) -> None:
    """Post the job's charge when it succeeded, void it otherwise: a failed job costs nothing.

    Runs in the transaction that finishes the job, so the money moves with the status.
    """
    if status == JobStatus.SUCCEEDED:
        charge_post(job_id=job_id)
    else:
        charge_void(job_id=job_id)


# A prepared statement's parameters are typed when it is parsed; a CharField's value is
# cast to text, so a value too long for its column is an error, as through the ORM.
_SQL_TYPES = {"CharField": "text", "JSONField": "jsonb", "DateTimeField": "timestamptz"}
_FINISH_SQL: dict[tuple[tuple[str, ...], bool], str] = {}


def _finish_sql(
    *, job: Job, outcome: str, now: datetime | None, fields: dict, settle: bool = False
) -> int | None:
    """The end of an attempt on PostgreSQL, one prepared statement: the compare-and-set
    update of the job (``fields``, when this attempt still holds it) and of its attempt's
    row; with ``settle``, the job's charge settled in the same statement too (posted when
    it succeeded, voided otherwise). Returns the number of jobs finished (0 or 1), or None
    when ``settle`` was asked and the settlement needs the ORM (an account not created
    yet): the statement then changed nothing (see billing migration 0009)."""
    return _finish_and_answer_sql(
        job=job, outcome=outcome, now=now, fields=fields, settle=settle, answer=False
    )[0]


def _finish_and_answer_sql(
    *, job: Job, outcome: str, now: datetime | None, fields: dict, settle: bool, answer: bool
) -> tuple[int | None, tuple | None]:
    """``_finish_sql``, and with ``answer`` the job's answer row (``selectors.answer_sql``:
    the job, its webhook, its charge and its owner's wallet) read after it in the same
    round trip and transaction, so as it commits (psycopg's pipeline mode). Returns (jobs
    finished, that row); the row is None unless one was finished."""
    statements, carry = _finish_statements(
        job=job, outcome=outcome, now=now, fields=fields, settle=settle, answer=answer
    )
    try:
        if answer:
            finished, read = prepared_pipeline(statements)
        else:
            finished, read = prepared_row(*statements[0]), None
    except DatabaseError as exc:
        if settle and getattr(exc.__cause__, "sqlstate", None) == SETTLE_NEEDS_ORM:
            return None, None
        raise
    return _finish_read(job=job, fields=fields, carry=carry, finished=finished, read=read)


def _finish_statements(
    *, job: Job, outcome: str, now: datetime | None, fields: dict, settle: bool, answer: bool
) -> tuple[list[tuple[str, list]], bool]:
    """``_finish_and_answer_sql``'s statements (the finish; with ``answer``, the answer's
    read after it), and whether the answer is read without the result (carried)."""
    names = tuple(sorted(fields))
    sql = _FINISH_SQL.get((names, settle))
    if sql is None:
        columns = [Job._meta.get_field(name) for name in names]
        assignments = "".join(
            f", {f.column} = %s::{_SQL_TYPES[f.get_internal_type()]}" for f in columns
        )
        # A CTE that only reads is run only where it is read: the settlement is read below,
        # once per finished job (none when the compare-and-set finished nothing).
        settled = (
            f", settled AS (SELECT {SETTLE_IN_FINISH_CALL} AS outcome FROM done)" if settle else ""
        )
        _FINISH_SQL[(names, settle)] = sql = f"""
WITH done AS (
    UPDATE {Job._meta.db_table}
    SET finished_at = COALESCE(%s::timestamptz, statement_timestamp()),
        lease_expires_at = NULL{assignments}
    WHERE id = %s::uuid AND status = '{JobStatus.RUNNING.value}' AND attempts = %s::smallint
    RETURNING id
), logged AS (
    UPDATE {JobAttempt._meta.db_table}
    SET finished_at = COALESCE(%s::timestamptz, statement_timestamp()), outcome = %s::text
    WHERE job_id = (SELECT id FROM done) AND number = %s::smallint
){settled}
SELECT count(*){", (SELECT count(outcome) FROM settled)" if settle else ""} FROM done"""
    values = [db_value(Job._meta.get_field(name), fields[name]) for name in names]
    params = [now, *values, job.pk, job.attempts, now, outcome, job.attempts]
    if settle:
        succeeded = fields["status"] == JobStatus.SUCCEEDED
        params += settle_params(job_id=job.pk, job_succeeded=succeeded)
    statements = [(sql, params)]
    # A success's answer is read without its result, which this process holds (the list
    # just stored) and carries itself (selectors.answer_carry); a failure leaves the
    # result as the claim read it (none), read with the rest.
    carry = answer and "result" in fields
    if answer:
        statements.append((answer_sql(carried=carry), [AccountKind.WALLET, job.pk]))
    return statements, carry


def _finish_read(
    *, job: Job, fields: dict, carry: bool, finished: tuple, read: tuple | None
) -> tuple[int, tuple | None]:
    """(jobs finished, the answer row) from ``_finish_statements``' rows."""
    if not finished[0]:
        return finished[0], None
    if carry and read is not None:
        read = answer_carry(read, result=fields["result"], parameters=job.parameters)
    return finished[0], read


def _finish_orm(*, job: Job, outcome: str, now: datetime, fields: dict) -> int:
    done = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, attempts=job.attempts).update(
        finished_at=now, lease_expires_at=None, **fields
    )
    if done:
        JobAttempt.objects.filter(job=job, number=job.attempts).update(
            finished_at=now, outcome=outcome
        )
    return done


def _finish(*, job: Job, outcome: str, **fields) -> bool:
    # On PostgreSQL the database's clock (None: statement_timestamp() in the statement).
    now = None if connection.vendor == "postgresql" else timezone.now()
    done = None
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        # Every job pays for its finish, right after its forward (when every statement
        # costs 2-3x: the forward evicted the caches). On PostgreSQL the job's and its
        # attempt's updates and the settlement are one prepared statement, with no BEGIN
        # or COMMIT round trip of their own; the money still moves with the status (one
        # transaction). A job known to have no webhook (most) has its answer read after
        # it in the same round trip and transaction and carried by its finished signal:
        # the call waiting for it answers without reading the row again (playground.api).
        # With a webhook, whose delivery's state moves after the finish, the waiting call
        # reads the row.
        webhook = _known_webhook(job)
        done, answer = _finish_and_answer_sql(
            job=job, outcome=outcome, now=now, fields=fields, settle=True,
            answer=webhook is False,
        )  # fmt: skip
        if done:
            _publish_on_commit(job.pk, webhook=webhook, answer=answer)  # committed: at once
    if done is None:
        # Inside a caller's transaction, on SQLite, or a settlement that needs the ORM (an
        # account created first): the finish, then the settlement, in one transaction.
        # The ORM's two updates cost ~3 ms of Python on two cores; on PostgreSQL the finish
        # is one statement (tests/playground/test_claim_paths_pg.py holds the paths alike).
        finish = _finish_sql if connection.vendor == "postgresql" else _finish_orm
        with transaction.atomic():
            done = finish(job=job, outcome=outcome, now=now, fields=fields)
            if done:
                _settle_charge(job_id=job.pk, status=fields["status"])
                _publish_on_commit(job.pk, webhook=_known_webhook(job))
    _log_finished(job=job, fields=fields, done=bool(done))
    return bool(done)


def _log_finished(*, job: Job, fields: dict, done: bool) -> None:
    # Explicit ids: a batch finishes several jobs under the first one's bound context.
    logger.info(
        "job_finished",
        extra={"job_id": str(job.pk), "request_id": job.request_id, "status": fields["status"],
               "error_code": fields.get("error_code", ""), "stale": not done},
    )  # fmt: skip


def job_cancel(*, job: Job, error_code: str = "") -> bool:
    """Cancel a job that no worker has claimed yet; its charge is released. ``error_code``:
    why, when the caller waiting for it is to be told more than "cancelled"
    (``failures.ACCOUNT_CLOSED_CODE``)."""
    with transaction.atomic():
        done = Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
            status=JobStatus.CANCELLED, finished_at=db_clock(), error_code=error_code
        )
        if done:
            _settle_charge(job_id=job.pk, status=JobStatus.CANCELLED)
            _publish_on_commit(job.pk)
    return bool(done)


def job_succeed(*, job: Job, result: list[dict], timings: dict[str, float]) -> bool:
    """Store the detections; False when this attempt no longer holds the job."""
    return _finish(
        job=job,
        outcome=JobAttempt.Outcome.SUCCEEDED,
        status=JobStatus.SUCCEEDED,
        result=result,
        timings=timings,
    )


def jobs_succeed(*, finished: list[tuple[Job, list[dict], dict[str, float]]]) -> list[bool]:
    """``job_succeed`` for each (job, detections, timings) of a batch, in its order.

    On PostgreSQL, outside a caller's transaction, the batch ends in one round trip and
    one commit: each job's finish statement (the job, its attempt, its charge posted) and
    its answer's read, pipelined, as one transaction; then one Redis round trip for their
    finished signals. A worker on a GPU runs a forward in a few ms per image, where one
    round trip, one commit (one WAL flush) and one publish per job would cap it. A post
    locks only its own charge row (no account; billing migration 0008), so two workers'
    batches cannot deadlock on a wallet. Anything the one transaction cannot do (a
    settlement that needs the ORM: an account not created yet; a database error) undoes
    it all, and the jobs end one by one as ``job_succeed`` ends them; every finish is a
    compare-and-set and every settlement idempotent, so nothing ends or is charged twice.
    """
    if len(finished) > 1 and connection.vendor == "postgresql" and not connection.in_atomic_block:
        try:
            return _succeed_together(finished)
        except DatabaseError as exc:
            logger.warning("a batch of %d did not end as one (%s); one by one", len(finished), exc)
    return [
        job_succeed(job=job, result=result, timings=timings) for job, result, timings in finished
    ]


def _succeed_together(finished: list[tuple[Job, list[dict], dict[str, float]]]) -> list[bool]:
    now = None  # the database's clock
    plans, statements = [], []
    for job, result, timings in finished:
        fields = {"status": JobStatus.SUCCEEDED, "result": result, "timings": timings}
        webhook = _known_webhook(job)
        answer = webhook is False
        mine, carry = _finish_statements(
            job=job, outcome=JobAttempt.Outcome.SUCCEEDED, now=now, fields=fields,
            settle=True, answer=answer,
        )  # fmt: skip
        plans.append((job, fields, webhook, answer, carry, len(statements)))
        statements += mine
    rows = prepared_pipeline(statements)  # one transaction: committed as it returns
    done, signals, webhooks = [], [], []
    for job, fields, webhook, answer, carry, at in plans:
        read = rows[at + 1] if answer else None
        ended, row = _finish_read(job=job, fields=fields, carry=carry, finished=rows[at], read=read)
        if ended:
            signals.append((job.pk, row))
            if webhook is not False:
                webhooks.append(job.pk)
        _log_finished(job=job, fields=fields, done=bool(ended))
        done.append(bool(ended))
    jobs_finished_publish(signals)
    if webhooks:
        from playground.webhooks import webhook_job_finished

        for job_id in webhooks:
            webhook_job_finished(job_id)
    return done


def job_fail(*, job: Job, code: str, message: str, timings: dict | None = None) -> bool:
    return _finish(
        job=job,
        outcome=JobAttempt.Outcome.FAILED,
        status=JobStatus.FAILED,
        error_code=code,
        error_message=message[:500],
        timings=timings or {},
    )


GIVEN_UP_MESSAGE = (
    "ended unbilled at its finish: its drop-in call (Hugging Face or Cloudflare flavour) "
    "reached its wait's bound with the database away, answered 503 and gave it up in Redis"
)


def job_cancel_given_up(*, job: Job) -> bool:
    """End a running job cancelled, its charge voided: its waiting call gave it up while the
    database was away (``events.job_give_up``), so no one is told its result."""
    return _finish(
        job=job,
        outcome=JobAttempt.Outcome.CANCELLED,
        status=JobStatus.CANCELLED,
        error_code="call_given_up",
        error_message=GIVEN_UP_MESSAGE,
    )


def job_release_for_retry(*, job: Job, extend: bool = False) -> bool:
    """Give a running job back to the queue after a transient error (the caller re-enqueues).
    ``extend``: the error was not the job's (its upload's storage away): one attempt more,
    so the attempt it made is not one of its own."""
    now = db_clock()
    more = {"max_attempts": F("max_attempts") + 1} if extend else {}
    with transaction.atomic():
        done = Job.objects.filter(
            pk=job.pk, status=JobStatus.RUNNING, attempts=job.attempts
        ).update(status=JobStatus.QUEUED, lease_expires_at=None, worker="", queued_at=now, **more)
        if done:
            JobAttempt.objects.filter(job=job, number=job.attempts).update(
                finished_at=now, outcome=JobAttempt.Outcome.RETRY
            )
    return bool(done)


def _requeue_or_fail_lost(*, job: Job, holder: str, now: datetime) -> str | None:
    """The attempt ``job.attempts`` held by ``holder`` is lost: queue the job again, or fail
    it (and release its money) when it is out of attempts. Compare-and-set on the holder, so
    the reaper and a redelivered message cannot both act on one loss. Runs in a transaction.
    Returns "requeued", "failed" or None (someone else acted first)."""
    lost = Job.objects.filter(
        pk=job.pk, status=JobStatus.RUNNING, attempts=job.attempts, worker=holder
    )
    if job.attempts < job.max_attempts:
        changed = lost.update(
            status=JobStatus.QUEUED, lease_expires_at=None, worker="", queued_at=now
        )
        outcome = "requeued"
    else:
        changed = lost.update(
            status=JobStatus.FAILED,
            finished_at=now,
            lease_expires_at=None,
            error_code="attempts_exhausted",
            error_message=f"The worker was lost {job.attempts} times.",
        )
        outcome = "failed"
        if changed:
            _settle_charge(job_id=job.pk, status=JobStatus.FAILED)
            _publish_on_commit(job.pk)
    if not changed:
        return None
    JobAttempt.objects.filter(job_id=job.pk, number=job.attempts).update(
        finished_at=now, outcome=JobAttempt.Outcome.LOST
    )
    return outcome


def jobs_reap_stale(*, now: datetime | None = None) -> dict[str, int]:
    """Re-queue running jobs whose lease ran out (their worker's heartbeat stopped: the
    process or its machine died); fail those out of attempts and release their money."""
    now = now or db_now()
    counts = {"requeued": 0, "failed": 0}
    stale = Job.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=now)
    for job in stale.only("pk", "attempts", "max_attempts", "queue", "worker"):
        with transaction.atomic():
            outcome = _requeue_or_fail_lost(job=job, holder=job.worker, now=now)
            if outcome == "requeued":
                transaction.on_commit(lambda job=job: _enqueue(job))
        if outcome:
            counts[outcome] += 1
    return counts


def jobs_renew_leases(*, jobs: list[Job], worker: str, now: datetime | None = None) -> int:
    """The heartbeat: extend the lease of the jobs this worker still holds."""
    now = now or db_now()
    held = Job.objects.filter(
        pk__in=[job.pk for job in jobs], status=JobStatus.RUNNING, worker=worker
    )
    return held.update(lease_expires_at=_lease_from(now))


def _holder_is_dead(holder: str) -> bool:
    """True only when the holder is provably gone: a process of this host that no longer
    exists (or is a zombie). Another host's holder cannot be checked from here: its lease
    decides (the reaper)."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


def job_take_over(*, job_id, worker: str, now: datetime | None = None) -> Job | None:
    """Claim a job whose message came back while the row still says running.

    Celery redelivers a message at once when the pool process running it dies (acks_late
    + reject_on_worker_lost). The row then still names the dead process, and waiting for
    its lease to run out would leave the job idle. So when the holder is provably dead (a
    process of this host that is gone) or its lease has run out, the lost attempt is
    closed and the job claimed anew here, by the same compare-and-set as any claim: if the
    holder is alive on another host, its lease decides and nothing happens.
    """
    now = now or db_now()
    job = Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).first()
    if job is None:
        return None
    expired = job.lease_expires_at is not None and job.lease_expires_at < now
    if not (expired or _holder_is_dead(job.worker)):
        return None
    with transaction.atomic():
        outcome = _requeue_or_fail_lost(job=job, holder=job.worker, now=now)
    if outcome != "requeued":
        return None
    logger.warning("job %s: took over from lost worker %s", job_id, job.worker)
    return job_claim(job_id=job_id, worker=worker, now=now)


def jobs_sweep_queued(*, now: datetime | None = None) -> dict[str, int]:
    """Queued jobs no worker has claimed: send the message again when it was never sent
    or was sent over VITRINE_REQUEUE_AFTER ago (a broker blip may have lost it); fail the
    job and release its money once it has been queued for VITRINE_QUEUE_TIMEOUT. So no job
    stays queued with money held past that bound, whatever happened to its message.
    Duplicate messages are harmless: only one claim wins the row."""
    now = now or db_now()  # the reaper's clock: the database's
    counts = {"resent": 0, "expired": 0}
    timeout = now - timedelta(seconds=settings.VITRINE_QUEUE_TIMEOUT)
    queued = Job.objects.filter(status=JobStatus.QUEUED)
    for job in queued.filter(queued_at__lt=timeout).only("pk"):
        with transaction.atomic():
            expired = Job.objects.filter(
                pk=job.pk, status=JobStatus.QUEUED, queued_at__lt=timeout
            ).update(
                status=JobStatus.FAILED,
                finished_at=now,
                error_code="queue_timeout",
                error_message=QUEUE_TIMEOUT,
            )
            if expired:
                _settle_charge(job_id=job.pk, status=JobStatus.FAILED)
                _publish_on_commit(job.pk)
        counts["expired"] += expired
    resend_before = now - timedelta(seconds=settings.VITRINE_REQUEUE_AFTER)
    unsent = queued.filter(queued_at__gte=timeout).filter(
        Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=resend_before)
    )
    for job in unsent.only("pk", "queue"):
        # Marked sent first: a sweep running beside this one then skips the job.
        if Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(enqueued_at=now):
            counts["resent"] += _enqueue(job)
    return counts


def job_set_public(*, job: Job, public: bool) -> Job:
    """Make a run's permalink (page, image and exports) public, or private to its owner
    again. The caller checked that the requester owns it."""
    Job.objects.filter(pk=job.pk).update(is_public=public)
    job.is_public = public
    return job


# The upright copy of a turned upload, kept in the shared cache by the upload's digest (or
# name) for the image view (playground/views.py): it is the picture too, so it goes with it.
UPRIGHT_CACHE_KEY = "vitrine:upright:v1:{}"


def upright_copies_forget(*, keys: list[str]) -> None:
    """Drop the cached upright copies of uploads being deleted (``image_sha256 or
    image_name`` of each job). An identical upload of another job only has its copy made
    again; a cache outage is logged (the copy expires within the hour)."""
    try:
        shared_cache.delete_many([UPRIGHT_CACHE_KEY.format(key) for key in keys if key])
    except Exception:
        logger.warning("upright image cache unavailable", exc_info=True)


def job_image_delete(*, job: Job) -> bool:
    """Delete a finished run's image now, at its owner's request, rather than at its
    retention's end; its row, detections and exports stay (the PNG export needs the image
    and says so). False for a run still queued or running (its worker reads the image).
    The stored object goes first, then the row, as retention does it (playground/
    retention.py); a storage failure raises StorageUnavailable with the row unchanged.
    The caller checked that the requester owns it."""
    if job.status not in Job.FINAL:
        return False
    if job.image_name:
        try:
            upload_delete(job.image_name)
        except Exception as exc:  # OSError locally; botocore's own tree on S3
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc
    upright_copies_forget(keys=[job.image_sha256 or job.image_name])
    Job.objects.filter(pk=job.pk, image_deleted_at__isnull=True).update(
        image_name="", image_deleted_at=timezone.now()
    )
    job.refresh_from_db()
    return True
