"""Links between the hosts that go silent without closing (session 43's network probe).

A half-open TCP connection (a partition, a peer or middlebox gone without a word) delivers
nothing and reports nothing: a client that only waits on it waits for ever. These tests put
a real forwarder between a process and its server and make the connections it carries go
silent (what is sent is swallowed, nothing comes back, nothing is closed), while new
connections through it work, as after a partition that healed for new flows only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests import factories
from tests.conftest import REPO, database_url, wait_for
from tests.playground.test_limits_across_processes import free_port, http
from tests.tcp_gate import TcpGate


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the web's PostgreSQL pool")
@pytest.mark.django_db(transaction=True)
def test_healthz_answers_503_when_its_database_link_went_silent(broker_url, tmp_path):
    """A web process (uvicorn, its PostgreSQL pool) whose connections to the database went
    silent: /healthz answers 503 (its probe's answer waited HEALTH_DB_WAIT), the silent
    connections are closed, and it answers 200 again on new ones. Before session 43 the
    probe waited on the silent connection for as long as the silence lasted (for ever on a
    connection that never comes back): a load balancer saw a hung probe, not a 503."""
    params = connection.settings_dict
    gate = TcpGate((params["HOST"] or "127.0.0.1", int(params["PORT"] or 5432)), open=True)
    url = database_url(params).replace(
        f"{params['HOST'] or 'localhost'}:{params['PORT'] or 5432}", f"127.0.0.1:{gate.port}"
    )
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": broker_url,
        "VITRINE_JOB_STORAGE": str(tmp_path / "jobs"),
        "VITRINE_DB_POOL": "1",
        "PYTHONUNBUFFERED": "1",
    }
    argv = [sys.executable, "-m", "uvicorn", "config.asgi:application"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with Path(tmp_path / "web.log").open("wb") as log:
        web = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def status() -> int | None:
        try:
            return http("GET", f"{base}/healthz")[0]
        except OSError:
            return None

    try:
        wait_for(lambda: status() == 200, timeout=60, message="the web process did not start")
        gate.silence()
        code, headers, _ = http("GET", f"{base}/healthz")  # urllib's 60 s: far above 2 s
        assert (code, headers["Retry-After"]) == (503, "5")
        wait_for(lambda: status() == 200, timeout=60, message="healthz did not recover")
    finally:
        web.terminate()
        try:
            web.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a request held on a silent connection
            web.kill()
            web.wait(timeout=30)
        gate.close()


HOLDER = """
import sys, django
django.setup()
from django.contrib.auth import get_user_model
from django.db import connection, transaction
with transaction.atomic():
    get_user_model().objects.select_for_update().get(pk=int(sys.argv[1]))
    print("locked", flush=True)
    sys.stdin.readline()  # the test silences the link meanwhile
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")  # sent into the silence: never answered
"""


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's sessions")
@pytest.mark.django_db(transaction=True)
def test_a_transaction_whose_link_went_silent_gives_its_locks_back(broker_url, tmp_path):
    """A process (the app's settings) locks an account's user row in a transaction, as a
    call's reservation does, and its link to the database goes silent: the server ends the
    session once it has been idle in its transaction VITRINE_DB_IDLE_IN_TRANSACTION_TIMEOUT
    seconds, and another session takes the lock. Before session 43 the lock was held until
    the server's TCP keepalive gave up (2 h by default): every call of that account on every
    web process, and every worker posting its charges, waited on it."""
    user = factories.user()
    params = connection.settings_dict
    gate = TcpGate((params["HOST"] or "127.0.0.1", int(params["PORT"] or 5432)), open=True)
    url = database_url(params).replace(
        f"{params['HOST'] or 'localhost'}:{params['PORT'] or 5432}", f"127.0.0.1:{gate.port}"
    )
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": broker_url,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "VITRINE_DB_IDLE_IN_TRANSACTION_TIMEOUT": "2",
    }
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(user.pk)],
        cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        gate.silence()
        holder.stdin.write("\n")
        holder.stdin.flush()
        with connection.cursor() as cursor:
            # A liveness bound far above the 2 s: past it, the lock is still held.
            cursor.execute("SET lock_timeout = '60s'")
            cursor.execute("SELECT id FROM auth_user WHERE id = %s FOR UPDATE", [user.pk])
            assert cursor.fetchone() == (user.pk,)
            cursor.execute("SET lock_timeout = 0")
    finally:
        holder.kill()
        holder.wait(timeout=30)
        gate.close()
