"""Measured latency: the beat task turns real job rows into ModelStats; pages show them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog.cache import catalog_version
from catalog.models import ModelStats
from playground import services
from playground.models import Job, JobStatus
from playground.tasks import refresh_model_stats
from tests import factories

pytestmark = pytest.mark.django_db


def finished_job(card, *, queue_s: float, forward_s: float, age=timedelta(hours=1), route=None,
                 status=JobStatus.SUCCEEDED, precision="fp32") -> Job:  # fmt: skip
    """A job row as a worker leaves it: claimed ``queue_s`` after it was queued, finished
    ``age`` ago with the detector's stage timings."""
    finished = timezone.now() - age
    started = finished - timedelta(seconds=forward_s)
    return Job.objects.create(
        card=card,
        route=route,
        image_sha256="0" * 64,
        image_bytes=10,
        original_width=8,
        original_height=8,
        width=8,
        height=8,
        queue="cpu",
        status=status,
        queued_at=started - timedelta(seconds=queue_s),
        started_at=started,
        finished_at=finished,
        attempts=1,
        result=[] if status == JobStatus.SUCCEEDED else None,
        timings={"decode": 0.0, "preprocess": 0.0, "forward": forward_s, "postprocess": 0.0,
                 "batch": 1},
        runtime_precision=precision,
    )  # fmt: skip


@pytest.fixture
def card():
    card = factories.card(display_name="Measured model")
    factories.route(card=card)
    return card


def test_the_beat_task_computes_percentiles_from_recent_succeeded_jobs(card, settings):
    for n in range(1, 11):  # queue waits 0.1..1.0 s, model times 1..10 s
        finished_job(card, queue_s=n / 10, forward_s=n)
    # None of these count: too old, failed, or run by a provider (not Vitrine's workers).
    finished_job(card, queue_s=99, forward_s=99, age=timedelta(days=8))
    finished_job(card, queue_s=99, forward_s=99, status=JobStatus.FAILED)
    provider = factories.route(card=card, slug="cloudflare", provider="Cloudflare", is_own=False)
    finished_job(card, queue_s=99, forward_s=99, route=provider)
    idle = factories.card()  # no jobs

    assert refresh_model_stats() == {"cards": 1, "changed": 1}

    stats = ModelStats.objects.get(card=card)
    assert stats.runs_7d == 10
    assert (stats.queue_p50_ms, stats.queue_p95_ms) == (550, 955)
    assert (stats.model_p50_ms, stats.model_p95_ms) == (5500, 9550)
    assert stats.arithmetic == "fp32"
    assert not ModelStats.objects.filter(card=idle).exists()


def test_the_page_says_what_arithmetic_the_measured_runs_used(
    client, card, settings, django_capture_on_commit_callbacks
):
    settings.VITRINE_STATS_MIN_RUNS = 1
    for n in range(1, 4):
        finished_job(card, queue_s=0.1, forward_s=n)
    refresh_model_stats()
    page = client.get(f"/models/{card.model_id}").content.decode()
    assert 'computed in <span id="measured-arithmetic">fp32</span>' in page
    assert "mixed arithmetic" not in page
    # A worker switched to the int8 variant: its runs are faster, and the page says they mix.
    finished_job(card, queue_s=0.1, forward_s=0.5, precision="int8")
    finished_job(card, queue_s=0.1, forward_s=0.5, precision="")  # before provenance existed
    with django_capture_on_commit_callbacks(execute=True):  # the cached page is dropped
        assert refresh_model_stats()["changed"] == 1
    assert ModelStats.objects.get(card=card).arithmetic == "fp32, int8"
    page = client.get(f"/models/{card.model_id}").content.decode()
    assert '<span id="measured-arithmetic">fp32, int8</span>' in page
    assert "mixed arithmetic" in page


def test_only_a_change_invalidates_the_cached_pages(card, django_capture_on_commit_callbacks):
    def refresh():
        with django_capture_on_commit_callbacks(execute=True):  # the bump waits for commit
            return refresh_model_stats()

    finished_job(card, queue_s=0.2, forward_s=0.5)
    version = catalog_version()
    refresh()
    assert catalog_version() == version + 1
    refreshed = ModelStats.objects.get(card=card).refreshed_at

    assert refresh() == {"cards": 1, "changed": 0}
    assert catalog_version() == version + 1  # nothing a page shows changed
    assert ModelStats.objects.get(card=card).refreshed_at > refreshed

    finished_job(card, queue_s=0.4, forward_s=0.9)
    assert refresh() == {"cards": 1, "changed": 1}
    assert catalog_version() == version + 2
    assert ModelStats.objects.get(card=card).runs_7d == 2


