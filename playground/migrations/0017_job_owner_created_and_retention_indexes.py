"""Three job indexes for reads whose cost grew with the table (a year of data, session 42).

- ``job_owner_created`` (owner_id, created_at, id) replaces the owner's plain index:
  My runs and ``GET /v1/jobs`` list an owner's jobs newest first, a page at a time, and
  with the owner's index alone PostgreSQL read and sorted every job of the owner for each
  page (1.5-2.4 s for an account with 405,000 jobs, whatever the page). The new index
  holds the same rows (no more entries per job; created_at and id never change) in the
  order the pages read them, and serves every other read by owner.
- ``job_owner_inflight`` (owner_id), only over queued and running jobs: every paid call
  counts the account's jobs in flight (``playground/limits.py``), and with no index for
  it PostgreSQL read the whole table (a parallel seq scan: 1.1 s per call, 0.8 s of a
  sync call's 0.85 s, for an account with 405,000 jobs among 1.5 million; 55 ms for a
  light account). A job enters it when it is queued and when it is claimed; the job's
  writes already change indexed columns (the other partial indexes' status), so none of
  them becomes heavier.
- ``job_retention`` (finished_at), only over finished jobs that still hold an image or
  are free tries (``cost_ref`` empty): the hourly retention walked ``job_finished_at``
  from the oldest finished job through every job whose image was long deleted, for
  each batch (5.0 s for the free tries' batch and 1.3 s for the images' at 1.5 million
  jobs). A job enters it once, when it finishes; it leaves when its image is deleted.

On PostgreSQL built CONCURRENTLY (calls go on meanwhile; a build that failed half-way
leaves an invalid index, dropped first when the migration runs again), the old index
dropped so, and the foreign key kept as it is (Django's own operations would drop and
re-add it, validating every job under a lock). Elsewhere (SQLite) as Django writes them.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from catalog.migration_ops import OnPostgreSQL

JOB = "playground_job"
NEW = {
    "job_owner_created": '("owner_id", "created_at", "id")',
    "job_owner_inflight": "(\"owner_id\") WHERE \"status\" IN ('queued', 'running')",
    "job_retention": '("finished_at") WHERE "finished_at" IS NOT NULL'
    ' AND ("image_deleted_at" IS NULL OR "cost_ref" = \'\')',
}
OLD = "playground_job_owner_id_d9d85221"  # Django's name for the owner's index (0002)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("playground", "0016_webhook_delivery_site_url_db_default"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        OnPostgreSQL(
            [
                migrations.AlterField(
                    model_name="job",
                    name="owner",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AddIndex(
                    model_name="job",
                    index=models.Index(
                        fields=["owner", "created_at", "id"], name="job_owner_created"
                    ),
                ),
                migrations.AddIndex(
                    model_name="job",
                    index=models.Index(
                        condition=models.Q(("status__in", ["queued", "running"])),
                        fields=["owner"],
                        name="job_owner_inflight",
                    ),
                ),
                migrations.AddIndex(
                    model_name="job",
                    index=models.Index(
                        condition=models.Q(("finished_at__isnull", False))
                        & (
                            models.Q(("image_deleted_at__isnull", True))
                            | models.Q(("cost_ref", ""))
                        ),
                        fields=["finished_at"],
                        name="job_retention",
                    ),
                ),
            ],
            sql=[
                *(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"' for name in NEW),
                *(
                    f'CREATE INDEX CONCURRENTLY "{name}" ON "{JOB}" {on}'
                    for name, on in NEW.items()
                ),
                f'DROP INDEX CONCURRENTLY IF EXISTS "{OLD}"',
            ],
            reverse_sql=[
                f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{OLD}" ON "{JOB}" ("owner_id")',
                *(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"' for name in NEW),
            ],
        ),
    ]
