"""The paid API's limits: calls per minute (per key, per account, per model) and jobs in flight.

A refused call answers 429 in the one JSON error shape (type ``rate_limit_error``) with
``Retry-After`` and the IETF draft ``RateLimit-Limit/Remaining/Reset`` headers; an admitted
call carries the ``RateLimit-*`` headers too, for the most constrained of its buckets.
These pair with the account limits (login, sign-up, password reset; billing/limits.py):
DRF's docs warn that API throttles alone are no security feature.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection

from catalog import errors, ratelimit
from catalog.db import prepared_pipeline
from catalog.models import ModelCard
from playground.failures import SERVICE_UNAVAILABLE
from playground.models import Job, JobStatus

MINUTE = 60
RATE_LIMITED = {
    "api-key": "This API key made {limit} calls in the last minute; retry in {retry} s.",
    "api-account": "Your account made {limit} calls in the last minute; retry in {retry} s.",
    "api-model": "Your account made {limit} calls to {model} in the last minute (this model's "
    "limit); retry in {retry} s.",
    "api-read": "This API key made {limit} job requests in the last minute; retry in {retry} s.",
}
TOO_MANY_INFLIGHT = (
    "Your account has {count} jobs queued or running; the limit is {limit}. "
    "Wait for one to finish (GET /v1/jobs/<id>) and retry."
)
TOO_MANY_INFLIGHT_CODE = "too_many_inflight_jobs"
ACCOUNT_CLOSED = "This account has been closed: nothing was run or charged."
FREE_TRIES_BUSY = (
    "Free tries are busy ({count} waiting for a worker). Your try was not counted; "
    "retry in a minute, or sign in with credit to run it from your wallet."
)
FREE_TRIES_RETRY_AFTER = 30
# Any one value: a transaction-scoped advisory lock that serialises the free tries' count.
_FREE_TRIES_LOCK = 0x76697466  # "vitf"
RATE_LIMIT_HEADERS = "_vitrine_ratelimit_headers"
ADMITTED_BUCKETS = "_vitrine_admitted_buckets"


def _refuse(decision: ratelimit.Decision, *, model: str = "") -> errors.ApplicationError:
    message = RATE_LIMITED[decision.scope].format(
        limit=decision.limit, retry=decision.retry_after, model=model
    )
    return errors.ApplicationError(
        message,
        code="rate_limit_exceeded",
        status=429,
        type=errors.RATE_LIMIT_ERROR,
        headers=decision.headers(),
    )


def _admit(request, *buckets: ratelimit.Bucket, model: str = "") -> None:
    decision = ratelimit.hit(*buckets)
    if not decision.allowed:
        raise _refuse(decision, model=model)
    # RateLimitHeadersMixin copies these onto whatever response the view returns.
    setattr(request, RATE_LIMIT_HEADERS, decision.headers())
    setattr(request, ADMITTED_BUCKETS, buckets)


def call_give_back(request) -> None:
    """Take back the per-minute hits of a call refused for its jobs in flight
    (``inflight_jobs_check``): it made no job, and its answer says retry in a second. Counted,
    a client that obeyed ``Retry-After: 1`` spent its whole minute on refusals and was then
    locked out for up to 60 s after its jobs had ended (80 calls: 16 jobs, 44 in-flight
    refusals, then 20 ``rate_limit_exceeded``; many-tenants probe, session 41)."""
    buckets = getattr(request, ADMITTED_BUCKETS, None)
    # Bounded: each refusal still reads a body and locks the user row, so an account gets
    # back at most twice its per-minute calls a minute; past that a refusal counts.
    refusals = ratelimit.Bucket(
        "inflight-refusal",
        str(request.user.pk),
        2 * settings.VITRINE_ACCOUNT_RATE_PER_MINUTE,
        MINUTE,
    )
    if buckets and ratelimit.hit(refusals).allowed:
        decision = ratelimit.release(*buckets)
        setattr(request, RATE_LIMIT_HEADERS, decision.headers())
        setattr(request, ADMITTED_BUCKETS, None)


def api_call_check(request, card: ModelCard) -> None:
    """Count one inference call against its key, its account and, if set, its model.

    Raises a 429 ``ApplicationError`` (nothing counted) when any of them is full.
    """
    key = ratelimit.Bucket(
        "api-key", str(request.auth.pk), settings.VITRINE_API_RATE_PER_MINUTE, MINUTE
    )
    _admit(request, key, *_account_buckets(request.user, card), model=card.model_id)


def _account_buckets(user, card: ModelCard) -> list[ratelimit.Bucket]:
    buckets = [
        ratelimit.Bucket(
            "api-account", str(user.pk), settings.VITRINE_ACCOUNT_RATE_PER_MINUTE, MINUTE
        ),
    ]
    if card.rate_limit_per_minute:
        identity = f"{user.pk}:{card.pk}"
        buckets.append(ratelimit.Bucket("api-model", identity, card.rate_limit_per_minute, MINUTE))
    return buckets


def paid_try_check(request, card: ModelCard) -> None:
    """Count a try-page run paid from the wallet against its account and, if set, its model,
    as an API call is (no key: the page has none). Such a run spends no free try, so
    without this the page was a way round both limits: 17 runs admitted in seconds on a
    model limited to 5 a minute, only the in-flight cap stopping them (session 40).
    Raises the API's 429 (nothing counted) when either is full."""
    _admit(request, *_account_buckets(request.user, card), model=card.model_id)


