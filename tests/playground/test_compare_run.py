"""Compare on your image: one upload, one free-try job per model, a side-by-side resource."""

from __future__ import annotations

import pytest
from django.test import Client

from catalog.models import ModelCard
from playground import services
from playground.compare import NOT_ENOUGH_TRIES, PICK_MODELS
from playground.models import Job
from tests import factories
from tests.playground.test_playground_page import JSON, upload

pytestmark = pytest.mark.django_db
RUN = "/compare/run"


@pytest.fixture
def cards(settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    found = []
    for name, price in (("Alpha", "0.0002"), ("Beta", "0.0005"), ("Gamma", "0.0001")):
        card = factories.card(display_name=name)
        factories.route(card=card, price=price)
        found.append(card)
    return found


def start(client, cards, **extra):
    return client.post(
        RUN, {"models": [c.model_id for c in cards], "image": upload(), **extra}, headers=JSON
    )


def finish(job: Job, detections: list[dict]) -> None:
    """What a worker does with the job: claim it, store its boxes and stage timings."""
    claimed = services.job_claim(job_id=job.pk, worker="test:1")
    services.job_succeed(
        job=claimed, result=detections, timings={"preprocess": 0.01, "forward": 0.2, "batch": 1}
    )


def det(label, score, xmin, ymin, xmax, ymax):
    return {"label": label, "score": score,
            "box": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}}  # fmt: skip


def test_the_catalog_compare_page_links_to_a_run_of_the_live_models(client, cards):
    coming = factories.card(display_name="Soon", status=ModelCard.Status.COMING_SOON)
    ids = [cards[0].model_id, coming.model_id, cards[1].model_id]
    page = client.get("/compare", {"models": ",".join(ids)}).content.decode()
    assert f'href="/compare/run?models={cards[0].model_id},{cards[1].model_id}"' in page
    form = client.get(RUN, {"models": ",".join(ids)}).content.decode()
    assert form.count('type="checkbox" name="models"') == 3
    assert "(coming soon: cannot run)" in form


