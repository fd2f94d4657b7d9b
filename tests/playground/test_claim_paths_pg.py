"""On PostgreSQL the one-statement claim and finish are the ORM's claim and finish.

job_claim runs one prepared statement on PostgreSQL (the compare-and-set update, the
attempt's row and the joined read back) and the ORM's four steps elsewhere; a job's finish
(succeeded or failed) one statement for the job's and its attempt's updates instead of two.
The same jobs go through each path, and everything the worker or an operator could see
must be identical: the returned job, card, organisation and route (every field, JSON
included), the rows left in the database, the attempt log, and the refusals (taken, gone,
out of attempts, a stale attempt's finish) that must write nothing.
"""

from __future__ import annotations

import io
import uuid
from decimal import Decimal

import pytest
from django.db import connection
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from PIL import Image

from playground import provenance, selectors, services, webhooks
from playground.models import Job, JobAttempt
from tests import factories

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the one-statement claim is PostgreSQL's"
    ),
]
CLAIMS = {"sql": services._job_claim_sql, "orm": services._job_claim_orm}
FINISHES = {"sql": services._finish_sql, "orm": services._finish_orm}


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def jobs(settings, tmp_path, django_capture_on_commit_callbacks):
    """One job on an own card without a route, one on a provider's route with a webhook,
    per path."""
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    made = {}
    for path in CLAIMS:
        organisation = factories.organisation(name=f"Org {path}", slug=f"org-{path}")
        card = factories.card(slug=f"card-{path}", organisation=organisation)
        route = factories.route(
            card=card, slug="cloudflare", provider="Cloudflare Workers AI", is_own=False,
            price=Decimal("0.0002"),
        )  # fmt: skip
        with django_capture_on_commit_callbacks(execute=False):
            own = services.job_create(card=card, image_bytes=png(), parameters={"threshold": 0.4})
            routed = services.job_create(card=card, image_bytes=png())
        Job.objects.filter(pk=routed.pk).update(route=route)
        webhooks.webhook_register(job=routed, url="https://hooks.example/vitrine")
        made[path] = (own, routed)
    return made


def seen(instance) -> dict:
    """Every field of a model instance, ids of this path's rows replaced by labels."""
    if instance is None:
        return {}
    values = {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}
    return {k: v for k, v in values.items() if k not in ("id", "card_id", "organisation_id",
            "job_id", "display_name",
            "route_id", "slug", "name", "image_name", "image_sha256", "created_at",
            "queued_at", "enqueued_at", "model_id", "updated_at")}  # fmt: skip


def claimed_view(job: Job) -> dict:
    return {
        "job": seen(job),
        "job_type": type(job.parameters).__name__,
        "card": seen(job.card),
        "organisation": seen(job.card.organisation),
        "route": seen(job.route),
        # Read with the claim: a job ends without a query looking for its webhook.
        "webhook": services._known_webhook(job),
        "delivery": seen(job.webhook_delivery) if services._known_webhook(job) else {},
    }


def stored(job_id) -> dict:
    row = model_to_dict(Job.objects.get(pk=job_id))
    attempts = list(
        JobAttempt.objects.filter(job_id=job_id).values_list(
            "number", "worker", "started_at", "finished_at", "outcome"
        )
    )
    row = {k: v for k, v in row.items() if k in ("status", "attempts", "worker", "started_at",
           "lease_expires_at", "parameters", "result", "phase", "timings", "error_code",
           "error_message")}  # fmt: skip
    row["finished_at"] = Job.objects.get(pk=job_id).finished_at
    return {"row": row, "attempts": attempts}


def test_both_paths_claim_alike(jobs):
    now = timezone.now()
    views = {}
    for path, claim in CLAIMS.items():
        own, routed = jobs[path]
        with CaptureQueriesContext(connection) as queries:
            first = claim(job_id=own.pk, worker="host:1", now=now)
        statements = [q["sql"] for q in queries.captured_queries]
        then = claim(job_id=routed.pk, worker="host:2", now=now)
        with CaptureQueriesContext(connection) as queries:
            # Every relation the worker reads came with the claim.
            view, second = claimed_view(first), claimed_view(then)
        assert len(queries) == 0, path
        views[path] = {
            "own": view,
            "routed": second,
            "stored": [stored(own.pk), stored(routed.pk)],
            "statements": statements,
        }
    # The job's hold (waiting for the commit of a call that sent its message before it),
    # then the claim: two statements, one round trip (catalog.db.prepared_pipeline).
    hold, claimed = views["sql"]["statements"]
    assert "pg_advisory_xact_lock" in hold and "UPDATE" in claimed
    assert len(views["orm"]["statements"]) >= 3
    for key in ("own", "routed", "stored"):
        assert views["sql"][key] == views["orm"][key], key
    own = views["sql"]["own"]
    assert own["job"]["status"] == "running" and own["job"]["attempts"] == 1
    assert own["job"]["parameters"] == {"threshold": 0.4} and own["job_type"] == "dict"
    assert own["route"] == {} and views["sql"]["routed"]["route"]["provider"]
    assert own["webhook"] is False and views["sql"]["routed"]["webhook"] is True
    assert views["sql"]["routed"]["delivery"]["status"] == "waiting"
    assert views["sql"]["stored"][0]["attempts"] == [(1, "host:1", now, None, "running")]


