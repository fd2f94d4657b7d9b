"""On PostgreSQL a worker reads a finished job's answer as it finishes it, and the finished
signal carries it to the waiting call, which answers without reading the row again.

The finish (the job's and its attempt's updates and the charge's settlement, one statement)
and the answer's read (``selectors.answer_sql``: the job, its webhook, its charge and the
owner's wallet) go in one round trip, one transaction (``catalog.db.prepared_pipeline``), so
the row read is the row as it commits. The signal carries it (``catalog.db.row_encode``);
the waiting call builds the same instances ``job_reread`` builds from the same row, in its
event loop. These tests run in autocommit, as the worker does, with a real Redis subscriber,
and require the carried answer to be the one a read of the row gives: paid and succeeded,
paid and failed, an anonymous try; a job with a webhook is sent the plain signal.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest
from django.db import DataError, connection
from django.test import RequestFactory
from PIL import Image

from billing.models import AccountKind
from billing.services.charges import charge_reserve
from billing.services.ledger import system_account
from billing.services.topups import credit_grant
from catalog.db import prepared_pipeline, prepared_row
from catalog.selectors import card_with_routes
from playground import api, events, pipeline, selectors, services
from playground.models import Job, JobStatus
from playground.serializers import job_data
from playground.webhooks import webhook_register
from tests import factories
from tests.playground.runtime_helpers import encode

D = Decimal
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the pipelined finish is PostgreSQL's"
    ),
]
# Enough detections that PostgreSQL compresses the stored list (past ~2 kB).
RESULT = [
    {"label": f"label {i}", "score": 0.05 + i / 100, "box": {"xmin": i, "ymin": 2 * i,
     "xmax": 3 * i + 1, "ymax": 4 * i + 1}, "box_float": {"xmin": i + 0.25, "ymin": 2 * i + 0.5,
     "xmax": 3 * i + 1.125, "ymax": 4 * i + 1.0625}}
    for i in range(90)
]  # fmt: skip
THRESHOLD = 0.3  # the calls' (what each job stores in its parameters)
SHOWN = [d for d in RESULT if d["score"] >= THRESHOLD]  # what such a call is shown


@pytest.fixture
def heard(settings, broker_url):
    """The finished signals a real subscriber received: (job id, data), oldest first."""
    import redis

    from config.settings.env import redis_client_url

    settings.VITRINE_REDIS_URL = redis_client_url(broker_url)
    client = redis.Redis.from_url(settings.VITRINE_REDIS_URL)
    pubsub = client.pubsub()
    pubsub.psubscribe(events.CHANNEL.format(job_id="*"))
    assert pubsub.get_message(timeout=30)["type"] == "psubscribe"  # confirmed before use

    def signals() -> list[tuple[str, bytes]]:
        found = []
        while (message := pubsub.get_message(timeout=0.5)) is not None:
            found.append((message["channel"].decode().rsplit(":", 1)[1], message["data"]))
        # Channels are the server's, not a database's: another process on this Redis
        # (another suite, a running stack) is heard too. Only this test's jobs count.
        ids = [job_id for job_id, _ in found]
        ours = {str(pk) for pk in Job.objects.filter(pk__in=ids).values_list("pk", flat=True)}
        return [(job_id, data) for job_id, data in found if job_id in ours]

    yield signals
    pubsub.close()
    client.close()


@pytest.fixture
def made(settings, tmp_path):
    """A funded payer, a priced card loaded as a call loads it (with its organisation and
    routes), and a factory of claimed jobs as an inference call makes them."""
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    # As on any database past its first paid job (test_finish_settled_pg.py has that one).
    system_account(AccountKind.INFERENCE_REVENUE)
    payer = factories.user(username="payer")
    credit_grant(user=payer, amount=D("1"), reason="funds")
    route = factories.route(card=factories.card(slug="carried"), price=D("0.0002"))
    card = card_with_routes(model_id=route.card.model_id)

    def claimed(*, owner=payer, webhook: str | None = None) -> tuple[Job, Job]:
        """(the job as the call holds it, the job as its worker claimed it); asked for at
        THRESHOLD, as an inference call stores it."""
        reserve = None
        if owner is not None:

            def reserve(job_id):
                return charge_reserve(job_id=job_id, user=owner, card=card, route=route).pk

        image = encode(Image.new("RGB", (40, 30), (10, 200, 30)))
        job = services.job_create(
            card=card, route=route, image_bytes=image, owner=owner, reserve=reserve,
            parameters={"threshold": THRESHOLD},
        )  # fmt: skip
        if webhook:
            webhook_register(job=job, url=webhook)
        return job, services.job_claim(job_id=job.pk, worker="w:1")

    return {"payer": payer, "claimed": claimed}


def request():
    return RequestFactory().post("/v1/inference/x", HTTP_HOST="testserver")


def carried(signals: list[tuple[str, bytes]], job: Job) -> tuple:
    (job_id, data), *rest = signals
    assert job_id == str(job.pk) and not rest
    row = events.carried_answer(data)
    assert row is not None, data[:40]
    return row


def ended(made, heard, outcome: str) -> tuple[Job, tuple]:
    """A paid job its worker ended (``succeeded`` with RESULT, or ``failed``) and the answer
    row its finished signal carried."""
    job, claimed = made["claimed"]()
    if outcome == "succeeded":
        assert services.job_succeed(job=claimed, result=RESULT, timings={"forward": 0.25})
    else:
        assert services.job_fail(job=claimed, code="inference_error", message="RuntimeError: x")
    return job, carried(heard(), job)


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
def test_the_carried_answer_is_the_row_as_it_committed(made, heard, outcome):
    job, row = ended(made, heard, outcome)
    fresh = selectors.job_from_answer(job, row)
    reread = selectors.job_reread(job)
    assert job_data(fresh, request=request()) == job_data(reread, request=request())
    answer = job_data(fresh, request=request())
    assert answer["status"] == outcome
    # The money as the finish left it: posted (or voided) and the wallet after it.
    assert answer["charge_status"] == {"succeeded": "posted", "failed": "voided"}[outcome]
    assert answer["balance"] == {"succeeded": "0.9998", "failed": "1"}[outcome]
    assert answer["cost"] == {"succeeded": "0.0002", "failed": "0"}[outcome]
    if outcome == "succeeded":
        # The result carried is what a call at the job's threshold is shown, not all 90.
        assert fresh.result == SHOWN and len(answer["detections"]) == len(SHOWN) < len(RESULT)
        assert selectors.job_reread(job).result == RESULT  # stored whole


def test_the_carried_result_serves_the_jobs_threshold_and_above_only(made, heard):
    job, claimed = made["claimed"]()
    assert services.job_succeed(job=claimed, result=RESULT, timings={"forward": 0.25})
    row = carried(heard(), job)
    for threshold in (THRESHOLD, 0.6, 0.95):
        fresh = selectors.job_from_answer(job, row, threshold=threshold)
        shown = job_data(fresh, request=request(), threshold=threshold)
        read = job_data(selectors.job_reread(job), request=request(), threshold=threshold)
        assert shown == read and shown["detections"] == read["detections"]
    # Below the job's threshold the carried detections are not all there: read the row.
    assert selectors.job_from_answer(job, row, threshold=THRESHOLD - 0.01) is None


def test_an_anonymous_try_carries_its_answer_too(made, heard):
    job, claimed = made["claimed"](owner=None)
    assert services.job_succeed(job=claimed, result=RESULT[:3], timings={})
    fresh = selectors.job_from_answer(job, carried(heard(), job))
    assert job_data(fresh, request=request()) == job_data(
        selectors.job_reread(job), request=request()
    )
    assert job_data(fresh, request=request())["balance"] is None


def test_a_job_with_a_webhook_sends_the_plain_signal(made, heard):
    """Its delivery's state moves after the finish: the waiting call reads the row."""
    job, claimed = made["claimed"](webhook="https://hooks.example.com/vitrine")
    assert services.job_succeed(job=claimed, result=RESULT[:1], timings={})
    signals = [s for s in heard() if s[0] == str(job.pk)]
    assert signals == [(str(job.pk), events.FINAL)]
    assert events.carried_answer(events.FINAL) is None


