"""``job_created_brin``: a BRIN index on the jobs' ``created_at``, for the admin's job list.

The list shows the newest jobs first, by default those of the last 7 days (its "Created"
filter, playground/admin.py; "All time" is one click away). Without an index on
``created_at`` each view read and sorted every job: 2.5 s at 1.5 million jobs. A B-tree
would take an entry per row version, three per job (created, claimed, finished: none of
them a HOT update), on the hot path. A BRIN index keeps one summary (the least and the
greatest ``created_at``) per 32 pages of the table: a row written into a range still being
filled (the table's end: jobs are appended in the order they are created) or into a range
whose summary already covers its ``created_at`` writes nothing to it, and a finished
range is summarized once, by autovacuum (``autosummarize``). ``created_at`` never changes,
so it makes no update less HOT either. Reading "the last 7 days" reads the ranges whose
summary reaches into the week, not the year.

PostgreSQL only (SQLite has no BRIN, and its small tables do not need one), so it is not in
``Job.Meta.indexes``: SQLite rebuilds a table for most changes, re-creating every index
Meta declares, and a BRIN index there would fail the next migration of jobs. Built
CONCURRENTLY (jobs go on meanwhile; a build that failed half-way leaves an invalid index,
dropped first when the migration runs again). Not atomic, for CONCURRENTLY. Rolling back is
``migrate playground 0019``.
"""

from django.db import migrations

from catalog.migration_ops import OnPostgreSQL

NAME = "job_created_brin"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("playground", "0019_idempotency_record_cached"),
    ]

    operations = [
        OnPostgreSQL(
            [],  # nothing in the state, nothing elsewhere
            sql=[
                f'DROP INDEX CONCURRENTLY IF EXISTS "{NAME}"',
                f'CREATE INDEX CONCURRENTLY "{NAME}" ON "playground_job" USING brin'
                ' ("created_at") WITH (pages_per_range = 32, autosummarize = on)',
            ],
            reverse_sql=[f'DROP INDEX CONCURRENTLY IF EXISTS "{NAME}"'],
        ),
    ]