@pytest.mark.parametrize("path", CLAIMS)
def test_a_refused_claim_writes_nothing(jobs, path):
    claim = CLAIMS[path]
    own, routed = jobs[path]
    assert claim(job_id=own.pk, worker="a", now=timezone.now()) is not None
    before = stored(own.pk)
    assert claim(job_id=own.pk, worker="b", now=timezone.now()) is None  # taken
    assert stored(own.pk) == before
    assert claim(job_id=uuid.uuid4(), worker="b", now=timezone.now()) is None  # gone
    Job.objects.filter(pk=routed.pk).update(attempts=3, max_attempts=3)
    assert claim(job_id=routed.pk, worker="b", now=timezone.now()) is None  # out of attempts
    assert JobAttempt.objects.filter(job_id=routed.pk).count() == 0


def test_both_paths_finish_alike(jobs):
    """A success with detections and timings, a failure with its code and message, and a
    stale attempt's finish (the job was taken over) that changes nothing."""
    now = timezone.now()
    detections = [
        {"label": "cat", "score": 0.91, "box": {"xmin": 1, "ymin": 2, "xmax": 30, "ymax": 20}},
        # Floats that must come back exactly (written and read by orjson on the SQL paths,
        # by json through the ORM), an integer past 2**53, text beyond ASCII.
        {
            "label": "chat \u00e9t\u00e9 \u732b",
            "score": 1 / 3,
            "n": 2**53 + 1,
            "box_float": {
                "xmin": 0.1 + 0.2,
                "ymin": 1e-7,
                "xmax": 123456.789012345,
                "ymax": 5e-324,
            },
        },
    ]
    results = {}
    for path, finish in FINISHES.items():
        own, routed = jobs[path]
        ok = services._job_claim_orm(job_id=own.pk, worker="w:1", now=now)
        bad = services._job_claim_orm(job_id=routed.pk, worker="w:1", now=now)
        with CaptureQueriesContext(connection) as queries:
            done = finish(
                job=ok, outcome=JobAttempt.Outcome.SUCCEEDED, now=now,
                fields={"status": "succeeded", "result": detections, "timings": {"forward": 0.4}},
            )  # fmt: skip
        statements = len(queries)
        failed = finish(
            job=bad, outcome=JobAttempt.Outcome.FAILED, now=now,
            fields={"status": "failed", "error_code": "inference_error",
                    "error_message": "RuntimeError: boom", "timings": {}},
        )  # fmt: skip
        Job.objects.filter(pk=routed.pk).update(attempts=2)  # taken over by a later attempt
        before = stored(routed.pk)
        stale = finish(
            job=bad, outcome=JobAttempt.Outcome.SUCCEEDED, now=now,
            fields={"status": "succeeded", "result": [], "timings": {}},
        )  # fmt: skip
        assert stored(routed.pk) == before
        results[path] = {
            "answers": (done, failed, stale),
            "stored": [stored(own.pk), before],
            "statements": statements,
        }
    assert results["sql"]["statements"] == 1 and results["orm"]["statements"] == 2
    assert results["sql"]["answers"] == results["orm"]["answers"] == (1, 1, 0)
    assert results["sql"]["stored"] == results["orm"]["stored"]
    succeeded, failed = results["sql"]["stored"]
    assert succeeded["row"]["result"] == detections and succeeded["row"]["lease_expires_at"] is None
    # The answer's one-statement read (catalog.db.JoinedRow) decodes it alike.
    own, _ = jobs["sql"]
    assert selectors._reread_sql(own.pk).result == detections
    assert succeeded["attempts"] == [(1, "w:1", now, now, "succeeded")]
    assert (failed["row"]["status"], failed["row"]["error_code"]) == ("failed", "inference_error")
    assert failed["attempts"] == [(1, "w:1", now, now, "failed")]


@pytest.mark.parametrize("path", CLAIMS)
def test_a_job_ends_without_looking_for_a_webhook_its_claim_saw_it_lacked(
    jobs, path, django_capture_on_commit_callbacks
):
    """After the finish: the finished signal always; the webhook's hand-off (a query, then
    the delivery queued) only for a job that has one, or whose webhook was not read with
    it (here: the row read again, as a take-over reads it)."""
    own, routed = jobs[path]
    claim = CLAIMS[path]
    finishing = {
        "own": claim(job_id=own.pk, worker="w:1", now=timezone.now()),
        "routed": claim(job_id=routed.pk, worker="w:1", now=timezone.now()),
    }
    with django_capture_on_commit_callbacks(execute=False):
        third = services.job_create(card=own.card, image_bytes=png())
    claim(job_id=third.pk, worker="w:1", now=timezone.now())
    finishing["unread"] = Job.objects.get(pk=third.pk)
    hooks = {}
    for name, job in finishing.items():
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            assert services.job_succeed(job=job, result=[], timings={})
        hooks[name] = len(callbacks)
    assert hooks == {"own": 1, "routed": 2, "unread": 2}


