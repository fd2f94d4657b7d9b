"""A public run's image, as a stranger gets it: the upload's pixels without what the camera
wrote about it (GPS, device, names, comments), upright with no orientation tag when the
worker turned it; its owner gets the upload as sent unless it is turned
(playground/public_image.py)."""

from __future__ import annotations

import io

import pytest
from django.test import Client
from django.urls import reverse
from PIL import Image, ImageChops, ImageCms, ImageOps

from playground.models import Job
from playground.public_image import ORIENTATION, upright_copy, without_metadata
from tests import factories

pytestmark = pytest.mark.django_db

GPS_IFD, ARTIST, MAKE = 0x8825, 0x013B, 0x010F


def photo(image_format="JPEG", orientation=6, comment=b"taken at home") -> bytes:
    """A phone's picture: EXIF with a GPS position, the owner's name, the camera, a turn;
    an XMP block and a comment on JPEG."""
    image = Image.effect_noise((96, 64), 40).convert("RGB")
    exif = Image.Exif()
    exif[ARTIST], exif[MAKE], exif[ORIENTATION] = "Jane Doe", "SecretCam", orientation
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (51.0, 30.0, 26.0), 3: "W", 4: (0.0, 7.0, 39.0)})
    out = io.BytesIO()
    options = {"exif": exif.tobytes()}
    if image_format == "JPEG":
        options |= {"comment": comment, "xmp": b"<x:xmpmeta>Jane's house</x:xmpmeta>"}
    if image_format == "WEBP":
        options["lossless"] = True
    image.save(out, format=image_format, **options)
    return out.getvalue()


def pixels(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP"])
def test_metadata_goes_the_pixels_stay(image_format):
    original = photo(image_format, orientation=1)
    clean = without_metadata(original, image_format)
    with Image.open(io.BytesIO(clean)) as image:
        assert dict(image.getexif()) == {}
        assert image.format == image_format
        assert "comment" not in image.info and "xmp" not in image.info
    for secret in (b"Jane", b"SecretCam", b"taken at home"):
        assert secret not in clean, secret
    # The same picture: a JPEG's scan is copied as is, PNG and WebP are written losslessly.
    assert ImageChops.difference(pixels(original), pixels(clean)).getbbox() is None
    if image_format == "JPEG":
        assert clean.endswith(original[original.index(b"\xff\xda") :])


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP"])
def test_a_turned_picture_is_made_upright_with_no_orientation_left(image_format):
    """A kept orientation tag would let a stranger's browser turn it another way than the
    worker did (or not at all): the copy is upright, with nothing to turn it by."""
    original = photo(image_format, orientation=6)
    clean = without_metadata(original, image_format)
    with Image.open(io.BytesIO(clean)) as image:
        assert image.format == image_format
        assert image.size == (64, 96)  # stored 96x64, turned a quarter
        assert dict(image.getexif()) == {} and "xmp" not in image.info
    assert b"Jane" not in clean and b"SecretCam" not in clean
    with Image.open(io.BytesIO(original)) as image:
        upright = ImageOps.exif_transpose(image).convert("RGB")
    difference = ImageChops.difference(upright, pixels(clean)).getextrema()
    tolerance = 12 if image_format == "JPEG" else 0  # written again at quality 95
    assert max(high for _, high in difference) <= tolerance, difference


def _served_upright(data: bytes, image_format: str) -> bytes:
    return upright_copy(data, max_pixels=10_000_000)[0]


@pytest.mark.parametrize("copy", [without_metadata, _served_upright])
def test_a_turned_jpeg_is_written_again_without_its_comment(copy):
    """Pillow writes the comment it read back into a JPEG it saves unless told not to: the
    upright copy is written again, and must not carry it."""
    clean = copy(photo("JPEG", orientation=6, comment=b"SECRET note"), "JPEG")
    with Image.open(io.BytesIO(clean)) as image:
        assert image.size == (64, 96)
        assert "comment" not in image.info
    assert b"SECRET" not in clean


def test_a_turned_pictures_colour_profile_goes_when_it_is_not_rgb():
    """The upright copy's pixels are RGB: a profile for other colours (here Lab on a grey
    PNG) would misdraw them and is the upload's metadata all the same."""
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    out = io.BytesIO()
    Image.effect_noise((96, 64), 40).save(out, "PNG", exif=exif.tobytes(), icc_profile=profile)
    clean, content_type = upright_copy(out.getvalue(), max_pixels=10_000_000)
    assert content_type == "image/png"
    with Image.open(io.BytesIO(clean)) as image:
        assert image.size == (64, 96)
        assert "icc_profile" not in image.info


def test_an_xmp_orientation_does_not_become_an_exif_tag():
    """Pillow reads a JPEG's XMP ``tiff:Orientation`` (the worker turns by it), browsers do
    not: the public copy is upright, with neither an EXIF nor an XMP orientation."""
    picture = Image.new("RGB", (64, 48), (200, 220, 200))
    picture.paste((220, 30, 30), (0, 0, 20, 12))
    out = io.BytesIO()
    picture.transpose(Image.Transpose.ROTATE_90).save(out, "JPEG", quality=95, xmp=XMP_6)
    clean = without_metadata(out.getvalue(), "JPEG")
    with Image.open(io.BytesIO(clean)) as image:
        assert image.size == (64, 48)
        assert dict(image.getexif()) == {} and b"Orientation" not in clean
        red = image.convert("RGB").getpixel((5, 5))
    assert red[0] > 180 and red[1] < 80, red  # the red corner is top left again


XMP_6 = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
)


