"""A run's PNG export drawn from a large picture (session 48's security probe): a 5 kB PNG
of 40 megapixels held a web worker 2.2 s per drawing, and 16 signed-out clients asking for
its public export again and again held every page of the site for 15 s. Now the same
drawing asked again comes from the cache, and each client network may draw only
VITRINE_LARGE_EXPORTS_PER_MINUTE large ones a minute (playground/runs.py)."""

from __future__ import annotations

import io

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from playground import runs
from tests import factories

BOX = {"label": "cat", "score": 0.91, "box": {"xmin": 10, "ymin": 20, "xmax": 300, "ymax": 200}}


@pytest.fixture
def storage(settings, tmp_path, monkeypatch):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_LARGE_EXPORTS_PER_MINUTE = 2
    # "Large" from 0.3 megapixels here: the same code path, drawings of a test's size.
    monkeypatch.setattr(runs, "LARGE_EXPORT_PIXELS", 300_000)
    cache.clear()
    yield
    cache.clear()


def one_bit_png(width: int, height: int) -> bytes:
    """A picture of many pixels in few bytes (one bit each, compressed)."""
    out = io.BytesIO()
    Image.new("1", (width, height), 1).save(out, "PNG", optimize=True)
    return out.getvalue()


def public_run(width: int, height: int):
    card = factories.card()
    data = one_bit_png(width, height)
    return factories.finished_run(card=card, image_bytes=data, result=[BOX], is_public=True)


def export(client: Client, job, **query):
    return client.get(reverse("playground:job_export", args=[job.pk, "png"]), query)


def large_run():
    job = public_run(2100, 200)  # 0.42 megapixels, "large" here (the fixture)
    assert job.width * job.height > runs.LARGE_EXPORT_PIXELS
    assert job.image_bytes < 20_000
    return job


@pytest.mark.django_db
def test_a_client_network_draws_few_large_exports_a_minute_and_gets_drawn_ones_again(storage):
    job = large_run()
    stranger = Client()  # signed out: the run is public
    first = export(stranger, job, threshold="0.5")
    assert first.status_code == 200 and first["Content-Type"] == "image/png"
    assert export(stranger, job, threshold="0.6").status_code == 200

    refused = export(stranger, job, threshold="0.7")

    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert "2 a minute" in error["message"]
    assert 0 < int(refused["Retry-After"]) <= 60
    assert refused["RateLimit-Remaining"] == "0"
    # A drawing already made is served again, not drawn: it does not count either.
    again = export(stranger, job, threshold="0.5")
    assert again.status_code == 200 and again.content == first.content
    assert export(stranger, job, threshold="0.6").status_code == 200


@pytest.mark.django_db
def test_small_pictures_are_not_limited(storage):
    job = public_run(640, 400)
    stranger = Client()
    for threshold in ("0.1", "0.2", "0.3", "0.4", "0.5"):
        assert export(stranger, job, threshold=threshold).status_code == 200


@pytest.mark.django_db
def test_a_cached_drawing_is_not_served_once_the_run_is_private_or_its_image_deleted(storage):
    job = large_run()
    stranger = Client()
    assert export(stranger, job).status_code == 200
    job.is_public = False
    job.save(update_fields=["is_public"])
    assert export(stranger, job).status_code == 404
    job.is_public = True
    job.image_deleted_at = timezone.now()
    job.save(update_fields=["is_public", "image_deleted_at"])
    assert export(stranger, job).status_code == 410


@pytest.mark.django_db
def test_the_limit_is_shared_by_every_web_process_through_redis(storage, limits_redis, settings):
    job = large_run()
    assert export(Client(), job, threshold="0.5").status_code == 200
    assert export(Client(), job, threshold="0.6").status_code == 200
    # Another process (its own memory): the count is the Redis one.
    from catalog import ratelimit

    ratelimit.memory_store.clear()
    assert export(Client(), job, threshold="0.7").status_code == 429


@pytest.mark.django_db
def test_the_permalink_pages_picture_is_drawn_at_any_threshold_without_counting(storage):
    """The permalink page shows its picture through ``export.png?max_width=1280`` at the
    page's threshold: the shrunk picture is decoded once and kept, so moving through
    thresholds draws on it and counts nothing (the verification probe's 11th threshold
    was a 429 and a broken picture)."""
    job = large_run()
    visitor = Client()
    drawn = {}
    for step in range(12):
        threshold = f"0.{30 + step}"
        response = export(visitor, job, threshold=threshold, max_width="1280")
        assert response.status_code == 200, (step, response.content[:200])
        assert Image.open(io.BytesIO(response.content)).width == 1280  # shrunk for the page
        drawn[threshold] = response.content
    # Each the same picture it would be drawn as from the upload (nothing kept).
    cache.clear()
    for threshold in ("0.30", "0.41"):
        fresh = export(Client(), job, threshold=threshold, max_width="1280").content
        assert fresh == drawn[threshold]
    # Another size is another decoding: counted.
    assert export(visitor, job, max_width="1000").status_code == 429
