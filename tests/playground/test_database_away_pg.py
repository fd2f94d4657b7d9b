"""A synchronous call whose database goes away after its job was made: the job runs (and
is charged) once the database is back, so the call answers 202 with the job to poll, never
a 503 that tells its caller to send it again (a second job, paid twice). PostgreSQL: the
database refuses connections (ALLOW_CONNECTIONS false) and its sessions are ended, as a
restart does."""

from __future__ import annotations

import contextlib
import threading
import time
from decimal import Decimal

import psycopg
import pytest
from django.db import connection
from django.test import Client

from billing.services.keys import api_key_create
from billing.services.topups import credit_grant
from playground.models import Job, JobStatus
from tests import factories
from tests.conftest import _reset_producer_pool
from tests.playground.test_serving_faults import photo

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL outage"),
    pytest.mark.django_db(transaction=True),
]


def _connect(dbname: str) -> psycopg.Connection:
    params = connection.settings_dict
    return psycopg.connect(
        dbname=dbname,
        host=params["HOST"] or None,
        port=params["PORT"] or None,
        user=params["USER"] or None,
        password=params["PASSWORD"] or None,
        autocommit=True,
    )


def sessions(dbname: str) -> set[int]:
    with _connect("postgres") as admin:
        rows = admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [dbname])
        return {pid for (pid,) in rows}


@contextlib.contextmanager
def database_away(dbname: str, *, end: set[int]):
    """The database refuses new connections, and the sessions ``end`` (the ones the call
    under test holds) are ended, as a restart ends them; back as it was afterwards. Other
    tests' and threads' sessions are left alone: ended, they broke a later test's first
    statement ("terminating connection")."""
    admin = _connect("postgres")
    try:
        admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
        for pid in end:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        yield
    finally:
        admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        admin.close()


def answered_through_an_outage(call):
    """``call()``'s answer, its database away from just after the call made its job (the
    job's row committed: the call then waits for it) until the call answered."""
    dbname = connection.settings_dict["NAME"]
    answered = {}
    before = sessions(dbname)  # this test's, other threads': left alone
    thread = threading.Thread(target=lambda: answered.update(response=call()))
    with _connect(dbname) as watcher:
        thread.start()
        for _ in range(600):
            if watcher.execute(f"SELECT count(*) FROM {Job._meta.db_table}").fetchone()[0]:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the call made no job")
        mine = {watcher.info.backend_pid}
    with database_away(dbname, end=sessions(dbname) - before - mine):
        thread.join(timeout=60)
    assert not thread.is_alive()
    return answered["response"]


def test_an_api_call_of_a_signed_in_browser_while_the_database_is_away_is_a_json_503(
    other_user,
):
    browser = Client(raise_request_exception=False)
    browser.force_login(other_user)  # a session cookie: the middlewares read its user
    own = connection.connection.info.backend_pid  # the request runs on this thread
    try:
        with database_away(connection.settings_dict["NAME"], end={own}):
            response = browser.get("/v1/jobs", headers={"Authorization": "Bearer vt_x_y"})
    finally:
        connection.close()  # its session was ended
    assert response.status_code == 503, response.content[:200]
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "database_unavailable"


def test_a_page_of_a_signed_in_browser_while_the_database_is_away_is_the_sites_503(
    other_user, settings
):
    """A page (not the API) whose database is away: the site's 503 page, saying it is brief
    and to reload, with Retry-After and not cached. Before session 44 it was the 500 page
    ("something went wrong on our side"), which is a bug's page, and a crawler or a proxy
    saw an error rather than a moment's unavailability (session 43's outside probe saw it
    2-3 times while the database refused connections)."""
    settings.DEBUG = False
    browser = Client(raise_request_exception=False)
    browser.force_login(other_user)  # the middlewares read its session and user
    own = connection.connection.info.backend_pid
    try:
        with database_away(connection.settings_dict["NAME"], end={own}):
            response = browser.get("/models")
    finally:
        connection.close()
    assert response.status_code == 503, response.content[:200]
    assert response["Content-Type"].startswith("text/html")
    assert response["Retry-After"] == "2" and response["Cache-Control"] == "no-store"
    page = response.content.decode()
    assert "<h1>Vitrine is briefly unavailable</h1>" in page
    assert 'href="/docs/api"' in page  # the site's page, with where to go from here
    # Back: the same browser's page answers.
    assert browser.get("/models").status_code == 200


def test_a_sync_call_whose_database_goes_away_answers_202_with_its_job(
    client, settings, broker_url, tmp_path, other_user
):
    from config.celery import app
    from config.settings.env import redis_client_url

    previous = app.conf.broker_url
    _reset_producer_pool(app)
    app.conf.broker_url = settings.CELERY_BROKER_URL = broker_url  # the job's message goes
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_REDIS_URL = redis_client_url(broker_url)
    settings.VITRINE_SYNC_WAIT = 3  # no worker runs: the wait runs out with the database away
    card = factories.card()
    factories.route(card=card, price=Decimal("0.0002"))
    credit_grant(user=other_user, amount=Decimal("1"), reason="test")
    _, key = api_key_create(user=other_user, name="outage")
    try:
        response = answered_through_an_outage(
            lambda: client.post(
                f"/v1/inference/{card.model_id}",
                data=photo(),
                content_type="image/jpeg",
                headers={"Authorization": f"Bearer {key}"},
            )
        )
    finally:
        _reset_producer_pool(app)
        app.conf.broker_url = previous
    assert response.status_code == 202, response.content
    body = response.json()
    assert response["X-Vitrine-Job-Id"] == body["id"]
    assert response["Location"] == body["url"] and body["url"].endswith(f"/v1/jobs/{body['id']}")
    assert body["status"] == JobStatus.QUEUED
    # The job is there and runs once a worker takes it: the caller polls it, pays once.
    job = Job.objects.get(pk=body["id"])
    assert job.status == JobStatus.QUEUED and Job.objects.count() == 1
