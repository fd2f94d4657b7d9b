"""playground/0013: a job's indexes, cut to what its queries read.

Migrated back and forth on the suite's own database (SQLite through Django's operations,
PostgreSQL through the migration's own CONCURRENTLY statements), the tables end with the
same indexes either way; on PostgreSQL the queries the indexes are for can use them (the
planner proves each partial index's condition from the query's)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from playground.models import Job, JobStatus
from tests.schema import index_condition, migrate_to, migrate_to_latest, table_indexes

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("playground", "0012_job_result_lz4")
AFTER = ("playground", "0013_lighter_job_indexes")
PARTIAL = {
    "job_running_lease": "((status)::text = 'running'::text)",
    "job_queued_at": "((status)::text = 'queued'::text)",
    "job_finished_at": "(finished_at IS NOT NULL)",
}


def indexed(table: str) -> dict[str, tuple]:
    """The table's indexes and unique constraints but its primary key, by name:
    (columns, unique)."""
    return {
        name: (tuple(c["columns"]), c["unique"])
        for name, c in table_indexes(table).items()
        if (c["index"] or c["unique"]) and not c["primary_key"]
    }


def test_a_job_keeps_only_the_indexes_its_queries_read_and_migrates_both_ways():
    job, attempt = indexed("playground_job"), indexed("playground_jobattempt")
    assert sorted(job.values()) == [
        (("card_id",), False),
        # job_created_brin (playground/0020): PostgreSQL only, the admin's job list.
        *([(("created_at",), False)] if connection.vendor == "postgresql" else []),
        (("finished_at",), False),
        (("finished_at",), False),  # job_retention (playground/0017)
        (("lease_expires_at",), False),
        (("owner_id",), False),  # job_owner_inflight (0017)
        (("owner_id", "created_at", "id"), False),  # job_owner_created (0017)
        (("queued_at",), False),
    ]
    assert {name: job[name][0] for name in PARTIAL} == {
        "job_running_lease": ("lease_expires_at",),
        "job_queued_at": ("queued_at",),
        "job_finished_at": ("finished_at",),
    }
    assert sorted(attempt.values()) == [(("job_id", "number"), True)]
    if connection.vendor == "postgresql":
        assert {name: index_condition(name) for name in PARTIAL} == PARTIAL
    try:
        migrate_to(BEFORE)
        columns = sorted(c for c, _ in indexed("playground_job").values())
        for dropped in [("request_id",), ("route_id",), ("status", "lease_expires_at")]:
            assert dropped in columns
        assert ("status", "queued_at") in columns
        assert (("job_id",), False) in indexed("playground_jobattempt").values()
        assert not set(PARTIAL) & set(indexed("playground_job"))
    finally:
        migrate_to_latest()
    assert (indexed("playground_job"), indexed("playground_jobattempt")) == (job, attempt)


QUERIES = {
    # playground.services.reap_stale_jobs's stale jobs
    "job_running_lease": lambda now: Job.objects.filter(
        status=JobStatus.RUNNING, lease_expires_at__lt=now
    ),
    # a queued job's place in its queue (services), and the sweeper's old queued jobs
    "job_queued_at": lambda now: Job.objects.filter(
        queue="cpu", status=JobStatus.QUEUED, queued_at__lt=now
    ),
    # retention's finished jobs by age
    "job_finished_at": lambda now: Job.objects.filter(
        status__in=Job.FINAL, finished_at__lt=now - timedelta(hours=1)
    ),
}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the planner's proof")
@pytest.mark.parametrize("index", sorted(QUERIES))
def test_the_queries_can_use_their_partial_index(index):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = QUERIES[index](timezone.now()).explain()
    assert index in plan, plan