def test_one_free_try_job_per_model_owned_by_the_session(
    client, cards, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as queued:
        response = start(client, cards[:2])
    assert response.status_code == 202
    assert len(queued) == 2  # one message per job, sent on commit
    ids = response.json()["jobs"]
    jobs = {str(j.pk): j for j in Job.objects.all()}
    assert set(jobs) == set(ids)
    assert {jobs[i].card_id for i in ids} == {cards[0].pk, cards[1].pk}
    assert all(j.session_key and not j.cost_ref for j in jobs.values())  # free tries
    assert response.json()["url"] == f"/compare/run/{ids[0]},{ids[1]}"
    # Only the session that made them sees them.
    assert client.get(response.json()["url"], headers=JSON).status_code == 200
    assert Client().get(response.json()["url"], headers=JSON).status_code == 404


def test_the_resource_matches_the_boxes_and_gives_latency_and_cost(
    client, cards, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        url = start(client, cards[:2]).json()["url"]
    first, second = (Job.objects.get(card=c) for c in cards[:2])
    running = client.get(url, headers=JSON).json()
    assert running["status"] == "running" and running["agreed"] is None

    finish(first, [det("cat", 0.9, 0, 0, 40, 40), det("dog", 0.8, 50, 10, 70, 50)])
    finish(second, [det("cat", 0.7, 2, 0, 40, 42), det("dog", 0.3, 50, 10, 70, 50)])
    data = client.get(url, headers=JSON).json()
    assert data["status"] == "done"
    assert data["agreed"] == 1  # the cats; the second model's dog is under 0.5
    a, b = data["panels"]
    assert (a["model"], b["model"]) == (cards[0].model_id, cards[1].model_id)
    assert [d["with"] for d in a["detections"]] == [[cards[1].model_id], []]
    assert (a["only"], b["only"]) == (1, 0)
    assert a["latency"]["model_ms"] == 210
    assert a["latency"]["queue_ms"] is not None
    assert a["cost"] == {"amount": "0", "text": "$0", "free_try": True,
                         "price_per_image": "0.0002", "price_text": "$0.0002"}  # fmt: skip
    assert b["cost"]["price_per_image"] == "0.0005"

    lower = client.get(url, {"threshold": "0.25"}, headers=JSON).json()
    assert lower["agreed"] == 2  # now the dogs agree too
    page = client.get(url).content.decode()
    assert page.count('class="panel compare-panel"') == 2
    assert "210 ms" in page and "free try" in page


@pytest.mark.parametrize(
    ("pick", "status", "code"),
    [
        (1, 400, "invalid_models"),
        (4, 400, "invalid_models"),
    ],
)
def test_two_to_three_models(client, cards, pick, status, code):
    extra = factories.card()
    factories.route(card=extra)
    response = start(client, [*cards, extra][:pick])
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert response.json()["error"]["message"] == PICK_MODELS
    assert Job.objects.count() == 0


def test_bad_requests_answer_in_the_one_error_shape_and_store_nothing(client, cards):
    soon = factories.card(status=ModelCard.Status.COMING_SOON)
    factories.route(card=soon)
    cases = [
        (client.post(RUN, {"models": [cards[0].model_id, "nobody/nothing"], "image": upload()},
                     headers=JSON), 404, "model_not_found"),
        (start(client, [cards[0], soon]), 409, "model_not_available"),
        (client.post(RUN, {"models": [c.model_id for c in cards[:2]]}, headers=JSON), 400,
         "missing_image"),
    ]  # fmt: skip
    for response, status, code in cases:
        body = response.json()
        assert (response.status_code, body["error"]["code"]) == (status, code), body
    garbage = client.post(
        RUN,
        {"models": [c.model_id for c in cards[:2]], "image": upload_bytes(b"not an image")},
        headers=JSON,
    )
    assert (garbage.status_code, garbage.json()["error"]["code"]) == (415, "unsupported_format")
    assert Job.objects.count() == 0


def upload_bytes(content: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("x.jpg", content, content_type="image/jpeg")


def test_each_model_run_is_one_free_try(
    client, cards, settings, django_capture_on_commit_callbacks
):
    settings.VITRINE_PLAYGROUND_PER_HOUR = 4
    with django_capture_on_commit_callbacks():
        assert start(client, cards).status_code == 202  # 3 tries
        refused = start(client, cards[:2])  # 2 more: only 1 left
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"  # the API's code too
    assert refused.json()["error"]["message"].startswith(
        NOT_ENOUGH_TRIES.split("{remaining}")[0].format(models=2)
    )
    assert "you have 1 left" in refused.json()["error"]["message"]
    assert Job.objects.count() == 3
    # The one try left is still there for the try page.
    with django_capture_on_commit_callbacks():
        tried = client.post(f"/models/{cards[0].model_id}/try", {"image": upload()}, headers=JSON)
    assert tried.status_code == 202


@pytest.mark.parametrize("ids", ["nope", "{a}", "{a},{a}", "{a},not-a-uuid"])
def test_a_malformed_comparison_is_not_found(client, cards, ids):
    path = "/compare/run/" + ids.format(a="5b0e4a9e-3c59-4ac1-9d3c-0b8f2b3f9a10")
    assert client.get(path, headers=JSON).status_code == 404


def test_a_bad_threshold_is_a_400(client, cards, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        url = start(client, cards[:2]).json()["url"]
    for value in ("abc", "2", "-1", "nan"):
        response = client.get(url, {"threshold": value}, headers=JSON)
        assert (response.status_code, response.json()["error"]["code"]) == (
            400,
            "invalid_threshold",
        )


def test_without_javascript_the_form_posts_and_the_page_refreshes_itself(
    client, cards, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        response = client.post(
            RUN, {"models": [c.model_id for c in cards[:2]], "image": upload()}, follow=True
        )
    assert response.status_code == 200
    body = response.content.decode()
    assert '<meta http-equiv="refresh"' in body
    assert body.count('class="panel compare-panel"') == 2
    again = client.post(RUN, {"models": [cards[0].model_id], "image": upload()})
    assert again.status_code == 400 and PICK_MODELS in again.content.decode()


def test_a_refused_image_costs_no_tries(
    client, cards, settings, django_capture_on_commit_callbacks
):
    settings.VITRINE_PLAYGROUND_PER_HOUR = 3
    refused = client.post(
        RUN, {"models": [c.model_id for c in cards], "image": upload("x.bmp", "BMP")},
        headers=JSON,
    )  # fmt: skip
    assert refused.status_code == 415
    with django_capture_on_commit_callbacks():
        assert start(client, cards).status_code == 202  # all 3 tries still there
    assert Job.objects.count() == 3


def test_a_comparison_is_held_to_the_free_tries_queued_bound(
    client, cards, settings, django_capture_on_commit_callbacks
):
    """Its jobs are free tries too: one per model counts against VITRINE_FREE_TRIES_QUEUED
    (the compare page queued 12 free jobs past a bound of 1 from four addresses)."""
    settings.VITRINE_FREE_TRIES_QUEUED = 5
    with django_capture_on_commit_callbacks():
        assert start(client, cards).status_code == 202  # 3 queued
        refused = start(Client(), cards)  # 3 + 3 > 5
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "free_tries_busy"
    assert Job.objects.count() == 3
    with django_capture_on_commit_callbacks():
        assert start(Client(), cards[:2]).status_code == 202  # 3 + 2 fits
