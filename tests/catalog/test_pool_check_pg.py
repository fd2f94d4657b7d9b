"""Connection checks without a round trip unless the socket has news
(catalog/postgresql/base.py): the web processes' pool on checkout, and a kept connection's
CONN_HEALTH_CHECKS (a worker's, before each task's first statement). A connection the
server ended is still replaced before anyone uses it; a quiet one is used without the
empty query or the SELECT 1."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.backends.postgresql.base import DatabaseWrapper as PostgresWrapper
from psycopg_pool import ConnectionPool

from catalog.postgresql.base import DatabaseWrapper, pool_check
from tests.conftest import terminate_and_wait

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the checks are PostgreSQL's"),
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


def count_runs(monkeypatch, owner, name: str, connection_of, *, static: bool = False) -> list:
    """The backend pid of each connection ``owner.name`` (a check) runs on; it still runs."""
    calls = []
    real = getattr(owner, name)

    def counted(subject):
        calls.append(connection_of(subject).info.backend_pid)
        return real(subject)

    monkeypatch.setattr(owner, name, staticmethod(counted) if static else counted)
    return calls


@pytest.fixture
def full_checks(monkeypatch):
    """psycopg_pool's own check (the empty query), counted."""
    return count_runs(monkeypatch, ConnectionPool, "check_connection", lambda c: c, static=True)


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
    terminate_and_wait(dead)
    assert backend_pid(pooled) != dead  # no error: a new connection
    assert full_checks == [dead]  # the news was checked, and the check failed


@pytest.fixture
def kept():
    """A worker's database wrapper: one kept connection (CONN_MAX_AGE), health checks on."""
    settings_dict = {
        **connection.settings_dict,
        "ENGINE": "catalog.postgresql",
        "CONN_MAX_AGE": 600,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {},
    }
    wrapper = DatabaseWrapper(settings_dict, alias="kept-check-test")
    yield wrapper
    wrapper.close()


@pytest.fixture
def select_ones(monkeypatch):
    """Django's own health check (a SELECT 1), counted."""
    return count_runs(monkeypatch, PostgresWrapper, "is_usable", lambda w: w.connection)


def test_a_kept_quiet_connection_starts_a_task_without_the_select_1(kept, select_ones):
    first = backend_pid(kept)
    kept.close_if_unusable_or_obsolete()  # what each task (and request) starts with
    assert backend_pid(kept) == first
    assert select_ones == []


def test_a_kept_connection_the_server_ended_is_replaced_before_a_tasks_first_statement(
    kept, select_ones
):
    dead = backend_pid(kept)
    terminate_and_wait(dead)
    kept.close_if_unusable_or_obsolete()
    assert backend_pid(kept) != dead
    assert select_ones == [dead]  # the news was checked, and the check failed


def test_after_a_long_outage_the_pool_reconnects_within_seconds_of_the_database(pooled):
    """psycopg_pool doubled its wait between reconnection attempts without a ceiling (1, 2,
    4, 8, 16 s...): after a 17 s outage its next attempt came 11-17 s after the database
    was back (~34 s after a 90 s outage, of 503s). Capped at 2 s (CappedBackoff): a
    connection within 8 s of the database's return, with room."""
    import time

    from psycopg_pool import PoolTimeout

    from tests.tcp_gate import TcpGate

    settings_dict = connection.settings_dict
    gate = TcpGate(
        (settings_dict.get("HOST") or "127.0.0.1", int(settings_dict.get("PORT") or 5432))
    )
    gate.open.set()
    wrapper = DatabaseWrapper(
        {**pooled.settings_dict, "HOST": "127.0.0.1", "PORT": gate.port}, alias="outage-test"
    )
    try:
        pool = wrapper.pool
        pool.open(wait=True, timeout=10)
        gate.shut()  # the database restarts and stays down
        with pytest.raises(PoolTimeout):
            pool.getconn(timeout=1)  # the pooled connection fails its check; attempts begin
        time.sleep(16)
        gate.open.set()
        conn = pool.getconn(timeout=8)
        try:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            pool.putconn(conn)
    finally:
        wrapper.close_pool()
        gate.close()


def test_the_pools_wait_between_attempts_is_capped():
    from catalog.postgresql.base import RECONNECT_MAX_DELAY, CappedBackoff

    attempt = CappedBackoff(timeout=300)
    delays = []
    for second in range(10):
        attempt.update_delay(float(second))
        delays.append(attempt.delay)
    assert delays[0] <= 1.1  # psycopg_pool's first wait, jittered
    assert delays[1] <= RECONNECT_MAX_DELAY
    assert delays[2:] == [RECONNECT_MAX_DELAY] * 8  # doubled, then held at the cap
    import psycopg_pool.pool

    assert psycopg_pool.pool.AttemptWithBackoff is CappedBackoff
