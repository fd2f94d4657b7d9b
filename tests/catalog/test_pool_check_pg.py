"""The web processes' pool checks a connection on checkout without a round trip, unless
its socket has news (catalog/postgresql/base.py): a connection the server ended is still
replaced before anyone uses it; a quiet one is handed out without the empty query."""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import connection
from psycopg_pool import ConnectionPool

from catalog.postgresql.base import DatabaseWrapper, pool_check
from tests.conftest import database_url

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the pool is PostgreSQL's"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def pooled():
    """A web process's database wrapper: the settings VITRINE_DB_POOL gives (one
    connection, so each checkout hands out the one just returned)."""
    settings_dict = {
        **connection.settings_dict,
        "ENGINE": "catalog.postgresql",
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {"pool": {"min_size": 1, "max_size": 1, "timeout": 10}},
    }
    wrapper = DatabaseWrapper(settings_dict, alias="pool-check-test")
    yield wrapper
    wrapper.close()
    wrapper.close_pool()


@pytest.fixture
def full_checks(monkeypatch):
    """Counts psycopg_pool's own check (the empty query) each time it runs, and runs it."""
    calls = []
    real = ConnectionPool.check_connection

    def counted(conn):
        calls.append(conn.info.backend_pid)
        return real(conn)

    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(counted))
    return calls


def backend_pid(wrapper) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_the_pool_uses_the_socket_check(pooled):
    assert pooled.pool._check is pool_check


def test_a_quiet_connection_is_handed_out_without_the_empty_query(pooled, full_checks):
    first = backend_pid(pooled)
    pooled.close()  # back to the pool, as at the end of a request
    assert backend_pid(pooled) == first
    assert full_checks == []


def test_a_connection_the_server_ended_is_replaced_before_its_first_statement(pooled, full_checks):
    dead = backend_pid(pooled)
    pooled.close()
    with psycopg.connect(database_url(connection.settings_dict), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [dead])
        # The server's goodbye reaches the pooled connection's socket.
        deadline = time.monotonic() + 10
        while other.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [dead]
        ).fetchone()[0]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert backend_pid(pooled) != dead  # no error: a new connection
    assert full_checks == [dead]  # the news was checked, and the check failed