def test_a_stale_finish_sends_nothing(made, heard):
    job, claimed = made["claimed"]()
    Job.objects.filter(pk=job.pk).update(attempts=2)  # taken over by a later attempt
    assert not services.job_succeed(job=claimed, result=RESULT, timings={})
    assert heard() == []


@pytest.mark.parametrize(
    "outcome, full, status",
    [("succeeded", True, 200), ("succeeded", False, 200), ("failed", False, 500),
     ("timeout", False, 503)],
)  # fmt: skip
def test_the_call_answers_from_the_carried_row_in_its_event_loop(
    made, heard, outcome, full, status
):
    """What the waiting call does with the signal: the same response job_response gives
    from a read of the row (the detections, the job resource, a failure's error), built
    where any database work would raise (a running event loop: Django refuses it there),
    so it read nothing."""
    job, claimed = made["claimed"]()
    if outcome == "succeeded":
        assert services.job_succeed(job=claimed, result=RESULT, timings={"forward": 0.25})
    else:
        code = {"failed": "inference_error", "timeout": "timeout"}[outcome]
        assert services.job_fail(job=claimed, code=code, message="RuntimeError: boom")
    (_, data), *_ = heard()
    options = {"full": full, "box_format": "float"}

    async def in_the_loop():
        return api._answer_carried(request(), job, data, 0.3, options)

    built = asyncio.run(in_the_loop())
    assert built is not None
    read = api.job_response(request(), job, 0.3, **options)
    assert (built.status_code, json.loads(built.content)) == (status, json.loads(read.content))
    assert built.content == read.content  # byte for byte: the boxes' keys in jsonb's order
    assert {k: v for k, v in built.items()} == {k: v for k, v in read.items()}
    # A signal without a row, or one that is not this job's, leaves it to the read.
    assert asyncio.run(_carried_in_loop(job, events.FINAL, options)) is None
    other, _ = made["claimed"]()
    assert asyncio.run(_carried_in_loop(other, data, options)) is None


