"""A run's image through its page's address (playground/views.py job_image), session 48: a
public GIF reaches a stranger without its comment and application blocks (served as sent
before: the security probe read a GPS position in one); each copy carries a validator and
is asked again before each use, so a run made private or an image deleted is not shown from
a browser's copy kept for an hour (``max-age=3600`` before), and a copy still current costs
a 304 and no storage read."""

from __future__ import annotations

import io

import pytest
from django.test import Client
from django.urls import reverse
from PIL import Image

from playground.models import Job
from playground.views import UPRIGHT_CACHE_KEY
from tests import factories

pytestmark = pytest.mark.django_db


def gif_with_a_comment() -> bytes:
    frames = [Image.new("RGB", (32, 24), c) for c in ((255, 0, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(
        out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0,
        comment=b"GPS 48.8583N 2.2945E home of alice",
    )  # fmt: skip
    return out.getvalue()


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.effect_noise((96, 64), 40).convert("RGB").save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
def owner_client(client, settings, tmp_path, django_user_model):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    owner = django_user_model.objects.create_user("ada", "ada@example.com", "pw-1234-long")
    client.force_login(owner)
    return client


def tried(client, data: bytes, name: str) -> Job:
    card = factories.card()
    factories.route(card=card)
    response = client.post(f"/models/{card.model_id}/try", {"image": io.BytesIO(data)})
    assert response.status_code == 302, response.content
    job = Job.objects.latest("created_at")
    Job.objects.filter(pk=job.pk).update(is_public=True)
    job.refresh_from_db()
    return job


def test_a_public_gif_reaches_a_stranger_without_its_comment_and_still_moving(owner_client):
    original = gif_with_a_comment()
    job = tried(owner_client, original, "a.gif")
    url = reverse("playground:job_image", args=[job.pk])
    theirs = Client().get(url)
    assert theirs.status_code == 200 and theirs["Content-Type"] == "image/gif"
    assert b"home of alice" not in theirs.content
    with Image.open(io.BytesIO(theirs.content)) as image:
        assert image.n_frames == 2 and "comment" not in image.info
    mine = owner_client.get(url)  # its owner gets the upload as sent
    assert b"".join(mine.streaming_content) == original


def test_a_current_copy_is_a_304_and_a_copy_made_private_is_not(owner_client):
    job = tried(owner_client, jpeg(), "a.jpg")
    url = reverse("playground:job_image", args=[job.pk])
    stranger = Client()
    first = stranger.get(url)
    assert first.status_code == 200
    assert first["Cache-Control"] == "private, no-cache"
    assert first["Vary"] == "Cookie"
    etag = first["ETag"]
    assert etag.startswith('W/"') and job.image_sha256[:32] in etag
    # The owner's copy (with its metadata) is another one than a stranger's.
    owners = owner_client.get(url)
    assert owners["ETag"] != etag

    again = stranger.get(url, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b""
    assert again["ETag"] == etag and again["Cache-Control"] == "private, no-cache"

    Job.objects.filter(pk=job.pk).update(is_public=False)
    assert stranger.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 404
    # Its owner's copy is still current.
    assert owner_client.get(url, HTTP_IF_NONE_MATCH=owners["ETag"]).status_code == 304


def test_a_deleted_image_is_not_answered_304(owner_client):
    job = tried(owner_client, jpeg(), "a.jpg")
    url = reverse("playground:job_image", args=[job.pk])
    etag = owner_client.get(url)["ETag"]
    Job.objects.filter(pk=job.pk).update(status=Job.Status.FAILED)  # deletable once ended
    response = owner_client.post(reverse("playground:job_image_delete", args=[job.pk]))
    assert response.status_code in (302, 303)
    job.refresh_from_db()
    assert job.image_deleted_at is not None
    assert owner_client.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 404


def test_a_304_reads_no_storage(owner_client, monkeypatch):
    job = tried(owner_client, jpeg(), "a.jpg")
    url = reverse("playground:job_image", args=[job.pk])
    etag = Client().get(url)["ETag"]
    from playground import views

    def unreachable(*args, **kwargs):
        raise AssertionError("the storage was read for a 304")

    monkeypatch.setattr(views, "upload_read", unreachable)
    monkeypatch.setattr(views, "upload_open", unreachable)
    assert UPRIGHT_CACHE_KEY  # the cache is not what answers either: nothing is read
    assert Client().get(url, HTTP_IF_NONE_MATCH=etag).status_code == 304


@pytest.mark.parametrize(
    "header",
    ["{etag}", "*", "{bare}", '"other", {etag}', '{etag}, W/"another"'],
    ids=["itself", "star", "without-W/", "in-a-list", "first-of-two"],
)
def test_if_none_match_compares_weakly_as_http_says(owner_client, header):
    job = tried(owner_client, jpeg(), "a.jpg")
    url = reverse("playground:job_image", args=[job.pk])
    etag = Client().get(url)["ETag"]
    asked = header.format(etag=etag, bare=etag.removeprefix("W/"))
    assert Client().get(url, HTTP_IF_NONE_MATCH=asked).status_code == 304


def test_a_part_of_the_etag_is_not_a_match(owner_client):
    job = tried(owner_client, jpeg(), "a.jpg")
    url = reverse("playground:job_image", args=[job.pk])
    etag = Client().get(url)["ETag"]
    assert Client().get(url, HTTP_IF_NONE_MATCH=f'W/"x{etag[3:]}').status_code == 200