def test_a_model_whose_runs_aged_out_goes_back_to_zero(card):
    job = finished_job(card, queue_s=0.2, forward_s=0.5)
    refresh_model_stats()
    Job.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(days=8))
    refresh_model_stats()
    stats = ModelStats.objects.get(card=card)
    assert (stats.runs_7d, stats.model_p50_ms, stats.queue_p95_ms) == (0, None, None)


def test_the_sample_is_bounded_to_the_newest_jobs(card, settings):
    settings.VITRINE_STATS_SAMPLE = 3
    for n in range(1, 6):  # the newest three have model times 1, 2, 3 s
        finished_job(card, queue_s=0, forward_s=n, age=timedelta(minutes=n))
    refresh_model_stats()
    stats = ModelStats.objects.get(card=card)
    assert stats.runs_7d == 5  # the count stays exact
    assert stats.model_p50_ms == 2000


def test_a_job_run_by_the_worker_code_is_measured(card):
    """Through the services a worker calls: claim (started_at) then succeed (timings)."""
    job = Job.objects.create(
        card=card, image_sha256="0" * 64, image_bytes=10, original_width=8,
        original_height=8, width=8, height=8, queue="cpu",
    )  # fmt: skip
    claimed = services.job_claim(job_id=job.pk, worker="test:1")
    services.job_succeed(job=claimed, result=[], timings={"preprocess": 0.25, "forward": 0.5})
    refresh_model_stats()
    stats = ModelStats.objects.get(card=card)
    assert (stats.runs_7d, stats.model_p50_ms) == (1, 750)
    assert stats.queue_p50_ms is not None


def test_the_model_page_shows_the_figures_in_a_bounded_number_of_queries(
    client, card, settings, django_assert_max_num_queries
):
    settings.VITRINE_STATS_MIN_RUNS = 3
    for n in range(1, 5):
        finished_job(card, queue_s=n / 10, forward_s=n / 10)
    refresh_model_stats()
    with django_assert_max_num_queries(20):
        page = client.get(f"/models/{card.model_id}").content.decode()
    assert "Latency measured on Vitrine" in page
    assert '<span id="measured-runs">4</span> runs' in page
    assert '<td class="num">250 ms</td>' in page  # queue p50 of 0.1..0.4 s
    assert '<td class="num">385 ms</td>' in page  # p95


def test_the_page_query_count_does_not_grow_with_the_stats(
    client, card, django_assert_num_queries, django_capture_on_commit_callbacks
):
    url = f"/models/{card.model_id}"
    with CaptureQueriesContext(connection) as without:
        assert client.get(url)["X-Cache"] == "miss"
    finished_job(card, queue_s=0.1, forward_s=0.1)
    with django_capture_on_commit_callbacks(execute=True):
        refresh_model_stats()  # bumps the catalogue version: the next view renders again
    with django_assert_num_queries(len(without)):
        response = client.get(url)
    assert response["X-Cache"] == "miss"
    assert "(1 so far)" in response.content.decode()


def test_below_the_minimum_the_page_says_not_enough_runs(client, card, settings):
    settings.VITRINE_STATS_MIN_RUNS = 5
    finished_job(card, queue_s=0.1, forward_s=0.1)
    refresh_model_stats()
    page = client.get(f"/models/{card.model_id}").content.decode()
    assert "Not enough runs yet" in page and "(1 so far)" in page
    assert 'id="measured-runs"' not in page


def test_a_new_model_says_not_enough_runs_without_a_stats_row(client, card):
    page = client.get(f"/models/{card.model_id}").content.decode()
    assert "Not enough runs yet" in page


def test_the_beat_schedule_runs_the_task_at_the_configured_interval(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["refresh-model-stats"]
    assert entry["task"] == refresh_model_stats.name
    assert entry["schedule"] == float(settings.VITRINE_STATS_INTERVAL)