def api_read_check(request) -> None:
    """Count one job read or cancel against its key (polling has its own, larger budget)."""
    bucket = ratelimit.Bucket(
        "api-read", str(request.auth.pk), settings.VITRINE_API_READ_RATE_PER_MINUTE, MINUTE
    )
    _admit(request, bucket)


@cache
def _lock_user_sql() -> str:
    table = get_user_model()._meta.db_table
    return f"SELECT is_active FROM {table} WHERE id = %s::bigint FOR UPDATE"


@cache
def _inflight_sql() -> str:
    return (
        f"SELECT count(*) FROM {Job._meta.db_table} WHERE owner_id = %s::bigint"
        f" AND status IN ('{JobStatus.QUEUED.value}', '{JobStatus.RUNNING.value}')"
    )


def free_tries_queued_check(*, queue: str, adding: int = 1) -> None:
    """Refuse a free try while ``VITRINE_FREE_TRIES_QUEUED`` free jobs wait in ``queue``
    (``adding``: the jobs it is about to queue, e.g. one per model of a comparison).

    Free tries are counted per IP and hour only, never in flight: 20 addresses queued 253
    free jobs in a minute and every paid call behind them waited minutes (one FIFO queue;
    a paying account may hold only ``VITRINE_MAX_INFLIGHT_JOBS``). This bounds what all free
    tries together put ahead of a paid job. Call inside the transaction that creates the
    job: on PostgreSQL an advisory lock held to its commit makes the count exact under
    concurrency. A refusal counts no try (the caller has not counted it yet)."""
    limit = settings.VITRINE_FREE_TRIES_QUEUED
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_FREE_TRIES_LOCK])
    # A free job has no charge (``cost_ref`` empty); the partial index on queued jobs
    # keeps this a short scan.
    count = Job.objects.filter(status=JobStatus.QUEUED, queue=queue, cost_ref="").count()
    if count + adding > limit:
        raise errors.ApplicationError(
            FREE_TRIES_BUSY.format(count=count),
            code="free_tries_busy",
            status=503,
            type=SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(FREE_TRIES_RETRY_AFTER)},
        )


def inflight_jobs_check(
    *, user, hold=None, flushed: bool = True, then: tuple[str, list] | None = None
) -> Any:
    """Refuse a new job while the account has ``VITRINE_MAX_INFLIGHT_JOBS`` queued or running.

    Call inside the transaction that creates the job. The user row is locked first, so two
    concurrent calls for one account count one after the other: on PostgreSQL (READ COMMITTED)
    the second count runs after the first transaction committed its job and sees it, so an
    account never has more than the limit in flight. SQLite serialises every write
    transaction anyway. Other accounts are not held up.
    ``hold``: a new job's id whose hold (``services.job_hold_statement``) is taken in the
    same round trip, on PostgreSQL; ``flushed=False`` with it: the transaction commits
    without waiting for its WAL fsync (see ``services.creation_flush``).
    ``then``: a statement (PostgreSQL) sent after the count in the same round trip, e.g. the
    job's reservation (``billing.services.charges.Reservation.statement``); its row is
    returned. It runs whatever the count is: a 429 then undoes it with the transaction.
    """
    limit = settings.VITRINE_MAX_INFLIGHT_JOBS
    if connection.vendor == "postgresql":
        # Every paid call runs these: prepared statements, not the ORM's (~1 ms of
        # compiling on two cores), sent together (one round trip). Two statements, never
        # one: a statement's snapshot is taken when it starts, so a count in the statement
        # that waited for the lock would not see the job the lock's holder committed; the
        # count, run after the lock's statement, does.
        statements = [(_lock_user_sql(), [user.pk])]
        if hold is not None:
            from playground.services import job_hold_statement

            statements.append(job_hold_statement(hold, flushed=flushed))
        statements.append((_inflight_sql(), [user.pk]))
        if then is not None:
            statements.append(then)
        rows = prepared_pipeline(statements)
        active = rows[0] is not None and rows[0][0]
        count = rows[-2 if then is not None else -1][0]
        answer = rows[-1] if then is not None else None
    else:
        if then is not None:
            raise ValueError("then: a PostgreSQL statement, and this database is not one")
        answer = None
        users = get_user_model().objects.select_for_update().filter(pk=user.pk)
        active = bool(users.values_list("is_active", flat=True).first())
        count = Job.objects.filter(
            owner=user, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
        ).count()
    if not active:
        # Closed while this call was on its way (its key passed, then the close committed;
        # billing/services/accounts.py): read under the lock the close takes too, so no
        # job is made for a closed account. The statement a paid call sends anyway.
        raise errors.ApplicationError(
            ACCOUNT_CLOSED, code="invalid_api_key", status=401, type="authentication_error"
        )
    if count >= limit:
        raise errors.ApplicationError(
            TOO_MANY_INFLIGHT.format(count=count, limit=limit),
            code=TOO_MANY_INFLIGHT_CODE,
            status=429,
            type=errors.RATE_LIMIT_ERROR,
            # No clock tells when a job ends; a short pause before polling again is honest.
            headers={"Retry-After": "1"},
        )
    return answer


class RateLimitHeadersMixin:
    """Adds the admitted call's ``RateLimit-*`` headers to its response, whatever it is."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in getattr(request, RATE_LIMIT_HEADERS, {}).items():
            response.setdefault(name, value)
        return response


def copy_rate_limit_headers(source, target):
    """The awaited answer is built outside DRF: give it the admitted call's headers too
    (its rate limits, and ``Idempotent-Replayed`` on a replay)."""
    for name in (
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
        "Idempotent-Replayed",
    ):
        if name in source:
            target.setdefault(name, source[name])
    return target
