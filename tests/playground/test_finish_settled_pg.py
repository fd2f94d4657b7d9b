"""On PostgreSQL a job's finish and its charge's settlement are one statement, its own
transaction, and the money still moves with the job's status.

A worker finishes a job outside any transaction: the compare-and-set updates of the job
and of its attempt and the charge's settlement (posted when the job succeeded, voided
otherwise) are one prepared statement committed on its own. These tests run in autocommit
(``transaction=True``), as the worker does, and check what a user or an operator could
see: the job, its attempt, the charge, the ledger and the balances, and the finished
signal sent once the statement is committed. When the settlement needs an account created
first (``vitrine_charge_settle`` leaves that to Python) the statement must change nothing
at all, and the finish and the ORM's settlement then run in one transaction.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from PIL import Image

from billing.models import AccountKind, Charge, LedgerAccount, LedgerEntry, LedgerTransaction
from billing.selectors import account_balance
from billing.services.charges import charge_reserve
from billing.services.ledger import system_account, user_accounts
from billing.services.topups import credit_grant
from playground import services
from playground.models import Job, JobAttempt, JobStatus
from tests import factories
from tests.playground.runtime_helpers import encode

D = Decimal
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the one-statement finish is PostgreSQL's"
    ),
]
DETECTIONS = [
    {"label": "cat", "score": 0.91, "box": {"xmin": 1, "ymin": 2, "xmax": 30, "ymax": 20}}
]


def png() -> bytes:
    return encode(Image.new("RGB", (40, 30), (10, 200, 30)))


@pytest.fixture
def heard(settings, broker_url):
    """The job ids whose finished signal reached a real subscriber (Redis, as in production)."""
    import redis

    from config.settings.env import redis_client_url
    from playground.events import CHANNEL

    settings.VITRINE_REDIS_URL = redis_client_url(broker_url)
    client = redis.Redis.from_url(settings.VITRINE_REDIS_URL)
    pubsub = client.pubsub()
    pubsub.psubscribe(CHANNEL.format(job_id="*"))
    assert pubsub.get_message(timeout=30)["type"] == "psubscribe"  # confirmed before use

    def signals() -> list[str]:
        # PUBLISH returns after Redis wrote to its subscribers: what was sent is buffered.
        found = []
        while (message := pubsub.get_message(timeout=0.5)) is not None:
            found.append(message["channel"].decode().rsplit(":", 1)[1])
        # Channels are the server's, not a database's: another process on this Redis
        # (another suite, a running stack) is heard too. Only this test's jobs count.
        ours = {str(pk) for pk in Job.objects.filter(pk__in=found).values_list("pk", flat=True)}
        return [job_id for job_id in found if job_id in ours]

    yield signals
    pubsub.close()
    client.close()


@pytest.fixture
def paid(settings, tmp_path, heard):
    """A funded user, a priced card and a factory of claimed jobs with a reserved charge;
    ``heard()`` lists the finished signals sent since it was last called."""
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    user = factories.user(username="payer")
    credit_grant(user=user, amount=D("1"), reason="funds")
    route = factories.route(card=factories.card(slug="paid-card"), price=D("0.0002"))

    def claimed_job(units: int = 3) -> Job:
        job = services.job_create(card=route.card, image_bytes=png())
        charge_reserve(job_id=job.pk, user=user, card=route.card, route=route, units=units)
        return services.job_claim(job_id=job.pk, worker="w:1")

    return {"user": user, "claimed_job": claimed_job, "heard": heard}


def statements(queries) -> list[str]:
    """The statements a finish ran, less the webhook lookup its commit hook makes and the
    answer's read sent in the same round trip (test_answer_carried_pg.py)."""
    return [
        q["sql"]
        for q in queries
        if "webhookdelivery" not in q["sql"] and not q["sql"].lstrip().startswith("SELECT j.")
    ]


def money(user) -> dict:
    wallet, holds = user_accounts(user)
    revenue = LedgerAccount.objects.filter(user=None, kind=AccountKind.INFERENCE_REVENUE).first()
    return {
        "wallet": account_balance(wallet),
        "holds": account_balance(holds),
        "revenue": account_balance(revenue) if revenue else None,
    }


def settlement(job: Job) -> tuple:
    charge = Charge.objects.get(job_id=job.pk)
    kinds = list(
        LedgerTransaction.objects.filter(idempotency_key__endswith=str(job.pk))
        .order_by("created_at")
        .values_list("kind", flat=True)
    )
    return charge.status, kinds


def test_a_success_and_its_post_are_one_statement(paid):
    system_account(AccountKind.INFERENCE_REVENUE)  # an earlier job's post created it
    job = paid["claimed_job"](units=3)
    before = money(paid["user"])
    with CaptureQueriesContext(connection) as queries:
        assert services.job_succeed(job=job, result=DETECTIONS, timings={"forward": 0.4})
    assert len(statements(queries)) == 1, statements(queries)
    assert "vitrine_charge_settle_in_finish" in statements(queries)[0]
    row = Job.objects.get(pk=job.pk)
    assert (row.status, row.result, row.lease_expires_at) == (JobStatus.SUCCEEDED, DETECTIONS, None)
    attempt = JobAttempt.objects.get(job_id=job.pk)
    assert (attempt.outcome, attempt.finished_at) == ("succeeded", row.finished_at)
    assert settlement(job) == (Charge.Status.POSTED, ["reserve", "post"])
    after = money(paid["user"])
    cost = D("0.0006")
    assert after["wallet"] == before["wallet"]  # the reservation already took it
    assert (after["holds"], after["revenue"]) == (before["holds"] - cost, before["revenue"] + cost)
    post = LedgerTransaction.objects.get(idempotency_key=f"post:{job.pk}")
    assert sum(LedgerEntry.objects.filter(transaction=post).values_list("amount", flat=True)) == 0
    assert paid["heard"]() == [str(job.pk)]  # sent after the commit, once


