"""catalog.db.prepared_row, the hot paths' prepared statements, on PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from catalog.db import prepared_row
from tests.conftest import database_url

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
    with psycopg.connect(database_url(connection.settings_dict), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [dead])
    connection.close_if_unusable_or_obsolete()  # what each task and request starts with
    assert prepared_row("SELECT %s::integer", [2]) == (2,)
    assert prepared_row("SELECT pg_backend_pid()", [])[0] != dead
