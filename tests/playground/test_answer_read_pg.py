"""On PostgreSQL a synchronous call's answer is read in one statement, and says what the ORM's
three reads say.

``job_reread`` reads the finished job again before the call answers. On PostgreSQL it is one
prepared statement that brings the job, its webhook delivery, its charge with the price
version and the owner's wallet (``selectors.job_money``); the ORM reads the row, then the
charge, then the wallet. The same jobs (paid and succeeded, paid and failed, still queued,
a webhook's, an anonymous try, an owner without a wallet yet) go through both, and the job
resource a caller is sent must be identical, as must every field of the instances.
"""

from __future__ import annotations

import io
import uuid
from decimal import Decimal

import pytest
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from PIL import Image

from billing.models import LedgerAccount
from billing.services.charges import charge_reserve
from playground import selectors, services
from playground.models import Job, JobStatus
from playground.serializers import job_data
from playground.webhooks import webhook_register
from tests import factories

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the one-statement read is PostgreSQL's"
    ),
]

RESULT = [
    {"label": "cat", "score": 0.91, "box": {"xmin": 1, "ymin": 2, "xmax": 30, "ymax": 20},
     "box_float": {"xmin": 1.2, "ymin": 2.4, "xmax": 30.1, "ymax": 19.9}},
    {"label": "dog", "score": 0.07, "box": {"xmin": 3, "ymin": 4, "xmax": 9, "ymax": 8},
     "box_float": {"xmin": 3.0, "ymin": 4.1, "xmax": 9.2, "ymax": 8.3}},
]  # fmt: skip


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def orm_reread(job: Job) -> Job:
    """job_reread as it runs where the one statement does not (SQLite)."""
    return selectors._keep_relations(job, selectors._reread_orm(job.pk))


@pytest.fixture
def jobs(settings, tmp_path, django_capture_on_commit_callbacks):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card()
    route = factories.route(card=card, price=Decimal("0.0002"))
    payer = factories.funded(factories.user(), "3")
    walletless = factories.user()
    made = {}
    with django_capture_on_commit_callbacks(execute=False):

        def paid(name, *, webhook=None):
            job = services.job_create(card=card, route=route, image_bytes=png(), owner=payer)
            charge_reserve(job_id=job.pk, user=payer, card=card, route=route)
            if webhook:
                webhook_register(job=job, url=webhook)
            made[name] = job
            return job

        claimed = services.job_claim(job_id=paid("succeeded").pk, worker="host:1")
        services.job_succeed(job=claimed, result=RESULT, timings={"forward": 0.25})
        claimed = services.job_claim(job_id=paid("failed").pk, worker="host:1")
        services.job_fail(job=claimed, code="inference_error", message="RuntimeError: boom")
        paid("queued")
        claimed = services.job_claim(
            job_id=paid("webhook", webhook="https://hooks.example.com/vitrine").pk,
            worker="host:2",
        )
        services.job_succeed(job=claimed, result=RESULT[:1], timings={"forward": 0.3})
        made["anonymous"] = services.job_create(card=card, image_bytes=png(), session_key="s1")
        made["walletless"] = services.job_create(card=card, image_bytes=png(), owner=walletless)
    assert not LedgerAccount.objects.filter(user=walletless).exists()
    return made


