"""catalog.db.prepared_row, the hot paths' prepared statements, on PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import connection

from catalog.db import prepared_row
from tests.conftest import terminate_and_wait

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's"
)


@pytest.mark.django_db(transaction=True)
def test_a_kept_connection_that_died_is_replaced_before_the_first_statement():
    """A worker keeps its connection between tasks and checks it before a task's first
    statement (CONN_HEALTH_CHECKS); the claim, a prepared statement, is that first statement.
    After a database restart it must reconnect, as Django's own cursors do, not fail."""
    assert prepared_row("SELECT %s::integer", [1]) == (1,)
    dead = prepared_row("SELECT pg_backend_pid()", [])[0]
    terminate_and_wait(dead)
    connection.close_if_unusable_or_obsolete()  # what each task and request starts with
    assert prepared_row("SELECT %s::integer", [2]) == (2,)
    assert prepared_row("SELECT pg_backend_pid()", [])[0] != dead


@pytest.mark.django_db(transaction=True)
def test_a_prepared_statement_keeps_what_django_s_cursor_wrapper_gives():
    """prepared_row skips the wrapper's per-call layers, not what they are for: its errors
    are django.db errors, a broken atomic block refuses it, the query log and
    CaptureQueriesContext see it, and an execute wrapper (query instrumentation) wraps it."""
    from django.db import DatabaseError, transaction
    from django.db.transaction import TransactionManagementError
    from django.test.utils import CaptureQueriesContext

    with pytest.raises(DatabaseError, match="division by zero"):
        prepared_row("SELECT 1 / %s::integer", [0])
    with transaction.atomic():
        # The error leaves a block without its own savepoint: the whole block is broken.
        with pytest.raises(DatabaseError), transaction.atomic(savepoint=False):
            prepared_row("SELECT 1 / %s::integer", [0])
        with pytest.raises(TransactionManagementError):  # as a Django cursor refuses
            prepared_row("SELECT %s::integer", [1])
    with CaptureQueriesContext(connection) as queries:
        assert prepared_row("SELECT %s::integer + 1", [41]) == (42,)
    assert [q["sql"] for q in queries] == ["SELECT 41::integer + 1"]
    seen = []

    def wrapper(execute, sql, params, many, context):
        seen.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        assert prepared_row("SELECT %s::integer * 2", [21]) == (42,)
    assert seen == [("SELECT %s::integer * 2", [21])]
