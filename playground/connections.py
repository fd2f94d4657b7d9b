"""Database connections of a worker process: kept between tasks, recycled as Django recycles
a request's.

Celery's Django fix-up closes every connection before and after each task (unless
``CELERY_DB_REUSE_MAX``, which settings set): on PostgreSQL that is a new backend, ~7 ms
here, for every job of a synchronous API call. Instead each task starts and ends with
``close_old_connections()``, as each request does: a connection older than CONN_MAX_AGE,
one whose last use raised an error, or one left in a transaction is closed; a healthy one
is kept, and checked (CONN_HEALTH_CHECKS) before its first query of the next task. A
database restart between tasks therefore costs a reconnect, never a failed job.
"""

from __future__ import annotations

from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections


@task_prerun.connect
def recycle_before_task(**kwargs) -> None:
    close_old_connections()


@task_postrun.connect
def recycle_after_task(**kwargs) -> None:
    close_old_connections()
