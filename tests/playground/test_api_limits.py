"""The paid API's abuse limits: calls per key, per account, per model; jobs in flight.

These run in-process against the session's real Redis (the limiter's production store);
tests/playground/test_limits_across_processes.py runs two web processes sharing it.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import Charge
from billing.services.keys import api_key_create
from billing.services.topups import credit_grant
from catalog.models import ModelCard
from playground.models import Job, JobStatus
from tests import factories
from tests.playground.test_inference_api import call, jpeg

pytestmark = pytest.mark.django_db
ASYNC = {"Prefer": "respond-async"}
PRICE = Decimal("0.0002")


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"


@pytest.fixture
def card(db):
    card = factories.card(display_name="DETR ResNet-50")
    factories.route(card=card, price=PRICE)
    return card


@pytest.fixture
def funded(other_user):
    key, plaintext = api_key_create(user=other_user, name="ci")
    credit_grant(user=other_user, amount=Decimal("1.00"), reason="test")
    return {"user": other_user, "key": key, "auth": f"Bearer {plaintext}"}


def second_key(account) -> dict:
    key, plaintext = api_key_create(user=account["user"], name="second")
    return {**account, "key": key, "auth": f"Bearer {plaintext}"}


def assert_rate_limited(response, code: str = "rate_limit_exceeded") -> dict:
    assert response.status_code == 429
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code", "param"}
    assert (body["error"]["type"], body["error"]["code"]) == ("rate_limit_error", code)
    assert int(response["Retry-After"]) >= 1
    return body["error"]


def test_calls_per_key_are_limited_with_ratelimit_headers(
    client, card, funded, settings, limits_redis, django_capture_on_commit_callbacks
):
    settings.VITRINE_API_RATE_PER_MINUTE = 3
    with django_capture_on_commit_callbacks():
        responses = [call(client, card, funded, jpeg(), **ASYNC) for _ in range(5)]
    assert [r.status_code for r in responses] == [202, 202, 202, 429, 429]
    assert [r["RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0", "0"]
    assert {r["RateLimit-Limit"] for r in responses} == {"3"}
    assert all(0 < int(r["RateLimit-Reset"]) <= 60 for r in responses)
    error = assert_rate_limited(responses[3])
    assert error["message"].startswith("This API key made 3 calls in the last minute")
    assert 1 <= int(responses[3]["Retry-After"]) <= 60
    # A refused call queues nothing and holds no money.
    assert Job.objects.count() == 3 and Charge.objects.count() == 3


def test_calls_per_account_are_limited_across_its_keys(
    client, card, funded, settings, limits_redis, django_capture_on_commit_callbacks
):
    settings.VITRINE_API_RATE_PER_MINUTE = 10
    settings.VITRINE_ACCOUNT_RATE_PER_MINUTE = 3
    keys = [funded, second_key(funded)]
    with django_capture_on_commit_callbacks():
        codes = [call(client, card, keys[i % 2], jpeg(), **ASYNC).status_code for i in range(3)]
        refused = call(client, card, keys[1], jpeg(), **ASYNC)
    assert codes == [202, 202, 202]
    assert assert_rate_limited(refused)["message"].startswith("Your account made 3 calls")


def test_a_model_card_can_set_a_tighter_limit(
    client, card, funded, settings, limits_redis, django_capture_on_commit_callbacks
):
    other = factories.card(display_name="Other")
    factories.route(card=other, price=PRICE)
    ModelCard.objects.filter(pk=card.pk).update(rate_limit_per_minute=2)
    card.refresh_from_db()
    with django_capture_on_commit_callbacks():
        codes = [call(client, card, funded, jpeg(), **ASYNC).status_code for _ in range(3)]
        elsewhere = call(client, other, funded, jpeg(), **ASYNC)
    assert codes == [202, 202, 429]
    assert elsewhere.status_code == 202  # the override binds that model only


def test_jobs_in_flight_per_account_are_limited(
    client, card, funded, settings, limits_redis, django_capture_on_commit_callbacks
):
    settings.VITRINE_MAX_INFLIGHT_JOBS = 2
    with django_capture_on_commit_callbacks():
        first = [call(client, card, funded, jpeg(), **ASYNC) for _ in range(2)]
        refused = call(client, card, funded, jpeg(), **ASYNC)
    assert [r.status_code for r in first] == [202, 202]
    error = assert_rate_limited(refused, code="too_many_inflight_jobs")
    assert error["message"].startswith("Your account has 2 jobs queued or running")
    assert Job.objects.count() == 2

    # One ends (cancelled): there is room for one more.
    Job.objects.filter(pk=first[0].json()["id"]).update(status=JobStatus.CANCELLED)
    with django_capture_on_commit_callbacks():
        assert call(client, card, funded, jpeg(), **ASYNC).status_code == 202


def test_calls_refused_for_jobs_in_flight_do_not_spend_the_minute(
    client, card, funded, settings, limits_redis, django_capture_on_commit_callbacks
):
    settings.VITRINE_MAX_INFLIGHT_JOBS = 1
    settings.VITRINE_API_RATE_PER_MINUTE = 4
    with django_capture_on_commit_callbacks():
        first = call(client, card, funded, jpeg(), **ASYNC)
        refused = [call(client, card, funded, jpeg(), **ASYNC) for _ in range(6)]
    assert first.status_code == 202 and first["RateLimit-Remaining"] == "3"
    # Retry-After: 1 obeyed six times: each refusal made no job and costs no call.
    assert {r.status_code for r in refused} == {429}
    assert {r.json()["error"]["code"] for r in refused} == {"too_many_inflight_jobs"}
    assert [r["RateLimit-Remaining"] for r in refused] == ["3"] * 6

    # Its job ends: the next call is admitted, the minute's budget intact.
    Job.objects.filter(pk=first.json()["id"]).update(status=JobStatus.SUCCEEDED, result=[])
    with django_capture_on_commit_callbacks():
        again = call(client, card, funded, jpeg(), **ASYNC)
    assert again.status_code == 202 and again["RateLimit-Remaining"] == "2"


def test_refusals_given_back_are_bounded_per_account(
    client, card, funded, settings, limits_redis, django_capture_on_commit_callbacks
):
    """Each refusal still reads a body and locks the user row: at most twice the account's
    per-minute calls are given back a minute; past that a refusal counts again."""
    settings.VITRINE_MAX_INFLIGHT_JOBS = 1
    settings.VITRINE_ACCOUNT_RATE_PER_MINUTE = 3
    with django_capture_on_commit_callbacks():
        responses = [call(client, card, funded, jpeg(), **ASYNC) for _ in range(10)]
    codes = [
        r.json()["error"]["code"] if r.status_code == 429 else r.status_code for r in responses
    ]
    # 1 job; 6 refusals given back; then 2 counted (the account's 3 calls), then its limit.
    assert codes == [202] + ["too_many_inflight_jobs"] * 8 + ["rate_limit_exceeded"]


def test_job_polling_has_its_own_limit(
    client, card, funded, settings, limits_redis, django_capture_on_commit_callbacks
):
    settings.VITRINE_API_READ_RATE_PER_MINUTE = 2
    with django_capture_on_commit_callbacks():
        job = call(client, card, funded, jpeg(), **ASYNC).json()
    headers = {"Authorization": funded["auth"]}
    codes = [client.get(job["url"], headers=headers).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    # Polling did not use up the budget for new calls.
    with django_capture_on_commit_callbacks():
        assert call(client, card, funded, jpeg(), **ASYNC).status_code == 202


def test_a_call_that_waited_for_its_job_carries_the_ratelimit_headers(
    client, card, funded, settings, broker_url, django_capture_on_commit_callbacks
):
    from config.settings.env import redis_client_url

    settings.VITRINE_REDIS_URL = redis_client_url(broker_url)  # the job-finished signals
    settings.VITRINE_SYNC_WAIT = 1  # no worker runs: the wait runs out, 202 with the job
    settings.VITRINE_API_RATE_PER_MINUTE = 3
    with django_capture_on_commit_callbacks():
        response = call(client, card, funded, jpeg())
    assert response.status_code == 202 and response.json()["status"] == "queued"
    assert (response["RateLimit-Limit"], response["RateLimit-Remaining"]) == ("3", "2")