def test_an_upright_jpeg_keeps_no_exif_at_all():
    clean = without_metadata(photo(orientation=1), "JPEG")
    assert b"Exif" not in clean and b"Jane" not in clean
    with Image.open(io.BytesIO(clean)) as image:
        assert dict(image.getexif()) == {}


def test_a_jpeg_not_laid_out_as_jpeg_says_is_written_again_without_metadata():
    broken = photo(orientation=1)
    start = broken.index(b"\xff\xe1")
    broken = broken[:start] + b"\x00" + broken[start:]  # a stray byte before the EXIF segment
    clean = without_metadata(broken, "JPEG")
    assert b"Jane" not in clean
    with Image.open(io.BytesIO(clean)) as image:
        assert image.size == (96, 64)


@pytest.fixture
def public_run(request, client, settings, tmp_path, django_user_model):
    """A run made public, of a JPEG upright as stored (or turned, with ``indirect``)."""
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card()
    factories.route(card=card)
    owner = django_user_model.objects.create_user("ada", "ada@example.com", "pw-1234-long")
    client.force_login(owner)
    original = photo(orientation=getattr(request, "param", 1))
    response = client.post(
        f"/models/{card.model_id}/try",
        {"image": io.BytesIO(original)},
    )
    assert response.status_code == 302, response.content
    job = Job.objects.get()
    Job.objects.filter(pk=job.pk).update(is_public=True)
    return job, original


def test_a_stranger_gets_a_public_runs_image_without_its_metadata(client, public_run):
    job, original = public_run
    url = reverse("playground:job_image", args=[job.pk])
    mine = client.get(url)
    assert b"".join(mine.streaming_content) == original  # its owner: as sent
    theirs = Client().get(url)
    assert theirs.status_code == 200 and theirs["Content-Type"] == "image/jpeg"
    assert theirs.content == without_metadata(original, "JPEG")
    assert b"Jane" not in theirs.content and b"SecretCam" not in theirs.content


@pytest.mark.parametrize("public_run", [6], indirect=True)
def test_a_stranger_gets_a_turned_public_runs_image_without_its_comment(client, public_run):
    job, _ = public_run
    theirs = Client().get(reverse("playground:job_image", args=[job.pk]))
    assert theirs.status_code == 200 and theirs["Content-Type"] == "image/jpeg"
    with Image.open(io.BytesIO(theirs.content)) as image:
        assert image.size == (64, 96)  # the upright copy
        assert "comment" not in image.info and dict(image.getexif()) == {}
    for secret in (b"taken at home", b"Jane", b"SecretCam"):
        assert secret not in theirs.content, secret
