"""The try page's image and tries: the picture a page draws is the one the model saw (an
upload the worker turned by its EXIF or XMP orientation is served upright, with no
orientation left for a browser to turn it by again); a refused upload costs no free try;
the permalink shows a tiny picture enlarged with square pixels."""

from __future__ import annotations

import io

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, RequestFactory
from django.urls import reverse
from PIL import Image, ImageChops, ImageDraw, PngImagePlugin

from catalog import ratelimit
from playground import demo, views
from playground.models import Job
from playground.runtime import decode_image
from tests import factories
from tests.playground.test_playground_page import JSON, card, try_url, upload  # noqa: F401

pytestmark = pytest.mark.django_db

ORIENTATION = 0x0112
RED, GREEN = (220, 30, 30), (200, 220, 200)
XMP_6 = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
)


def upright(mode: str = "RGB") -> Image.Image:
    """640x480, a red rectangle in the top left corner."""
    image = Image.new(mode, (640, 480), GREEN)
    ImageDraw.Draw(image).rectangle([0, 0, 213, 120], fill=RED)
    return image


def turned(image_format: str, *, where: str = "exif", **options) -> bytes:
    """``upright()`` stored a quarter turned, with orientation 6 in its EXIF or its XMP."""
    picture = options.pop("picture", None) or upright()
    if where == "exif":
        exif = Image.Exif()
        exif[ORIENTATION] = 6
        options["exif"] = exif.tobytes()
    elif image_format == "PNG":  # an iTXt chunk, as Adobe's tools write it
        options["pnginfo"] = PngImagePlugin.PngInfo()
        options["pnginfo"].add_itxt("XML:com.adobe.xmp", XMP_6.decode())
    else:
        options["xmp"] = XMP_6
    out = io.BytesIO()
    picture.transpose(Image.Transpose.ROTATE_90).save(out, image_format, **options)
    return out.getvalue()


def tried(client, card, data: bytes, name: str) -> Job:  # noqa: F811
    response = client.post(try_url(card), {"image": SimpleUploadedFile(name, data)}, headers=JSON)
    assert response.status_code == 202, response.content
    return Job.objects.get(pk=response.json()["id"])


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def largest_difference(a: Image.Image, b: Image.Image) -> int:
    return max(high for _, high in ImageChops.difference(a, b).getextrema())


@pytest.fixture(autouse=True)
def _no_cached_copies():
    cache.clear()
    yield
    cache.clear()


# --- the image a page draws ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "data", "content_type", "tolerance"),
    [
        ("exif6.webp", turned("WEBP"), "image/jpeg", 16),  # a lossy WebP: a JPEG at 95
        ("exif6-lossless.webp", turned("WEBP", lossless=True), "image/png", 0),
        ("xmp6.jpg", turned("JPEG", where="xmp"), "image/jpeg", 16),
        ("exif6.jpg", turned("JPEG"), "image/jpeg", 16),
        ("exif6.png", turned("PNG"), "image/png", 0),
        ("xmp6.png", turned("PNG", where="xmp"), "image/png", 0),
    ],
)
def test_a_turned_upload_is_served_upright_with_no_orientation_left(
    client,
    card,  # noqa: F811
    name,
    data,
    content_type,
    tolerance,
):
    job = tried(client, card, data, name)
    assert (job.width, job.height) == (640, 480)  # the frame the boxes are given in

    response = client.get(reverse("playground:job_image", args=[job.pk]))

    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["Cache-Control"] == "private, no-cache"
    assert response["X-Content-Type-Options"] == "nosniff"
    served = opened(response.content)
    assert served.size == (640, 480)
    assert dict(served.getexif()) == {} and "xmp" not in served.info
    assert b"Orientation" not in response.content
    # The picture the model saw, pixel for pixel (a PNG) or near it (a JPEG at quality 95).
    model_saw = decode_image(data, max_pixels=settings.VITRINE_MAX_IMAGE_PIXELS).image
    assert largest_difference(served.convert("RGB"), model_saw) <= tolerance
    assert served.convert("RGB").getpixel((106, 60))[1] < 90  # red at the box's place