def fields(instance) -> dict:
    if instance is None:
        return {}
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def test_one_statement_answers_as_the_orm(jobs):
    request = RequestFactory().get("/v1/jobs", HTTP_HOST="testserver")
    for name, job in jobs.items():
        sql = selectors.job_reread(job)
        orm = orm_reread(job)
        assert fields(sql) == fields(orm), name
        assert type(sql.result) is type(orm.result) and type(sql.timings) is dict, name
        assert fields(getattr(sql, "webhook_delivery", None)) == fields(
            getattr(orm, "webhook_delivery", None)
        ), name
        sql_money, orm_money = selectors.job_money(sql), selectors.job_money(orm)
        assert fields(sql_money.charge) == fields(orm_money.charge), name
        if orm_money.charge is not None:
            assert fields(sql_money.charge.price_version) == fields(
                orm_money.charge.price_version
            ), name
        assert sql_money.balance == orm_money.balance, name
        assert job_data(sql, request=request) == job_data(orm, request=request), name
    succeeded = job_data(selectors.job_reread(jobs["succeeded"]), request=request)
    assert succeeded["charge_status"] == "posted" and succeeded["cost"] == "0.0002"
    # 3 less two posted charges and the queued job's hold; the failed job's was voided.
    assert succeeded["balance"] == "2.9994"
    assert succeeded["price_version"]["price"] == "0.0002"
    assert job_data(selectors.job_reread(jobs["failed"]), request=request)["cost"] == "0"
    hooked = job_data(selectors.job_reread(jobs["webhook"]), request=request)
    assert hooked["webhook"]["url"] == "https://hooks.example.com/vitrine"
    anonymous = job_data(selectors.job_reread(jobs["anonymous"]), request=request)
    assert anonymous["balance"] is None and anonymous["charge_status"] is None
    # An owner with no wallet yet gets one (balance 0), as wallet_for does on the ORM path.
    walletless = job_data(selectors.job_reread(jobs["walletless"]), request=request)
    assert walletless["balance"] == "0" and walletless["cost"] == "0"


def test_the_answer_is_one_statement(jobs):
    """The point of the statement: a finished paid job's whole answer is one read (the ORM
    path: the row, the charge, the wallet)."""
    request = RequestFactory().get("/v1/jobs", HTTP_HOST="testserver")
    job = jobs["succeeded"]
    with CaptureQueriesContext(connection) as sql_reads:
        job_data(selectors.job_reread(job), request=request)
    with CaptureQueriesContext(connection) as orm_reads:
        job_data(orm_reread(job), request=request)
    assert len(sql_reads) == 1
    assert len(orm_reads) == 3


def test_a_gone_job_is_does_not_exist_on_both_paths(jobs):
    gone = Job(pk=uuid.uuid4(), status=JobStatus.SUCCEEDED)
    with pytest.raises(Job.DoesNotExist):
        selectors.job_reread(gone)
    with pytest.raises(Job.DoesNotExist):
        orm_reread(gone)


def test_a_job_shown_to_its_owner_is_one_statement_and_what_the_orm_shows(jobs):
    """``GET /v1/jobs/<id>``'s read (``job_of_owner(with_money=True)``): on PostgreSQL one
    statement for the job, its card, organisation, route, webhook delivery and money; the
    same resource and the same instances as the ORM's read, and no job of someone else."""
    request = RequestFactory().get("/v1/jobs", HTTP_HOST="testserver")
    for name, job in jobs.items():
        if job.owner is None:
            assert selectors.job_of_owner(job_id=job.pk, user=factories.user()) is None
            continue
        with CaptureQueriesContext(connection) as reads:
            shown = selectors.job_of_owner(job_id=job.pk, user=job.owner, with_money=True)
            sql = job_data(shown, request=request)
        orm_job = selectors.job_of_owner(job_id=job.pk, user=job.owner)
        assert sql == job_data(orm_job, request=request), name
        assert fields(shown) == fields(orm_job), name
        for relation in ("card", "route", "owner"):
            assert fields(getattr(shown, relation)) == fields(getattr(orm_job, relation)), name
        assert fields(shown.card.organisation) == fields(orm_job.card.organisation), name
        # A queued job's JSON also counts the jobs ahead of it; a walletless owner's
        # wallet is made on first sight, as on the ORM path.
        if name != "walletless":
            assert len(reads) == (2 if name == "queued" else 1), (name, [q["sql"] for q in reads])
        stranger = factories.user()
        for with_money in (True, False):
            found = selectors.job_of_owner(job_id=job.pk, user=stranger, with_money=with_money)
            assert found is None, name
    missing = selectors.job_of_owner(
        job_id=uuid.uuid4(), user=jobs["succeeded"].owner, with_money=True
    )
    assert missing is None
