"""The try-it page: free tries per visitor, owned by the session, refused politely."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from billing.models import Charge
from catalog.models import ModelCard
from playground.models import Job
from tests import factories

pytestmark = pytest.mark.django_db
JSON = {"Accept": "application/json"}


def upload(name="cats.jpg", fmt="JPEG") -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new("RGB", (80, 60), (200, 10, 10)).save(buffer, format=fmt)
    return SimpleUploadedFile(name, buffer.getvalue(), content_type=f"image/{fmt.lower()}")


@pytest.fixture
def card(settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card(display_name="YOLOS tiny")
    factories.route(card=card)
    return card


def try_url(card) -> str:
    return f"/models/{card.model_id}/try"


def test_the_model_page_links_to_the_try_page(client, card):
    assert try_url(card) in client.get(f"/models/{card.model_id}").content.decode()
    page = client.get(try_url(card)).content.decode()
    assert 'name="image"' in page and "playground/playground.js" in page


def test_viewing_the_try_page_makes_no_session_row(
    client, card, django_capture_on_commit_callbacks
):
    """A page view (a crawler's, every visitor's first) stores no session: each made a
    row (and a cached copy) for two weeks, one per view. The first try makes the one its
    visitor owns, and the page still lists that visitor's tries."""
    from django.contrib.sessions.models import Session

    for _ in range(3):
        assert client.get(try_url(card)).status_code == 200
    ids = "5b0e4a9e-3c59-4ac1-9d3c-0b8f2b3f9a10,6c1f5b0f-4d6a-4bd2-8e9d-1c9f3c4fab21"
    assert client.get(f"/compare/run/{ids}").status_code == 404
    assert Session.objects.count() == 0
    with django_capture_on_commit_callbacks():
        job = client.post(try_url(card), {"image": upload()}, headers=JSON).json()
    assert Session.objects.count() == 1
    assert job["id"] in client.get(try_url(card)).content.decode()
    assert Session.objects.count() == 1


def test_a_try_is_queued_free_and_owned_by_the_session(
    client, card, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as queued:
        response = client.post(try_url(card), {"image": upload()}, headers=JSON)
    assert response.status_code == 202
    job = response.json()
    assert (job["status"], job["width"], job["height"]) == ("queued", 80, 60)
    assert len(queued) == 1 and Charge.objects.count() == 0
    assert client.get(job["url"], headers=JSON).json()["id"] == job["id"]
    assert client.get(job["image_url"]).status_code == 200
    stranger = type(client)()
    assert stranger.get(job["url"], headers=JSON).status_code == 404
    assert stranger.get(job["image_url"]).status_code == 404


def test_without_javascript_the_form_goes_to_a_result_page(
    client, card, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        response = client.post(try_url(card), {"image": upload()}, follow=True)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Queued" in body and '<meta http-equiv="refresh"' in body


@pytest.mark.parametrize(
    ("files", "status", "message"),
    [
        ({}, 400, "Choose an image"),
        ({"image": SimpleUploadedFile("x.bmp", b"BM" + b"\0" * 64)}, 415, "Unsupported"),
    ],
)
def test_bad_uploads_are_refused(client, card, files, status, message):
    response = client.post(try_url(card), files, headers=JSON)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}  # the API's one shape
    assert error["message"].lower().startswith(message.lower())
    assert Job.objects.count() == 0


def test_tries_are_limited_per_visitor(client, card, settings, django_capture_on_commit_callbacks):
    settings.VITRINE_PLAYGROUND_PER_HOUR = 2
    with django_capture_on_commit_callbacks():
        codes = [
            client.post(try_url(card), {"image": upload()}, headers=JSON).status_code
            for _ in range(3)
        ]
    assert codes == [202, 202, 429]


def test_a_coming_soon_model_cannot_be_tried(client, card):
    ModelCard.objects.filter(pk=card.pk).update(status="coming_soon")
    page = client.get(try_url(card)).content.decode()
    assert "cannot be tried yet" in page
    assert "queued to a worker" not in page  # the live page's lead, not above a refusal
    response = client.post(try_url(card), {"image": upload()}, headers=JSON)
    assert response.status_code == 409 and Job.objects.count() == 0


def test_a_failed_csrf_check_answers_in_the_shape_asked_for(card):
    """The try page's script asks for JSON: a stale or missing token is a 403 in the API's
    error shape it reads, not Django's HTML page; a browser form still gets that page."""
    browser = Client(enforce_csrf_checks=True)
    refused = browser.post(try_url(card), {"image": upload()}, headers=JSON)
    assert refused.status_code == 403 and refused["Content-Type"] == "application/json"
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("permission_error", "csrf_failed")
    assert "reload the page" in error["message"]
    page = browser.post(try_url(card), {"image": upload()})
    assert page.status_code == 403 and page["Content-Type"].startswith("text/html")
    assert Job.objects.count() == 0