async def _carried_in_loop(job, data, options):
    return api._answer_carried(request(), job, data, 0.3, options)


def test_a_row_the_answer_cannot_be_built_from_alone_is_read_instead(made, heard):
    """A relation the call did not load would need the database in the event loop: the
    carried answer gives way to the read (in a thread), never to an error."""
    job, claimed = made["claimed"]()
    assert services.job_succeed(job=claimed, result=RESULT, timings={})
    (_, data), *_ = heard()
    bare = Job.objects.get(pk=job.pk)  # nothing cached: its card loads lazily
    assert asyncio.run(_carried_in_loop(bare, data, {"full": True, "box_format": "int"})) is None


def test_a_pipeline_is_one_transaction_and_a_failure_undoes_it(made):
    job, _ = made["claimed"]()
    table = Job._meta.db_table
    update = f"UPDATE {table} SET worker = %s::text WHERE id = %s::uuid RETURNING worker"
    read = f"SELECT worker FROM {table} WHERE id = %s::uuid"
    # The read sees the update sent before it in the same round trip.
    assert prepared_pipeline([(update, ["w:2", job.pk]), (read, [job.pk])]) == [("w:2",), ("w:2",)]
    assert Job.objects.get(pk=job.pk).worker == "w:2"
    # A failing later statement: nothing of the round trip is committed, the error is Django's.
    with pytest.raises(DataError) as raised:
        prepared_pipeline([(update, ["w:3", job.pk]), ("SELECT 1 / %s::int", [0])])
    assert raised.value.__cause__.sqlstate == "22012"  # division_by_zero
    assert Job.objects.get(pk=job.pk).worker == "w:2"
    # The connection is usable after it, prepared statements and all.
    assert prepared_row(read, [job.pk]) == ("w:2",)
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING


