"""A job's indexes, cut to what its queries read.

A job is written three times (created, claimed, finished), and its status and timestamps
change each time, so every write is a new row version in every index of the table: with
nine indexes (and the attempt's two), ~30 index entries per job. Now six:

- the reaper's (status, lease_expires_at) and the queue's (status, queued_at) become
  partial indexes on running and queued jobs only (``job_running_lease``,
  ``job_queued_at``): each takes one entry in a job's life instead of three;
- ``finished_at``'s index holds finished jobs only (``job_finished_at``; every query on it
  bounds it, which PostgreSQL's planner proves implies IS NOT NULL);
- ``request_id`` loses its two indexes (plain and pattern-ops): the admin's search (an
  exact match in any case) never used them, and the logs are where a request id is looked
  for; ``route`` loses its own (nothing reads jobs by route alone; PROTECT on a route's
  deletion, rare and by staff, may scan);
- the attempt's ``job_id`` index goes: the unique (job, number) index serves its lookups.

On PostgreSQL the new indexes are built CONCURRENTLY and the old ones dropped so (calls
go on meanwhile: not atomic); Django's own operations would also drop and re-add the two
foreign keys whose index goes, validating every job and attempt under a lock that stops
calls. Elsewhere (SQLite) they run as Django writes them.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from catalog.migration_ops import OnPostgreSQL

JOB = "playground_job"
NEW = {
    "job_running_lease": '("lease_expires_at") WHERE "status" = \'running\'',
    "job_queued_at": '("queued_at") WHERE "status" = \'queued\'',
    "job_finished_at": '("finished_at") WHERE "finished_at" IS NOT NULL',
}
# The old indexes, by the names Django gave them (deterministic: a hash of the table and
# columns), with their definitions for the way back.
OLD = {
    "playground__status_238543_idx": f'"{JOB}" ("status", "lease_expires_at")',
    "playground__status_6f49ca_idx": f'"{JOB}" ("status", "queued_at")',
    "job_finished_at_idx": f'"{JOB}" ("finished_at")',
    "playground_job_request_id_d7f8e9ea": f'"{JOB}" ("request_id")',
    "playground_job_request_id_d7f8e9ea_like": f'"{JOB}" ("request_id" varchar_pattern_ops)',
    "playground_job_route_id_db090547": f'"{JOB}" ("route_id")',
    "playground_jobattempt_job_id_3edab873": '"playground_jobattempt" ("job_id")',
}


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("catalog", "0006_modelstats_arithmetic"),
        ("playground", "0012_job_result_lz4"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        OnPostgreSQL(
            [
                migrations.RemoveIndex(
                    model_name="job",
                    name="playground__status_238543_idx",
                ),
                migrations.RemoveIndex(
                    model_name="job",
                    name="playground__status_6f49ca_idx",
                ),
                migrations.RemoveIndex(
                    model_name="job",
                    name="job_finished_at_idx",
                ),
                migrations.AlterField(
                    model_name="job",
                    name="request_id",
                    field=models.CharField(
                        blank=True, help_text="X-Request-Id of the request.", max_length=128
                    ),
                ),
                migrations.AlterField(
                    model_name="job",
                    name="route",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="catalog.priceroute",
                    ),
                ),
                migrations.AlterField(
                    model_name="jobattempt",
                    name="job",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="attempt_log",
                        to="playground.job",
                    ),
                ),
                migrations.AddIndex(
                    model_name="job",
                    index=models.Index(
                        condition=models.Q(("status", "running")),
                        fields=["lease_expires_at"],
                        name="job_running_lease",
                    ),
                ),
                migrations.AddIndex(
                    model_name="job",
                    index=models.Index(
                        condition=models.Q(("status", "queued")),
                        fields=["queued_at"],
                        name="job_queued_at",
                    ),
                ),
                migrations.AddIndex(
                    model_name="job",
                    index=models.Index(
                        condition=models.Q(("finished_at__isnull", False)),
                        fields=["finished_at"],
                        name="job_finished_at",
                    ),
                ),
            ],
            sql=[
                *(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"' for name in NEW),
                *(
                    f'CREATE INDEX CONCURRENTLY "{name}" ON "{JOB}" {on}'
                    for name, on in NEW.items()
                ),
                *(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"' for name in OLD),
            ],
            reverse_sql=[
                *(
                    f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" ON {on}'
                    for name, on in OLD.items()
                ),
                *(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"' for name in NEW),
            ],
        ),
    ]
