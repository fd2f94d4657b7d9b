"""Free tries cannot flood the queue that paid jobs wait in (probe B, many tenants).

Free tries were counted per IP and hour only: 20 addresses queued 253 free jobs in a minute
on the production stack and every paid call behind them waited minutes. All free tries
together may now have ``VITRINE_FREE_TRIES_QUEUED`` jobs waiting; past it a free try is a
503 that counts no try, and paid work is not held to it.
"""

from __future__ import annotations

import pytest
from django.test import Client

from playground.limits import FREE_TRIES_RETRY_AFTER
from playground.models import Job, JobStatus
from tests.playground.test_playground_page import JSON, card, try_url, upload  # noqa: F401

pytestmark = pytest.mark.django_db


def attempt(card, ip: str):  # noqa: F811
    return Client().post(try_url(card), {"image": upload()}, headers=JSON, REMOTE_ADDR=ip)


def test_free_tries_from_many_addresses_stop_at_the_queued_bound(
    card,  # noqa: F811
    settings,
    limits_redis,
    django_capture_on_commit_callbacks,
):
    settings.VITRINE_PLAYGROUND_PER_HOUR = 2
    settings.VITRINE_FREE_TRIES_QUEUED = 3
    with django_capture_on_commit_callbacks():
        # Five addresses, each well inside its own hourly tries.
        responses = [attempt(card, f"198.51.100.{i}") for i in range(5)]
    assert [r.status_code for r in responses] == [202, 202, 202, 503, 503]
    refused = responses[3]
    assert refused["Retry-After"] == str(FREE_TRIES_RETRY_AFTER)
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("service_unavailable", "free_tries_busy")
    assert error["message"].startswith("Free tries are busy (3 waiting for a worker).")
    assert Job.objects.filter(status=JobStatus.QUEUED).count() == 3

    # The queue drains: free tries run again, and the refused address lost no try.
    Job.objects.update(status=JobStatus.CANCELLED)
    with django_capture_on_commit_callbacks():
        again = [attempt(card, "198.51.100.3") for _ in range(3)]
    assert [r.status_code for r in again] == [202, 202, 429]


def test_paid_jobs_waiting_do_not_count_against_free_tries(
    card,  # noqa: F811
    settings,
    limits_redis,
    django_capture_on_commit_callbacks,
):
    settings.VITRINE_FREE_TRIES_QUEUED = 1
    with django_capture_on_commit_callbacks():
        assert attempt(card, "203.0.113.1").status_code == 202
    Job.objects.update(cost_ref="42")  # as a paid job's row is: it has a charge
    with django_capture_on_commit_callbacks():
        assert attempt(card, "203.0.113.2").status_code == 202
        assert attempt(card, "203.0.113.3").status_code == 503


def test_the_page_without_javascript_says_free_tries_are_busy(
    client,
    card,  # noqa: F811
    settings,
    limits_redis,
    django_capture_on_commit_callbacks,
):
    settings.VITRINE_FREE_TRIES_QUEUED = 1
    with django_capture_on_commit_callbacks():
        client.post(try_url(card), {"image": upload()})
        page = client.post(try_url(card), {"image": upload()}, follow=True)
    assert "Free tries are busy (1 waiting for a worker)." in page.content.decode()
    assert Job.objects.count() == 1
