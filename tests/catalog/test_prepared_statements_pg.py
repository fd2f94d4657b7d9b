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
