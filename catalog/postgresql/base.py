"""Django's PostgreSQL backend, whose connection checks cost no round trip when nothing has
happened on the connection since it was last used.

Settings give every PostgreSQL database this ``ENGINE``. A connection is checked before a
request's or a task's first statement: a worker's kept connection by Django's
``CONN_HEALTH_CHECKS`` (``is_usable``: a ``SELECT 1``), a web process's pooled one on
checkout (``VITRINE_DB_POOL``; psycopg_pool's check: an empty query). That was a round trip
on every synchronous inference call's path three times (its creation and its answer in the
web process, its claim in the worker). Both checks here first ask the socket: a connection
the server ended (a restart, ``pg_terminate_backend``, an idle timeout) has the server's last
message or its end of file waiting there, and only then is the full check run, which fails,
so the connection is replaced before anyone uses it, as before. A quiet socket is used
unchecked: a connection lost without a word (a dead network path) is not found by the round
trip either, which would wait on it just the same.

The pool's reconnection after an outage waits 2 s at most between attempts
(``CappedBackoff``): psycopg_pool doubles its wait without a ceiling (1, 2, 4, ... 64 s),
so a web process kept answering ``503 database_unavailable`` for ~34 s after a 90 s
PostgreSQL outage had ended.
"""

from __future__ import annotations

import select

import psycopg_pool.pool
from django.db.backends.postgresql.base import DatabaseWrapper as PostgresWrapper
from psycopg_pool import ConnectionPool
from psycopg_pool.base import AttemptWithBackoff

# The longest wait between two attempts to reconnect, in seconds. A failed attempt on a
# database that is down costs a refused TCP connection; one that is back is found within
# this.
RECONNECT_MAX_DELAY = 2.0


class CappedBackoff(AttemptWithBackoff):
    """psycopg_pool's exponential backoff (1 s, doubled on each failure, up to its
    ``reconnect_timeout``), its wait capped at ``RECONNECT_MAX_DELAY``."""

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_MAX_DELAY)


# psycopg_pool has no setting for it: the sync pool (Django's) makes its attempts from this
# module's name (tests/catalog/test_pool_check_pg.py proves it on a real outage).
psycopg_pool.pool.AttemptWithBackoff = CappedBackoff


def has_news(conn) -> bool:
    """True when something waits on the connection's socket (or it is closed or broken):
    an idle connection in good health has nothing to read."""
    if conn.closed or conn.broken:
        return True
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def pool_check(conn) -> None:
    """The pool's checkout check: raise when the connection is gone; the round trip only when
    its socket has news (a closed or broken connection's empty query raises at once)."""
    if has_news(conn):
        ConnectionPool.check_connection(conn)


class DatabaseWrapper(PostgresWrapper):
    def is_usable(self) -> bool:
        if self.connection is None:
            return False
        if not has_news(self.connection):
            return True
        return super().is_usable()

    @property
    def pool(self):
        pool = super().pool
        # Django passes psycopg_pool's check when CONN_HEALTH_CHECKS is on; this one instead.
        if pool is not None and pool._check is ConnectionPool.check_connection:
            pool._check = pool_check
        return pool
