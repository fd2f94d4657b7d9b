"""``GET /metrics``: Prometheus's scrape of the serving path's state, read from the job
rows (playground/metrics.py). Parsed with prometheus_client's own parser, as Prometheus
reads it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from playground.models import Job, JobStatus, WebhookDelivery
from tests import factories
from tests.config.test_settings import load_settings
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
TOKEN = "metrics-token-0123456789"
AUTH = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", **(AUTH | headers))
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def job(card, **fields) -> Job:
    values = {
        "card": card,
        "image_sha256": "0" * 64,
        "image_bytes": 100,
        "original_width": 10,
        "original_height": 10,
        "width": 10,
        "height": 10,
        "queue": "cpu",
    } | fields
    return Job.objects.create(**values)


@pytest.mark.django_db
def test_no_token_configured_means_no_such_page(client):
    assert client.get("/metrics", **AUTH).status_code == 404


@pytest.mark.django_db
@override_settings(VITRINE_METRICS_TOKEN=TOKEN)
@pytest.mark.parametrize(
    "authorization",
    [None, f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN[:-1]}", "Bearer é"],
)
def test_a_missing_or_wrong_token_is_refused(client, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = client.get("/metrics", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert response.json()["error"]["code"] == "invalid_metrics_token"
    assert "vitrine_" not in response.content.decode()


@pytest.mark.django_db
@override_settings(VITRINE_METRICS_TOKEN=TOKEN)
def test_the_figures_are_the_job_rows(client):
    now = timezone.now()
    detr = factories.card(slug="detr-x")
    yolos = factories.card(slug="yolos-x")
    # In flight: two queued (the older one's message never sent), two running (one past
    # its lease), with a webhook waiting for one of them.
    job(detr, queued_at=now - timedelta(seconds=90), enqueued_at=None)
    job(detr, queued_at=now - timedelta(seconds=5), enqueued_at=now)
    running = job(
        yolos, status=JobStatus.RUNNING, worker="w1:11", started_at=now,
        lease_expires_at=now + timedelta(minutes=5),
    )  # fmt: skip
    job(
        yolos, status=JobStatus.RUNNING, worker="w2:22", started_at=now,
        lease_expires_at=now - timedelta(minutes=1),
    )  # fmt: skip
    WebhookDelivery.objects.create(job=running, url="https://example.com/hook")
    # Finished in the window: three succeeded (model times 0.1, 0.2, 0.3 s; queue waits
    # 1, 2, 3 s), one failed; and one succeeded ten minutes ago, outside it.
    for i in (1, 2, 3):
        job(
            detr, status=JobStatus.SUCCEEDED, worker="w1:11", result=[],
            queued_at=now - timedelta(seconds=10 + i), started_at=now - timedelta(seconds=10),
            finished_at=now - timedelta(seconds=i), timings={"forward": i / 10},
        )  # fmt: skip
    job(
        detr, status=JobStatus.FAILED, worker="w3:33", error_code="image_unreadable",
        finished_at=now - timedelta(seconds=30),
    )  # fmt: skip
    job(
        detr, status=JobStatus.SUCCEEDED, worker="w9:99", result=[],
        queued_at=now - timedelta(minutes=11), started_at=now - timedelta(minutes=11),
        finished_at=now - timedelta(minutes=10), timings={"forward": 9.0},
    )  # fmt: skip
    d, y = detr.model_id, yolos.model_id

    figures = scrape(client)

    assert figures[("vitrine_database_up", ())] == 1
    assert figures[("vitrine_metrics_window_seconds", ())] == 300
    assert figures[("vitrine_jobs_in_flight", (("model", d), ("status", "queued")))] == 2
    assert figures[("vitrine_jobs_in_flight", (("model", y), ("status", "running")))] == 2
    assert 90 <= figures[("vitrine_jobs_queued_oldest_age_seconds", ())] < 90 + 300
    assert figures[("vitrine_jobs_queued_unsent", ())] == 1
    assert figures[("vitrine_jobs_running_past_lease", ())] == 1
    assert figures[("vitrine_webhook_deliveries", (("status", "waiting"),))] == 1
    assert figures[("vitrine_webhook_deliveries", (("status", "pending"),))] == 0
    finished = {
        labels: value for (name, labels), value in figures.items()
        if name == "vitrine_jobs_finished_recent"
    }  # fmt: skip
    assert finished == {
        (("error_code", ""), ("model", d), ("status", "succeeded")): 3,
        (("error_code", "image_unreadable"), ("model", d), ("status", "failed")): 1,
    }
    # w1 (running and finished), w2 (running), w3 (finished); not w9 (outside the window).
    assert figures[("vitrine_worker_processes_recent", ())] == 3

    def seconds(stage, q):
        key = (("model", d), ("quantile", q), ("stage", stage))
        return figures[("vitrine_job_seconds_recent", key)]

    assert seconds("model", "0.5") == pytest.approx(0.2)
    assert seconds("model", "0.95") == pytest.approx(0.29)
    assert seconds("queue", "0.5") == pytest.approx(2.0)
    assert seconds("queue", "0.95") == pytest.approx(2.9)
    assert not any(
        labels and labels[0] == ("model", y) for (n, labels) in figures if "seconds" in n
    )


@pytest.mark.django_db
@override_settings(VITRINE_METRICS_TOKEN=TOKEN)
def test_openmetrics_when_asked_for(client):
    response = client.get(
        "/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0", **AUTH
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().endswith("# EOF\n")


@pytest.mark.same_on_any_database
def test_the_database_down_is_a_figure_not_an_error():
    """Prometheus reads 200 with ``vitrine_database_up 0`` (an exporter's dependency down),
    within the health check's 2 s wait, and no figure that would read as a zero."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env |= {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "1",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/nowhere",
        "VITRINE_METRICS_TOKEN": TOKEN,
    }
    probe = (
        "import django, json; django.setup()\n"
        "from django.test import Client\n"
        f"r = Client().get('/metrics', HTTP_AUTHORIZATION='Bearer {TOKEN}')\n"
        "print(json.dumps([r.status_code, r.content.decode()]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    status, body = json.loads(out.stdout.strip().splitlines()[-1])
    assert status == 200
    samples = [s for f in text_string_to_metric_families(body) for s in f.samples]
    assert [(s.name, s.value) for s in samples] == [("vitrine_database_up", 0.0)]


@pytest.mark.same_on_any_database
@pytest.mark.parametrize(
    "token", ["short-token", "a token with spaces in it", "tökentökentökentöken"]
)
def test_a_weak_or_odd_token_stops_start_up(token):
    result = load_settings(VITRINE_METRICS_TOKEN=token)
    assert result.returncode != 0
    assert "VITRINE_METRICS_TOKEN must be at least 16 printable ASCII" in result.stderr


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the planner's plan")
@override_settings(VITRINE_METRICS_TOKEN=TOKEN)
def test_no_read_of_a_scrape_walks_the_job_table(client):
    """A scrape every 15 s must not read the year of finished jobs: each statement on the
    jobs or the deliveries is served by an index (planned with sequential scans disabled,
    as a tiny test table is otherwise read whole whatever its indexes)."""
    job(factories.card(), status=JobStatus.SUCCEEDED, result=[], finished_at=timezone.now())
    with CaptureQueriesContext(connection) as ctx:
        scrape(client)
    reads = [
        q["sql"] for q in ctx.captured_queries
        if "playground_job" in q["sql"] or "playground_webhookdelivery" in q["sql"]
    ]  # fmt: skip
    assert len(reads) >= 8
    for sql in reads:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "Seq Scan on playground_job" not in plan, (sql, plan)
        assert "Seq Scan on playground_webhookdelivery" not in plan, (sql, plan)


@pytest.mark.django_db
@override_settings(VITRINE_METRICS_TOKEN=TOKEN)
@pytest.mark.parametrize("url", ["/metrics", "/healthz"])
def test_another_method_is_a_405_not_a_csrf_refusal(url):
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post(url, **AUTH)
    assert response.status_code == 405
