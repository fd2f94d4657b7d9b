"""GET /v1/jobs: the account's jobs, newest first, a page at a time (``limit``,
``starting_after``, ``has_more``, ``next``), filtered by status and model; each item is the
job resource ``GET /v1/jobs/<id>`` answers. In process, the jobs made by real API calls."""

from __future__ import annotations

import io
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from PIL import Image

from billing.services.keys import api_key_create
from billing.services.topups import credit_grant
from playground.models import Job, JobStatus
from tests import factories

pytestmark = pytest.mark.django_db


def jpeg(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (shade, 100, 90)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def account(other_user, settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    credit_grant(user=other_user, amount=Decimal("1"), reason="test")
    _, key = api_key_create(user=other_user, name="ci")
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def cards():
    detr, yolos = factories.card(slug="detr"), factories.card(slug="yolos")
    factories.route(card=detr)
    factories.route(card=yolos)
    return detr, yolos


def make_jobs(client, auth, card, n, django_capture_on_commit_callbacks, start=0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        with django_capture_on_commit_callbacks():
            response = client.post(
                f"/v1/inference/{card.model_id}", data=jpeg(i), content_type="image/jpeg",
                headers={**auth, "Prefer": "respond-async"},
            )  # fmt: skip
        assert response.status_code == 202, response.content
        ids.append(response.json()["id"])
    return ids


def pages(client, auth, url) -> list[dict]:
    got = []
    while url:
        page = client.get(url, headers=auth)
        assert page.status_code == 200, page.content
        body = page.json()
        assert body["object"] == "list" and body["has_more"] == (body["next"] is not None)
        got.append(body)
        url = body["next"]
    return got


def test_pages_hold_every_job_once_newest_first(
    client, account, cards, django_capture_on_commit_callbacks
):
    ids = make_jobs(client, account, cards[0], 5, django_capture_on_commit_callbacks)
    got = pages(client, account, "/v1/jobs?limit=2")
    assert [len(p["data"]) for p in got] == [2, 2, 1]
    listed = [job["id"] for p in got for job in p["data"]]
    assert listed == ids[::-1]
    # Each item is the job resource, money included.
    first = got[0]["data"][0]
    assert first == client.get(f"/v1/jobs/{first['id']}", headers=account).json()
    assert (first["cost"], first["charge_status"]) == ("0.0002", "reserved")
    # The default page holds them all; nothing follows.
    whole = client.get("/v1/jobs", headers=account).json()
    assert [j["id"] for j in whole["data"]] == listed and whole["next"] is None


def test_filters_by_status_and_model_and_keeps_them_across_pages(
    client, account, cards, django_capture_on_commit_callbacks
):
    detr, yolos = cards
    detr_ids = make_jobs(client, account, detr, 3, django_capture_on_commit_callbacks)
    yolos_ids = make_jobs(client, account, yolos, 2, django_capture_on_commit_callbacks, start=9)
    Job.objects.filter(pk=detr_ids[0]).update(
        status=JobStatus.SUCCEEDED, finished_at=timezone.now(), result=[]
    )
    got = pages(client, account, f"/v1/jobs?model={detr.model_id}&status=queued&limit=1")
    assert [j["id"] for p in got for j in p["data"]] == detr_ids[:0:-1]
    for page in got[:-1]:  # the filters go on with the cursor
        query = parse_qs(urlsplit(page["next"]).query)
        assert (query["model"], query["status"]) == ([detr.model_id], ["queued"])
    got = pages(client, account, f"/v1/jobs?model={yolos.model_id}")
    assert [j["id"] for p in got for j in p["data"]] == yolos_ids[::-1]
    done = client.get("/v1/jobs?status=succeeded", headers=account).json()["data"]
    assert [j["id"] for j in done] == [detr_ids[0]]


def test_only_the_accounts_own_jobs(client, account, cards, django_capture_on_commit_callbacks):
    theirs = make_jobs(client, account, cards[0], 1, django_capture_on_commit_callbacks)
    stranger = factories.user(username="stranger")
    credit_grant(user=stranger, amount=Decimal("1"), reason="test")
    _, key = api_key_create(user=stranger, name="other")
    other = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/jobs", headers=other).json()["data"] == []
    # Another account's job id is no cursor here.
    response = client.get(f"/v1/jobs?starting_after={theirs[0]}", headers=other)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "starting_after"


@pytest.mark.parametrize(
    ("query", "param", "code"),
    [
        ("limit=0", "limit", "invalid_value"),
        ("limit=101", "limit", "invalid_value"),
        ("limit=ten", "limit", "invalid_value"),
        ("status=done", "status", "invalid_value"),
        ("box_format=svg", "box_format", "invalid_value"),
        ("starting_after=not-a-job", "starting_after", "invalid_value"),
        ("page=2", "page", "unknown_parameter"),
        # Given twice, a read used the last and ignored the first; empty, it was no filter.
        ("limit=3&limit=5", "limit", "invalid_value"),
        ("status=bogus&status=queued", "status", "invalid_value"),
        ("status=&limit=", "status", "invalid_value"),
        ("limit=", "limit", "invalid_value"),
        # An unknown model listed nothing, as if it had no jobs.
        ("model=nope/nope", "model", "invalid_value"),
    ],
)
def test_bad_parameters_are_400_naming_them(client, account, query, param, code):
    response = client.get(f"/v1/jobs?{query}", headers=account)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param)


def test_a_key_is_required(client):
    response = client.get("/v1/jobs")
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")


def test_a_page_costs_the_same_queries_whatever_its_length(
    client, account, cards, django_capture_on_commit_callbacks
):
    make_jobs(client, account, cards[0], 6, django_capture_on_commit_callbacks)
    Job.objects.update(status=JobStatus.SUCCEEDED, finished_at=timezone.now(), result=[])
    counts = []
    for limit in (1, 6):
        with CaptureQueriesContext(connection) as queries:
            assert len(client.get(f"/v1/jobs?limit={limit}", headers=account).json()["data"]) == (
                limit
            )
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_a_key_restricted_to_some_models_sees_and_cancels_their_jobs_only(
    client, account, other_user, cards, django_capture_on_commit_callbacks
):
    """It read, listed and cancelled every model's jobs, though its calls and replays of
    other models answer 403 model_not_allowed."""
    detr, yolos = cards
    [detr_job] = make_jobs(client, account, detr, 1, django_capture_on_commit_callbacks)
    [yolos_job] = make_jobs(client, account, yolos, 1, django_capture_on_commit_callbacks, 1)
    _, raw = api_key_create(user=other_user, name="detr only", allowed_models=[detr])
    narrow = {"Authorization": f"Bearer {raw}"}

    listed = client.get("/v1/jobs", headers=narrow).json()["data"]
    assert [job["id"] for job in listed] == [detr_job]
    assert client.get(f"/v1/jobs/{detr_job}", headers=narrow).status_code == 200
    for method in (client.get, client.delete):
        response = method(f"/v1/jobs/{yolos_job}", headers=narrow)
        assert response.status_code == 403, response.content
        assert response.json()["error"]["code"] == "model_not_allowed"
    assert Job.objects.get(pk=yolos_job).status == JobStatus.QUEUED  # not cancelled
    # The account's other keys still see everything.
    assert len(client.get("/v1/jobs", headers=account).json()["data"]) == 2


def test_the_same_value_twice_is_one_value_and_a_known_model_filters(
    client, account, cards, django_capture_on_commit_callbacks
):
    detr, _ = cards
    make_jobs(client, account, detr, 2, django_capture_on_commit_callbacks)
    response = client.get(f"/v1/jobs?limit=1&limit=1&model={detr.model_id}", headers=account)
    assert response.status_code == 200, response.content
    assert len(response.json()["data"]) == 1 and response.json()["has_more"]


def test_a_model_filter_does_not_tell_a_drafts_id(client, account):
    draft = factories.card(slug="draft", is_published=False)
    response = client.get(f"/v1/jobs?model={draft.model_id}", headers=account)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"


@pytest.mark.parametrize(
    ("method", "query", "param", "code"),
    [
        ("get", "threshold=abc&threshold=0.5", "threshold", "invalid_value"),
        ("get", "box_format=bogus&box_format=float", "box_format", "invalid_value"),
        ("delete", "foo=1", "foo", "unknown_parameter"),
    ],
)
def test_a_jobs_read_and_cancel_check_their_query(
    client, account, cards, django_capture_on_commit_callbacks, method, query, param, code
):
    (job_id,) = make_jobs(client, account, cards[0], 1, django_capture_on_commit_callbacks)
    response = getattr(client, method)(f"/v1/jobs/{job_id}?{query}", headers=account)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param)
    assert Job.objects.get(pk=job_id).status == JobStatus.QUEUED  # nothing was cancelled


@pytest.mark.parametrize("spelling", [str.upper, lambda job_id: job_id.replace("-", "")])
def test_a_job_id_is_read_in_any_case_and_spelling_of_its_uuid(
    client, account, cards, django_capture_on_commit_callbacks, spelling
):
    (job_id,) = make_jobs(client, account, cards[0], 1, django_capture_on_commit_callbacks)
    response = client.get(f"/v1/jobs/{spelling(job_id)}", headers=account)
    assert response.status_code == 200, response.content
    assert response.json()["id"] == job_id


def test_an_id_that_is_no_uuid_is_job_not_found(client, account):
    response = client.get("/v1/jobs/not-a-job", headers=account)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "job_not_found" and "not-a-job" in error["message"]