def test_a_result_is_stored_compressed_with_lz4_where_the_server_has_it(made, heard):
    """playground migration 0012: LZ4 stores a large result ~7x faster than pglz."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
        if not cursor.fetchone()[0]:
            pytest.skip("this PostgreSQL was built without LZ4")
    job, claimed = made["claimed"]()
    assert services.job_succeed(job=claimed, result=RESULT * 3, timings={})
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT pg_column_compression(result) FROM {Job._meta.db_table} WHERE id = %s",
            [job.pk],
        )
        assert cursor.fetchone() == ("lz4",)
    assert Job.objects.get(pk=job.pk).result == RESULT * 3


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
@pytest.mark.parametrize("flavour", ["hf", "cloudflare"])
def test_the_drop_in_flavours_answer_from_the_carried_row_too(made, heard, flavour, outcome):
    """Hugging Face's and Cloudflare's bounded waits hear the same signal: their answer
    (the bare list, Cloudflare's envelope, a failure in the flavour's shape, the cost
    headers) is built in the event loop from the carried row, byte for byte the answer
    a read of the row gives."""
    from playground.flavours import cloudflare, common, hf, waiting

    answer = {"hf": hf.hf_answer, "cloudflare": cloudflare.cloudflare_answer}[flavour]
    job, row = ended(made, heard, outcome)
    submitted = pipeline.Submitted(job)

    async def in_the_loop():
        fresh = selectors.job_from_answer(job, row, threshold=THRESHOLD)
        built = answer(request(), submitted, THRESHOLD, waiting.FINAL, fresh)  # no database
        waited = await common.answer_waited(
            answer, request(), submitted, THRESHOLD, waiting.FINAL, row
        )
        return built, waited

    built, waited = asyncio.run(in_the_loop())
    read = answer(request(), submitted, THRESHOLD, waiting.FINAL, None)
    for response in (built, waited):
        assert (response.status_code, response.content) == (read.status_code, read.content)
        assert dict(response.items()) == dict(read.items())
    assert read.status_code == {"succeeded": 200, "failed": 500}[outcome]


def test_a_batch_ends_in_one_transaction_as_its_jobs_end_one_by_one(made, heard):
    """``jobs_succeed``, a worker's batch: every job ends, is charged and is answered as
    ``job_succeed`` ends, charges and answers one, all in one transaction (one round trip,
    one commit) and one Redis round trip; a job whose attempt went stale meanwhile ends
    nothing and is sent nothing; a job with a webhook is sent the plain signal."""
    alone, claimed_alone = made["claimed"]()
    assert services.job_succeed(job=claimed_alone, result=RESULT, timings={"forward": 0.25})
    answer_alone = job_data(
        selectors.job_from_answer(alone, carried(heard(), alone)), request=request()
    )
    batch = [made["claimed"]() for _ in range(3)]
    stale, claimed_stale = made["claimed"]()
    hooked, claimed_hooked = made["claimed"](webhook="https://hooks.example.com/vitrine")
    Job.objects.filter(pk=stale.pk).update(attempts=2)  # taken over by a later attempt
    claims = [claimed for _, claimed in batch] + [claimed_stale, claimed_hooked]
    finished = [(claimed, RESULT, {"forward": 0.25}) for claimed in claims]
    assert services.jobs_succeed(finished=finished) == [True, True, True, False, True]

    signals = heard()
    assert sorted(job_id for job_id, _ in signals) == sorted(
        str(job.pk) for job in [*(job for job, _ in batch), hooked]
    )
    by_job = dict(signals)
    assert by_job[str(hooked.pk)] == events.FINAL
    for job, _ in batch:
        fresh = selectors.job_from_answer(job, events.carried_answer(by_job[str(job.pk)]))
        answer = job_data(fresh, request=request())
        assert answer == job_data(selectors.job_reread(job), request=request())
        same = ("status", "charge_status", "cost", "detections")
        assert {k: answer[k] for k in same} == {k: answer_alone[k] for k in same}
    assert Job.objects.get(pk=hooked.pk).status == JobStatus.SUCCEEDED
    left = Job.objects.get(pk=stale.pk)
    assert (left.status, left.result) == (JobStatus.RUNNING, None)
    assert job_data(selectors.job_reread(stale), request=request())["charge_status"] == "reserved"
    # One transaction: every row the batch ended carries the same xmin, not the lone job's.
    ended_ids = [job.pk for job, _ in batch] + [hooked.pk]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, xmin::text FROM playground_job WHERE id = ANY(%s)", [[alone.pk, *ended_ids]]
        )
        xmin = dict(cursor.fetchall())
    assert len({xmin[pk] for pk in ended_ids}) == 1 and xmin[alone.pk] != xmin[ended_ids[0]]


def test_a_batch_of_one_ends_as_job_succeed_ends_it(made, heard):
    job, claimed = made["claimed"]()
    assert services.jobs_succeed(finished=[(claimed, RESULT, {})]) == [True]
    answer = job_data(selectors.job_from_answer(job, carried(heard(), job)), request=request())
    assert answer == job_data(selectors.job_reread(job), request=request())