def test_a_turned_transparent_png_is_served_on_white_as_the_model_saw_it(
    client,
    card,  # noqa: F811
):
    picture = Image.new("RGBA", (640, 480), (0, 0, 0, 0))
    picture.paste((220, 30, 30, 255), (0, 0, 214, 121))
    job = tried(client, card, turned("PNG", picture=picture), "clear.png")
    served = opened(client.get(reverse("playground:job_image", args=[job.pk])).content)
    assert served.mode == "RGB" and served.size == (640, 480)
    assert served.getpixel((400, 300)) == (255, 255, 255)
    assert served.getpixel((100, 60)) == RED


def test_the_owner_and_a_stranger_get_the_same_upright_copy_once_made(
    client,
    card,  # noqa: F811
):
    data = turned("JPEG", where="xmp")
    job = tried(client, card, data, "xmp6.jpg")
    Job.objects.filter(pk=job.pk).update(is_public=True)
    url = reverse("playground:job_image", args=[job.pk])

    mine = client.get(url)
    theirs = Client().get(url)

    assert mine.status_code == theirs.status_code == 200
    assert mine.content == theirs.content
    # Kept by the upload's digest: drawn again (or by a comparison's other panels) it is
    # not decoded and encoded again.
    key = views.UPRIGHT_CACHE_KEY.format(job.image_sha256)
    assert cache.get(key) == ("image/jpeg", mine.content)


def test_an_upright_upload_is_its_owners_as_sent(client, card):  # noqa: F811
    out = io.BytesIO()
    upright().save(out, "WEBP", exif=Image.Exif().tobytes())
    job = tried(client, card, out.getvalue(), "plain.webp")
    response = client.get(reverse("playground:job_image", args=[job.pk]))
    assert response["Content-Type"] == "image/webp"
    assert b"".join(response.streaming_content) == out.getvalue()
    again = client.get(reverse("playground:job_image", args=[job.pk]))  # known: streamed
    assert b"".join(again.streaming_content) == out.getvalue()


def test_a_purged_image_is_gone_even_when_its_copy_is_cached(client, card):  # noqa: F811
    job = tried(client, card, turned("PNG"), "exif6.png")
    url = reverse("playground:job_image", args=[job.pk])
    assert client.get(url).status_code == 200
    Job.objects.filter(pk=job.pk).update(image_name="")
    assert client.get(url).status_code == 404


# --- a refused upload costs no try -----------------------------------------------------------
def bomb() -> bytes:
    """A PNG header claiming 20000x20000 pixels, with almost nothing after it."""
    out = io.BytesIO()
    Image.new("1", (20000, 20000)).save(out, "PNG")
    return out.getvalue()


def refused_uploads() -> list[tuple[str, bytes]]:
    bmp = io.BytesIO()
    Image.new("RGB", (8, 8)).save(bmp, "BMP")
    jpeg = io.BytesIO()
    upright().save(jpeg, "JPEG")
    return [
        ("a.bmp", bmp.getvalue()),
        ("empty.jpg", b""),
        ("bomb.png", bomb()),
        ("cut.jpg", jpeg.getvalue()[:400]),
        ("notes.png", b"not an image at all"),
    ]


def test_refused_uploads_cost_no_free_try(
    client,
    card,  # noqa: F811
    settings,
    django_capture_on_commit_callbacks,
):
    settings.VITRINE_PLAYGROUND_PER_HOUR = 2
    with django_capture_on_commit_callbacks():
        refused = [
            client.post(try_url(card), {"image": SimpleUploadedFile(name, data)}, headers=JSON)
            for name, data in refused_uploads()
        ]
        codes = [client.post(try_url(card), {"image": upload()}, headers=JSON).status_code]
        codes.append(client.post(try_url(card), {"image": upload()}, headers=JSON).status_code)
        codes.append(client.post(try_url(card), {"image": upload()}, headers=JSON).status_code)
    # Each refused for what it is (415 unsupported, 400 corrupt, 413 too many pixels), none
    # for the limit.
    assert [r.status_code for r in refused] == [415, 400, 413, 400, 415], [
        r.json()["error"]["code"] for r in refused
    ]
    assert codes == [202, 202, 429]
    assert Job.objects.count() == 2
    state = client.get(f"{try_url(card)}/state", headers=JSON).json()
    assert state["free"]["remaining"] == 0