def test_a_failure_voids_its_charge_in_the_same_statement(paid):
    job = paid["claimed_job"](units=2)
    before = money(paid["user"])
    with CaptureQueriesContext(connection) as queries:
        assert services.job_fail(job=job, code="inference_error", message="RuntimeError: boom")
    assert len(statements(queries)) == 1
    row = Job.objects.get(pk=job.pk)
    assert (row.status, row.error_code) == (JobStatus.FAILED, "inference_error")
    assert settlement(job) == (Charge.Status.VOIDED, ["reserve", "void"])
    after = money(paid["user"])
    assert after["wallet"] == before["wallet"] + D("0.0004")  # a failed job costs nothing
    assert after["holds"] == before["holds"] - D("0.0004")
    assert paid["heard"]() == [str(job.pk)]


def test_a_stale_attempt_finishes_and_settles_nothing(paid):
    job = paid["claimed_job"]()
    Job.objects.filter(pk=job.pk).update(attempts=2)  # taken over by a later attempt
    before = (money(paid["user"]), settlement(job), Job.objects.get(pk=job.pk).status)
    assert not services.job_succeed(job=job, result=DETECTIONS, timings={})
    assert (money(paid["user"]), settlement(job), Job.objects.get(pk=job.pk).status) == before
    assert before[1] == (Charge.Status.RESERVED, ["reserve"])
    assert paid["heard"]() == []


def test_a_settlement_that_needs_an_account_undoes_the_whole_statement(paid):
    """No revenue account yet (this database's first post): the function leaves it to the
    ORM, so the one statement must have finished nothing; the ORM path then finishes the
    job and posts its charge in one transaction, creating the account."""
    assert not LedgerAccount.objects.filter(kind=AccountKind.INFERENCE_REVENUE).exists()
    job = paid["claimed_job"](units=1)
    now = timezone.now()
    fields = {"status": JobStatus.SUCCEEDED, "result": DETECTIONS, "timings": {}}
    undone = services._finish_sql(
        job=job, outcome=JobAttempt.Outcome.SUCCEEDED, now=now, fields=fields, settle=True
    )
    assert undone is None
    row = Job.objects.get(pk=job.pk)
    assert (row.status, row.result, row.finished_at) == (JobStatus.RUNNING, None, None)
    assert JobAttempt.objects.get(job_id=job.pk).outcome == "running"
    assert settlement(job) == (Charge.Status.RESERVED, ["reserve"])

    assert services.job_succeed(job=job, result=DETECTIONS, timings={})
    assert Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED
    assert settlement(job) == (Charge.Status.POSTED, ["reserve", "post"])
    assert money(paid["user"])["revenue"] == D("0.0002")
    assert paid["heard"]() == [str(job.pk)]
    # The account exists now: the next job takes the one statement.
    second = paid["claimed_job"](units=1)
    with CaptureQueriesContext(connection) as queries:
        assert services.job_succeed(job=second, result=DETECTIONS, timings={})
    assert len(statements(queries)) == 1
    assert settlement(second) == (Charge.Status.POSTED, ["reserve", "post"])


def test_a_job_without_a_charge_finishes_in_one_statement(paid, settings, tmp_path):
    """The anonymous playground's jobs have no charge: nothing to settle."""
    job = services.job_create(card=factories.card(slug="free-card"), image_bytes=png())
    job = services.job_claim(job_id=job.pk, worker="w:1")
    with CaptureQueriesContext(connection) as queries:
        assert services.job_succeed(job=job, result=[], timings={})
    assert len(statements(queries)) == 1
    assert paid["heard"]() == [str(job.pk)]
    assert Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED
    assert not Charge.objects.filter(job_id=job.pk).exists()


def test_a_batch_whose_settlement_needs_an_account_ends_one_by_one(paid):
    """The batch's one transaction cannot create the revenue account (this database's first
    post): it is undone whole and the jobs end one by one, each posted once."""
    assert not LedgerAccount.objects.filter(kind=AccountKind.INFERENCE_REVENUE).exists()
    jobs = [paid["claimed_job"](units=1) for _ in range(3)]
    finished = [(job, DETECTIONS, {}) for job in jobs]
    assert services.jobs_succeed(finished=finished) == [True, True, True]
    for job in jobs:
        assert Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED
        assert settlement(job) == (Charge.Status.POSTED, ["reserve", "post"])
    assert money(paid["user"])["revenue"] == D("0.0006")
    assert sorted(paid["heard"]()) == sorted(str(job.pk) for job in jobs)
    # Ended once: the batch again (a redelivery) ends and charges nothing more.
    assert services.jobs_succeed(finished=finished) == [False, False, False]
    assert money(paid["user"])["revenue"] == D("0.0006")
    assert paid["heard"]() == []