def test_the_claim_writes_the_provenance_its_worker_names_for_that_cards_own_route(jobs):
    """A worker names the card it last ran and that model's provenance: the claim writes it
    on a job of that card without a route or on its own route, and on no other job (another
    card's, a provider's route of the same card), where the worker writes what it loads."""
    fields = provenance.provenance_fields(
        {
            "revision": "0123abcd",
            "model_revision": "v2",
            "untrained": True,
            "backend": "openvino f32",
            "precision": "fp32",
        }
    )
    own, routed = jobs["sql"]
    other_card, _ = jobs["orm"]
    with_own_route = services.job_create(
        card=own.card, route=factories.route(card=own.card), image_bytes=png()
    )
    named = (own.card_id, fields)
    now = timezone.now()
    claimed = {
        job.pk: services._job_claim_sql(job_id=job.pk, worker="w:1", now=now, provenance=named)
        for job in (own, with_own_route, routed, other_card)
    }
    written = {
        pk: (provenance.recorded(job, fields), provenance.recorded(Job.objects.get(pk=pk), fields))
        for pk, job in claimed.items()
    }
    assert written == {
        own.pk: (True, True),
        with_own_route.pk: (True, True),
        routed.pk: (False, False),
        other_card.pk: (False, False),
    }
    untouched = Job.objects.get(pk=routed.pk)
    assert (untouched.weights_revision, untouched.runtime_backend) == ("", "")


def test_a_value_too_long_for_its_column_is_refused_as_by_the_orm(jobs):
    from django.db import DataError, transaction

    for path, finish in FINISHES.items():
        own, _ = jobs[path]
        job = services._job_claim_orm(job_id=own.pk, worker="w:1", now=timezone.now())
        with pytest.raises(DataError), transaction.atomic():
            finish(
                job=job, outcome=JobAttempt.Outcome.FAILED, now=timezone.now(),
                fields={"status": "failed", "error_code": "x" * 65, "error_message": "",
                        "timings": {}},
            )  # fmt: skip


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("routed", [False, True])
def test_a_batch_claim_takes_the_oldest_like_jobs_in_one_statement_and_leaves_locked_ones(
    settings, tmp_path, routed
):
    """``jobs_claim_batch`` on PostgreSQL: one statement claims up to the limit of the
    oldest queued jobs of the same card, route and queue, skipping a row another claim has
    locked, with each one's attempt row, its provenance when the worker names that card, and
    the job as ``job_claim`` returns one (its card, organisation, route and webhook read)."""
    import psycopg

    from tests.conftest import database_url

    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card(slug="batch")
    route = factories.route(card=card) if routed else None
    other_route = factories.route(card=card, slug="other") if not routed else None

    def make(**kwargs) -> Job:
        return services.job_create(card=card, route=route, image_bytes=png(), **kwargs)

    like = services.job_claim(job_id=make().pk, worker="w:1")
    alike = [make() for _ in range(4)]
    hooked = alike[3]
    webhooks.webhook_register(job=hooked, url="https://hooks.example/vitrine")
    unlike = [
        services.job_create(card=factories.card(slug="another"), image_bytes=png()),
        services.job_create(card=card, route=other_route, image_bytes=png()),
        make(queue="gpu"),
    ]
    fields = provenance.provenance_fields(
        {
            "revision": "0123abcd",
            "model_revision": "v2",
            "untrained": True,
            "backend": "openvino f32",
            "precision": "fp32",
        }
    )
    with psycopg.connect(database_url(connection.settings_dict)) as other:
        other.execute("SELECT 1 FROM playground_job WHERE id = %s FOR UPDATE", [alike[1].pk])
        with CaptureQueriesContext(connection) as queries:
            first = services.jobs_claim_batch(
                like=like, worker="w:2", limit=2, provenance=(card.pk, fields)
            )
        assert len(queries) == 1
        assert [job.pk for job in first] == [alike[0].pk, alike[2].pk]
    rest = services.jobs_claim_batch(like=like, worker="w:2", limit=10)
    assert [job.pk for job in rest] == [alike[1].pk, alike[3].pk]
    assert services.jobs_claim_batch(like=like, worker="w:2", limit=10) == []

    for job in [*first, *rest]:
        assert claimed_view(job) == claimed_view(
            Job.objects.select_related("card__organisation", "route").get(pk=job.pk)
        ) | {"webhook": job.pk == hooked.pk, "delivery": claimed_view(job)["delivery"]}
        assert (job.status, job.attempts, job.worker) == ("running", 1, "w:2")
        assert stored(job.pk)["attempts"] == [(1, "w:2", job.started_at, None, "running")]
        assert provenance.recorded(Job.objects.get(pk=job.pk), fields) == (job in first)
    assert seen(rest[1].webhook_delivery)["url"] == "https://hooks.example/vitrine"
    for job in unlike:
        assert Job.objects.get(pk=job.pk).status == "queued"
