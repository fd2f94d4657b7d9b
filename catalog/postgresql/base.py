"""Django's PostgreSQL backend, with a pool checkout that costs no round trip when nothing
has happened on the connection since it was last used.

Web processes pool their connections (``VITRINE_DB_POOL``; settings switch ``ENGINE`` to
this package then). With ``CONN_HEALTH_CHECKS`` Django gives the pool psycopg_pool's own
check, an empty query on every checkout: a round trip before each request's first
statement, two on every synchronous inference call's path (its creation and its answer).
``pool_check`` first asks the socket: a connection the server ended (a restart,
``pg_terminate_backend``, an idle timeout) has the server's last message or its end of file
waiting there, and only then is the full check run, which fails and lets the pool open a
new connection as before. A quiet socket is handed out unchecked: a connection lost
without a word (a dead network path) is not found by the empty query either, which would
wait on it just the same.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql.base import DatabaseWrapper as PostgresWrapper
from psycopg import OperationalError
from psycopg_pool import ConnectionPool


def pool_check(conn) -> None:
    """Raise when the connection is gone; the round trip only when its socket has news."""
    if conn.closed or conn.broken:
        raise OperationalError("the connection is closed")
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    if poller.poll(0):
        ConnectionPool.check_connection(conn)


class DatabaseWrapper(PostgresWrapper):
    @property
    def pool(self):
        pool = super().pool
        # Django passes psycopg_pool's check when CONN_HEALTH_CHECKS is on; this one instead.
        if pool is not None and pool._check is ConnectionPool.check_connection:
            pool._check = pool_check
        return pool
