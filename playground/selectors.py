"""Reads of jobs by who is looking: a run's owner, anyone for a public run.

The owner of a job is its user (a try made signed in, or an API call with one of the
user's keys) or, for an anonymous try, the browser session that made it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from uuid import UUID

import orjson
from django.db import connection
from django.db.models import OuterRef, Q, QuerySet, Subquery

from billing.models import AccountKind, Charge, LedgerAccount
from billing.services.ledger import wallet_for
from catalog.db import JoinedRow, prepared_row, row_decode, row_encode
from catalog.models import ModelCard, Organisation, PriceChange, PriceRoute
from playground.models import Job, WebhookDelivery

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Viewer:
    """Who asks: a signed-in user, or an anonymous session (its key may be empty)."""

    user_id: int | None
    session_key: str = ""

    @classmethod
    def of(cls, request) -> Viewer:
        if request.user.is_authenticated:
            return cls(user_id=request.user.pk)
        # Never creates a session: a visitor with none owns nothing.
        return cls(user_id=None, session_key=request.session.session_key or "")

    def owns(self, job: Job) -> bool:
        if self.user_id is not None:
            return job.owner_id == self.user_id
        return (
            job.owner_id is None and bool(self.session_key) and job.session_key == self.session_key
        )

    def jobs(self) -> QuerySet[Job]:
        """The jobs this viewer owns (none for a visitor without a session)."""
        if self.user_id is not None:
            return Job.objects.filter(owner_id=self.user_id)
        if not self.session_key:
            return Job.objects.none()
        return Job.objects.filter(owner__isnull=True, session_key=self.session_key)


def job_for_viewer(*, job_id, viewer: Viewer) -> tuple[Job, bool] | None:
    """The job and whether ``viewer`` owns it; None when it does not exist or is private
    to someone else (the caller answers 404 for both: a private run's id reveals nothing)."""
    job = Job.objects.select_related("card__organisation", "route").filter(pk=job_id).first()
    if job is None:
        return None
    owner = viewer.owns(job)
    if not (owner or job.is_public):
        return None
    return job, owner


def runs_for_viewer(*, viewer: Viewer) -> QuerySet[Job]:
    """The viewer's runs, newest first, each with its charge's amount and status
    (``charge_amount``, ``charge_status``; None for a free try)."""
    charge = Charge.objects.filter(job_id=OuterRef("pk"))
    return (
        viewer.jobs()
        .select_related("card__organisation")
        .annotate(
            charge_amount=Subquery(charge.values("amount")[:1]),
            charge_status=Subquery(charge.values("status")[:1]),
        )
        .order_by("-created_at", "-pk")
    )


# A run's place in My runs' order: (created_at, id), the order of ``job_owner_created``.
RunKey = tuple[datetime, UUID]


def _older_than(key: RunKey) -> Q:
    """The runs after ``key`` in My runs' order (newest first). ``created_at <= t`` bounds
    the index scan (``job_owner_created``): the OR alone would be a filter on every entry
    read from the top of the owner's range, as an OFFSET reads them."""
    created_at, pk = key
    return Q(created_at__lte=created_at) & (
        Q(created_at__lt=created_at) | Q(created_at=created_at, pk__lt=pk)
    )


def _newer_than(key: RunKey) -> Q:
    created_at, pk = key
    return Q(created_at__gte=created_at) & (
        Q(created_at__gt=created_at) | Q(created_at=created_at, pk__gt=pk)
    )


def _key(job: Job) -> RunKey:
    return job.created_at, job.pk


def _any_run(runs: QuerySet[Job], *order: str) -> bool:
    """Whether ``runs`` has a row, read in the index's order: ``exists()`` drops the order,
    and a plain ``LIMIT 1`` may then be planned as a scan of the table in the hope of an
    early match (it chose one for a deep page of 420,000 runs)."""
    return runs.order_by(*order).values_list("pk", flat=True).first() is not None


@dataclass(frozen=True)
class RunsPage:
    """A page of My runs, newest first, and whether runs newer than its first and older
    than its last exist (the "Newer" and "Older" links)."""

    jobs: list[Job]
    newer: bool
    older: bool


def runs_page(
    *, viewer: Viewer, limit: int, before: RunKey | None = None, after: RunKey | None = None
) -> RunsPage:
    """A page of ``limit`` of the viewer's runs by keyset, not OFFSET: the runs just older
    than ``before`` (the last run of the page the viewer was on: "Older"), or just newer
    than ``after`` (its first: "Newer"), or the newest. Each page reads its own ``limit + 1``
    entries of ``job_owner_created`` from the cursor, however deep, and runs made meanwhile
    neither repeat nor skip a run. "Newer" that reaches the newest run gives the first page
    (the newest ``limit``), not a short page. No count: nothing here reads the whole list."""
    runs = runs_for_viewer(viewer=viewer)
    if after is not None:
        rows = list(runs.filter(_newer_than(after)).order_by("created_at", "pk")[: limit + 1])
        if len(rows) > limit:
            jobs = rows[:limit][::-1]
            older = _any_run(
                viewer.jobs().filter(_older_than(_key(jobs[-1]))), "-created_at", "-pk"
            )
            return RunsPage(jobs=jobs, newer=True, older=older)
        before = None  # the newest runs: the first page
    if before is not None:
        runs = runs.filter(_older_than(before))
    rows = list(runs[: limit + 1])
    jobs = rows[:limit]
    newer = (
        before is not None
        and bool(jobs)
        and _any_run(viewer.jobs().filter(_newer_than(_key(jobs[0]))), "created_at", "pk")
    )
    return RunsPage(jobs=jobs, newer=newer, older=len(rows) > limit)


def model_filter_known(*, model_id: str, user) -> bool:
    """Whether ``model_id`` (``<org>/<name>``) can filter ``user``'s jobs: a published
    model, or one they have jobs of (a card unpublished since). A draft's id is not told."""
    org, _, name = model_id.partition("/")
    return (
        ModelCard.objects.filter(organisation__slug=org, slug=name)
        .filter(Q(is_published=True) | Q(jobs__owner=user))
        .exists()
    )


def jobs_of_owner(
    *,
    user,
    limit: int,
    starting_after: Job | None = None,
    status: str | None = None,
    model_id: str | None = None,
    card_ids: list[int] | None = None,
) -> tuple[list[Job], bool]:
    """A page of ``user``'s jobs, newest first, after ``starting_after`` (a job of theirs:
    the last one of the previous page), with what their JSON reads; and whether more follow.
    ``card_ids``: only these models' jobs (an API key's allow-list).
    The money of the whole page in two queries (the charges, the wallet), not two per job."""
    jobs = Job.objects.select_related(
        "card__organisation", "route", "owner", "webhook_delivery"
    ).filter(owner=user)
    if starting_after is not None:
        jobs = jobs.filter(
            Q(created_at__lt=starting_after.created_at)
            | Q(created_at=starting_after.created_at, pk__lt=starting_after.pk)
        )
    if status:
        jobs = jobs.filter(status=status)
    if model_id:
        org, _, name = model_id.partition("/")
        jobs = jobs.filter(card__organisation__slug=org, card__slug=name)
    if card_ids is not None:  # an API key's allow-list
        jobs = jobs.filter(card_id__in=card_ids)
    page = list(jobs.order_by("-created_at", "-pk")[: limit + 1])
    page, more = page[:limit], len(page) > limit
    if page:
        charges = {
            c.job_id: c
            for c in Charge.objects.select_related("price_version").filter(
                job_id__in=[job.pk for job in page]
            )
        }
        balance = wallet_for(user).balance
        for job in page:
            setattr(job, _MONEY_ATTR, JobMoney(charge=charges.get(job.pk), balance=balance))
    return page, more


# The relations a job's JSON reads (model id, route slug, owner's wallet).
_HELD_RELATIONS = ("card", "route", "owner")


@dataclass(frozen=True)
class JobMoney:
    """What a job's JSON says about money: its charge (with the price version it was
    reserved at; None for a free try) and its owner's wallet balance (None without one)."""

    charge: Charge | None
    balance: Decimal | None


# Set on a job by job_reread's one-statement read (PostgreSQL): its JobMoney, read with it.
_MONEY_ATTR = "_vitrine_money"


def job_money(job: Job) -> JobMoney:
    """The job's charge and its owner's balance: as read with the row by ``job_reread`` on
    PostgreSQL, else two queries now."""
    read = getattr(job, _MONEY_ATTR, None)
    if read is not None:
        return read
    if not job.owner_id:
        return JobMoney(charge=None, balance=None)
    charge = Charge.objects.select_related("price_version").filter(job_id=job.pk).first()
    return JobMoney(charge=charge, balance=wallet_for(job.owner).balance)


_ANSWER = JoinedRow(
    (Job, "j"), (WebhookDelivery, "w"), (Charge, "ch"), (PriceChange, "pv"), (LedgerAccount, "wa")
)


def _answer_joins() -> str:
    """The FROM of ``answer_sql`` and ``_owned_sql``: the job, its webhook delivery, its
    charge, the charge's price version, its owner's wallet (the kind is a parameter)."""
    table = {m: m._meta.db_table for m in (Job, WebhookDelivery, Charge, LedgerAccount)}
    return f"""FROM {table[Job]} j
LEFT JOIN {table[WebhookDelivery]} w ON w.job_id = j.id
LEFT JOIN {table[Charge]} ch ON j.owner_id IS NOT NULL AND ch.job_id = j.id
LEFT JOIN {PriceChange._meta.db_table} pv ON pv.id = ch.price_version_id
LEFT JOIN {table[LedgerAccount]} wa ON wa.user_id = j.owner_id AND wa.kind = %s::text"""


@cache
def answer_sql(*, carried: bool = False) -> str:
    """The job, its webhook delivery, its charge with its price version and its owner's
    wallet, as of one snapshot (the ORM path reads them in three statements). Parameters:
    the wallet's account kind, the job's id. Also read by a worker as it finishes the job
    (``services._finish``), its row carried to the waiting call by the finished signal:
    ``carried``, that read, without the stored result (NULL in its place): the worker
    has it, and puts in what a call can be shown of it (``answer_carry``)."""
    select = _ANSWER.select_list
    if carried:
        result = f"j.{connection.ops.quote_name(Job._meta.get_field('result').column)}"
        assert select.count(result) == 1
        select = select.replace(result, "NULL::jsonb")
    return f"""
SELECT {select}
{_answer_joins()}
WHERE j.id = %s::uuid"""


# What a job's JSON reads besides the answer's tables: its card, the card's organisation
# (the model id) and its route.
_OWNED_RELATIONS = JoinedRow((ModelCard, "c"), (Organisation, "o"), (PriceRoute, "r"))


@cache
def _owned_sql() -> str:
    return f"""
SELECT {_ANSWER.select_list}, {_OWNED_RELATIONS.select_list}
{_answer_joins()}
JOIN {ModelCard._meta.db_table} c ON c.id = j.card_id
JOIN {Organisation._meta.db_table} o ON o.id = c.organisation_id
LEFT JOIN {PriceRoute._meta.db_table} r ON r.id = j.route_id
WHERE j.id = %s::uuid AND j.owner_id = %s::bigint"""


def job_of_owner(*, job_id, user, with_money: bool = False) -> Job | None:
    """The job ``user`` owns with this id, with its card (and the card's organisation), its
    route, its webhook delivery and its owner, or None.

    ``with_money``, for a job to be shown as it is now (``GET /v1/jobs/<id>``, what polling
    clients call): on PostgreSQL one prepared statement that also reads what its JSON says
    about money (as ``job_reread``), instead of the ORM's read and ``job_money``'s two.
    Not for a job about to change (a cancel): that money is not read again."""
    if not with_money or connection.vendor != "postgresql":
        # get(), not first(): the id is unique, and first()'s ORDER BY costs ~0.65 ms of
        # compiling on two cores (3.76 -> 3.11 ms for this read on PostgreSQL).
        try:
            return (
                Job.objects.select_related(
                    "card__organisation", "route", "owner", "webhook_delivery"
                )
                .filter(pk=job_id, owner=user)
                .get()
            )
        except Job.DoesNotExist:
            return None
    row = prepared_row(_owned_sql(), [AccountKind.WALLET, job_id, user.pk])
    if row is None:
        return None
    job = _answer_from_row(row[: _ANSWER.width])
    card, organisation, route = _OWNED_RELATIONS.build(row[_ANSWER.width :])
    ModelCard.organisation.field.set_cached_value(card, organisation)
    Job.card.field.set_cached_value(job, card)
    Job.route.field.set_cached_value(job, route)
    Job.owner.field.set_cached_value(job, user)
    return job


# What a carried row's result holds (see answer_carry), part of its shape: a release that
# carried the whole result, or reads it otherwise, does not read another's rows.
_CARRIED_RESULT = "result: the detections at or above the job's threshold"


@cache
def _answer_shape() -> bytes:
    """A digest of ``answer_sql``'s columns, in order, and of what a carried row's result
    holds: a row carried between processes is read only by code that reads it alike (a web
    process and a worker of two releases, mid-deploy, may not)."""
    described = f"{_ANSWER.select_list}\n{_CARRIED_RESULT}"
    return hashlib.sha256(described.encode()).hexdigest()[:16].encode()


def _shown_from(parameters) -> float | None:
    """The lowest score a call on this job is shown (its threshold), None when the job
    names none (every kept detection may be shown)."""
    threshold = parameters.get("threshold") if isinstance(parameters, dict) else None
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        return None
    return float(threshold)


def _jsonb_order(value):
    """``value`` with its objects' keys in the order PostgreSQL's jsonb keeps them (shorter
    keys first, then by their bytes): as a read of the stored result returns them."""
    if isinstance(value, dict):
        ordered = sorted(value.items(), key=lambda kv: (len(kv[0].encode()), kv[0].encode()))
        return {k: _jsonb_order(v) for k, v in ordered}
    if isinstance(value, list):
        return [_jsonb_order(v) for v in value]
    return value


@cache
def _result_at() -> int:
    """Where the job's result is in an ``answer_sql`` row (the job's columns come first)."""
    return [f.name for f in Job._meta.concrete_fields].index("result")


def answer_carry(row: tuple, *, result: list[dict] | None, parameters: dict) -> tuple:
    """The row a worker's finished signal carries: ``row`` (read by
    ``answer_sql(carried=True)`` as the finish committed) with the job's ``result`` (the
    list the finish stored) put back, cut to the detections at or above the job's own
    threshold (``parameters``): all a call waiting on it is shown (``job_from_answer``
    refuses it for a lower threshold), a few of the ~100 a job keeps, so the stored ~20 kB
    is not read back, encoded, sent and decoded again for every call."""
    shown_from = _shown_from(parameters)
    if result is not None and shown_from is not None:
        result = [d for d in result if d["score"] >= shown_from]
    carried = list(row)
    carried[_result_at()] = None if result is None else orjson.dumps(_jsonb_order(result)).decode()
    return tuple(carried)


def answer_encode(row: tuple) -> bytes:
    """An ``answer_sql`` row as bytes for another process (``catalog.db.row_encode``, with
    the columns' digest); TypeError for a value the codec does not carry."""
    return _answer_shape() + b":" + row_encode(row)


def answer_decode(data: bytes) -> tuple | None:
    """The row ``answer_encode`` wrote; None when it was written for other columns.
    ValueError when ``data`` is not such a row."""
    shape, _, encoded = data.partition(b":")
    if shape != _answer_shape():
        return None
    row = row_decode(encoded)
    if len(row) != _ANSWER.width:
        raise ValueError(f"{len(row)} values for {_ANSWER.width} columns")
    return row


def _reread_sql(job_id) -> Job:
    row = prepared_row(answer_sql(), [AccountKind.WALLET, job_id])
    if row is None:
        raise Job.DoesNotExist(f"job {job_id} is gone")
    return _answer_from_row(row)


def job_from_answer(job: Job, row: tuple, *, threshold: float | None = None) -> Job | None:
    """``job_reread``, from the row a worker carried with the job's finished signal
    (``answer_carry``): the same instances, with no database work, so it may run in an
    event loop; its result holds the detections at or above the job's threshold, all an
    answer at ``threshold`` (default: the job's) shows. None when the row is not
    ``job``'s, ``threshold`` is below the job's, or the answer would need the ORM (an
    owner with no wallet yet)."""
    fresh = _answer_from_row(row)
    if fresh.pk != job.pk or (fresh.owner_id and not hasattr(fresh, _MONEY_ATTR)):
        return None
    shown_from = _shown_from(fresh.parameters)
    if threshold is not None and shown_from is not None and threshold < shown_from:
        return None
    return _keep_relations(job, fresh)


def _answer_from_row(row: tuple) -> Job:
    fresh, delivery, charge, version, wallet = _ANSWER.build(row)
    WebhookDelivery.job.field.remote_field.set_cached_value(fresh, delivery)
    if delivery is not None:
        WebhookDelivery.job.field.set_cached_value(delivery, fresh)
    if charge is not None:
        Charge.price_version.field.set_cached_value(charge, version)
    if fresh.owner_id and wallet is None:
        # An owner with no wallet yet (no charge ever made one): job_money's ORM path
        # creates it if the balance is asked for, as it always did.
        return fresh
    money = JobMoney(charge=charge, balance=wallet.balance if wallet is not None else None)
    setattr(fresh, _MONEY_ATTR, money)
    return fresh


def job_reread(job: Job) -> Job:
    """The row of a job this request created or found, read again as it is now (status,
    result, timings), reusing the card, route and owner the request already loaded.

    A synchronous call answers from this read once its job ends. On PostgreSQL it is one
    prepared statement that also reads what the answer says about money (``job_money``:
    the charge, its price version, the wallet), instead of three ORM statements (~3 ms of
    Python on two cores, issue 10's API overhead); elsewhere one indexed read of the row
    and its webhook. tests/playground/test_answer_read_pg.py holds the two to the same
    answer. A relation the request did not load, or that is not the row's, loads lazily."""
    read = _reread_sql if connection.vendor == "postgresql" else _reread_orm
    return _keep_relations(job, read(job.pk))


def _reread_orm(job_id) -> Job:
    return Job.objects.select_related("webhook_delivery").get(pk=job_id)


def _keep_relations(job: Job, fresh: Job) -> Job:
    """``fresh`` with the relations ``job`` holds that are still its own."""
    for name in _HELD_RELATIONS:
        descriptor = getattr(Job, name)
        attname = descriptor.field.attname
        if descriptor.is_cached(job) and getattr(job, attname) == getattr(fresh, attname):
            descriptor.field.set_cached_value(fresh, descriptor.field.get_cached_value(job))
    return fresh


# The session data's name for the key an anonymous visitor's tries were made under.
TRIES_SESSION = "vitrine_tries_session"


def session_runs_adopt(sender, request, user, **kwargs) -> None:
    """``user_logged_in``: the runs this browser made before signing in (or up) become the
    user's. They belonged to the session's key, which Django changes at sign-in, so they
    vanished from My runs and their permalinks answered 404, for good (session 47's probe).
    Only runs with no owner, under the key this session itself recorded."""
    if request is None or not hasattr(request, "session"):
        return
    key = request.session.get(TRIES_SESSION)
    if not key:
        return
    adopted = Job.objects.filter(owner__isnull=True, session_key=key).update(
        owner=user, session_key=""
    )
    del request.session[TRIES_SESSION]
    if adopted:
        logger.info("%s anonymous run(s) adopted at sign-in", adopted)