def test_out_of_tries_is_said_before_the_upload_is_looked_at(
    client,
    card,  # noqa: F811
    settings,
    django_capture_on_commit_callbacks,
):
    settings.VITRINE_PLAYGROUND_PER_HOUR = 1
    with django_capture_on_commit_callbacks():
        assert client.post(try_url(card), {"image": upload()}, headers=JSON).status_code == 202
    name, data = refused_uploads()[0]
    response = client.post(try_url(card), {"image": SimpleUploadedFile(name, data)}, headers=JSON)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(response["Retry-After"]) <= 3600


def test_a_try_refused_at_its_count_leaves_no_job_and_no_upload(
    card,  # noqa: F811
    settings,
    tmp_path,
):
    """A concurrent request of the same visitor took the last try between this one's peek
    and its count: the job row is rolled back and its upload deleted."""
    settings.VITRINE_PLAYGROUND_PER_HOUR = 1
    request = RequestFactory().post(try_url(card), REMOTE_ADDR="203.0.113.9")
    request.user = type("Anonymous", (), {"is_authenticated": False, "pk": None})()
    from django.contrib.sessions.backends.db import SessionStore

    request.session = SessionStore()
    buckets = demo.try_buckets(request)
    assert ratelimit.hit(*buckets).allowed  # the other request's try

    data = io.BytesIO()
    upright().save(data, "PNG")
    with pytest.raises(views._OutOfTries):
        views._free_try(request, card, None, data.getvalue(), 0.5, buckets)

    assert Job.objects.count() == 0
    stored = tmp_path / "jobs"
    assert not stored.exists() or list(stored.iterdir()) == []


# --- the permalink's picture -----------------------------------------------------------------
def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def tiny_run(card):  # noqa: F811
    picture = Image.new("RGB", (16, 16), GREEN)
    picture.paste(RED, (0, 0, 8, 8))
    box = {"xmin": 0, "ymin": 0, "xmax": 8, "ymax": 8}
    return factories.finished_run(
        card=card,
        image_bytes=png(picture),
        result=[{"label": "cat", "score": 0.9, "box": box}],
        is_public=True,
    )


def test_the_permalink_shows_a_tiny_picture_enlarged_with_square_pixels(client, tiny_run):
    page = client.get(reverse("playground:job", args=[tiny_run.pk])).content.decode()
    # The run's own picture (its boxes drawn over it by the page), shown at 320 px.
    image_url = reverse("playground:job_image", args=[tiny_run.pk])
    assert (
        f'<img id="run-image" class="is-pixelated" src="{image_url}" width="320" height="320"'
    ) in page
    # The PNG export enlarges it the same way, with square pixels.
    png_url = reverse("playground:job_export", args=[tiny_run.pk, "png"])

    response = client.get(png_url, {"max_width": 1280, "min_size": 320})
    assert response.status_code == 200
    drawn = opened(response.content).convert("RGB")
    assert drawn.size == (320, 320)
    assert drawn.getpixel((80, 80)) == RED  # each pixel a 20x20 square
    assert drawn.getpixel((200, 200)) == GREEN
    assert drawn.getpixel((159, 150)) != GREEN  # the box's right edge, at 8 x 20


def test_a_large_picture_on_the_permalink_is_not_enlarged(client, card):  # noqa: F811
    run = factories.finished_run(
        card=card, image_bytes=png(Image.new("RGB", (2000, 1000))), result=[], is_public=True
    )
    page = client.get(reverse("playground:job", args=[run.pk])).content.decode()
    assert (
        'src="{}" width="1280" height="640"'.format(reverse("playground:job_image", args=[run.pk]))
        in page
    )
    assert "is-pixelated" not in page


@pytest.mark.parametrize("raw", ["0", "1281", "abc", "-5"])
def test_a_bad_min_size_is_refused(client, tiny_run, raw):
    url = reverse("playground:job_export", args=[tiny_run.pk, "png"])
    response = client.get(url, {"min_size": raw})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_min_size"
