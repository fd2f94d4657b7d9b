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
