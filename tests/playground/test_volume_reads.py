"""Reads whose cost grew with the tables, found on a year of data (session 42: 1.5 million
jobs, 405,000 of them one account's; 2.5 million ledger transactions): each now reads an
index made for it. On PostgreSQL the plans are checked with sequential scans disabled
(a tiny test table is otherwise read whole, whatever its indexes), as
``test_job_index_migration.py`` checks the other partial indexes."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from PIL import Image

from billing.services.charges import charge_reserve
from playground import services
from playground.limits import _inflight_sql
from playground.models import Job
from playground.retention import _expired, uploads_purge_expired
from playground.selectors import Viewer, jobs_of_owner, runs_for_viewer
from tests import factories

pytestmark = pytest.mark.django_db
on_postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="the planner's plan")


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def card(db):
    card = factories.card()
    factories.route(card=card)
    return card


def plan_of(sql: str, params=()) -> str:
    """PostgreSQL's plan for ``sql`` with sequential scans disabled."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def job_reads(queries) -> list[str]:
    """The statements that read the jobs table's rows (not a count)."""
    return [
        q["sql"]
        for q in queries
        if q["sql"].startswith('SELECT "playground_job"."id"')
        and 'FROM "playground_job"' in q["sql"]
    ]


@on_postgresql
def test_an_owners_jobs_are_read_a_page_at_a_time_in_order_not_all_sorted(card, other_user):
    """My runs and GET /v1/jobs (first page and after a cursor): with the owner's plain index
    every job of the owner was read and sorted for each page (1.6-2.4 s at 405,000 jobs)."""
    jobs = [services.job_create(card=card, image_bytes=png(), owner=other_user) for _ in range(3)]
    with CaptureQueriesContext(connection) as ctx:
        jobs_of_owner(user=other_user, limit=2)
        jobs_of_owner(user=other_user, limit=2, starting_after=jobs[-1])
        list(runs_for_viewer(viewer=Viewer(user_id=other_user.pk))[:20])
    reads = job_reads(ctx.captured_queries)
    assert len(reads) == 3, reads
    for sql in reads:
        plan = plan_of(sql)
        assert "job_owner_created" in plan, plan
        assert "Sort Key: playground_job" not in plan, plan


@on_postgresql
def test_a_paid_calls_count_of_jobs_in_flight_reads_only_jobs_in_flight(other_user):
    """Every paid call counts its account's queued and running jobs: a seq scan of every
    job (1.1 s per call at 1.5 million jobs) before ``job_owner_inflight``."""
    plan = plan_of(_inflight_sql(), [other_user.pk])
    assert "job_owner_inflight" in plan, plan


@on_postgresql
@pytest.mark.parametrize("charged", [False, True], ids=["free tries", "paid images"])
def test_retention_reads_only_jobs_that_still_hold_an_image_or_are_free_tries(charged):
    """With ``job_finished_at`` each batch walked every finished job from the oldest (5.0 s
    for the tries' batch, 1.3 s for the images' at 1.5 million jobs)."""
    expired = _expired(charged=charged, hours=1, now=timezone.now())
    sql, params = expired.values_list("pk", "image_name")[:500].query.sql_with_params()
    plan = plan_of(sql, params)
    assert "job_retention" in plan, plan


def test_a_free_try_whose_image_its_owner_deleted_still_goes_at_its_retention(
    card, settings, tmp_path
):
    """The tries' query reads free tries whatever became of their image (``cost_ref`` empty),
    not only those still holding one; paid jobs whose image is gone are not read again."""
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_TRY_RETENTION = 24
    settings.VITRINE_UPLOAD_RETENTION = 24 * 7
    old = timezone.now() - timedelta(days=30)
    try_ = services.job_create(card=card, image_bytes=png(), session_key="anon")
    user = factories.funded(factories.user())
    paid = services.job_create(card=card, image_bytes=png(), owner=user)
    charge_reserve(job_id=paid.pk, user=user, card=card, route=card.routes.get())
    result = [{"label": "cat", "score": 0.9, "box": [0, 0, 1, 1]}]
    Job.objects.filter(pk__in=[try_.pk, paid.pk]).update(
        status="succeeded", finished_at=old, result=result
    )
    Job.objects.filter(pk=try_.pk).update(image_name="", image_deleted_at=old)
    Job.objects.filter(pk=paid.pk).update(image_name="", image_deleted_at=old)

    assert uploads_purge_expired() == {"tries_deleted": 1, "images_deleted": 0}
    assert not Job.objects.filter(pk=try_.pk).exists()
    paid.refresh_from_db()
    assert paid.image_deleted_at == old


def test_the_job_list_offers_its_queues_without_reading_every_job(admin_client, card):
    """Django's own filter on ``queue`` listed its values with a SELECT DISTINCT over the
    whole table on every view of the admin's job list (560 ms at 1.5 million jobs)."""
    cpu = services.job_create(card=card, image_bytes=png(), session_key="a")
    odd = services.job_create(card=card, image_bytes=png(), session_key="b", queue="odd")
    with CaptureQueriesContext(connection) as ctx:
        response = admin_client.get("/admin/playground/job/")
    assert response.status_code == 200
    distinct = [q["sql"] for q in ctx.captured_queries if "DISTINCT" in q["sql"]]
    assert distinct and all("WHERE" in sql for sql in distinct), distinct
    body = response.content.decode()
    for queue in ("cpu", "gpu", "odd"):  # configured, and the one a queued job names
        assert f"?queue__exact={queue}" in body
    listed = admin_client.get("/admin/playground/job/?queue__exact=odd").context["cl"]
    assert [job.pk for job in listed.result_list] == [odd.pk]
    assert cpu.pk not in [job.pk for job in listed.result_list]


def test_the_queue_filter_reads_one_row_per_queue_however_long_the_backlog(admin_client, card):
    """The queues named by queued jobs: one row each, not one per queued job (a job's
    default order, newest first, made its created_at part of the DISTINCT: a backlog of
    100,000 queued jobs was 100,000 rows read and sorted on every view of the list)."""
    for n in range(4):
        services.job_create(card=card, image_bytes=png(), session_key=f"s{n}")
    services.job_create(card=card, image_bytes=png(), session_key="odd", queue="odd")
    with CaptureQueriesContext(connection) as ctx:
        assert admin_client.get("/admin/playground/job/").status_code == 200
    (distinct,) = [q["sql"] for q in ctx.captured_queries if "DISTINCT" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute(distinct)
        assert len(cursor.fetchall()) == 2  # cpu, odd
