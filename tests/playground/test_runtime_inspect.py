"""The web tier's check of an upload (``inspect_image``) accepts and refuses exactly what the
worker's decoding (``decode_image``) does, with the same facts and the same errors: it only
skips building the full-size RGB image (a JPEG is read at 1/8 scale)."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image

from playground.runtime import ImageError, decode_image, inspect_image
from tests.playground.runtime_helpers import blocks_image, encode
from tests.playground.test_runtime_exif import tagged
from tests.playground.test_runtime_images import MALFORMED_EXIF, png_header_only

pytestmark = pytest.mark.same_on_any_database

MAX_PIXELS = 4_000_000


def outcome(check, data: bytes, max_pixels: int = MAX_PIXELS):
    """What a check says about ``data``: its facts, or its error's code and message."""
    try:
        result = check(data, max_pixels=max_pixels)
    except ImageError as exc:
        return ("refused", exc.code, exc.message)
    return ("accepted", result.format, result.original_size, result.oriented_size, result.sha256)


def assert_same_verdict(data: bytes, max_pixels: int = MAX_PIXELS) -> tuple:
    decoded = outcome(decode_image, data, max_pixels)
    assert outcome(inspect_image, data, max_pixels) == decoded
    return decoded


def photo(width: int, height: int, seed: int) -> Image.Image:
    """Noise over blocks: an entropy-coded stream with something in every block."""
    rng = np.random.default_rng(seed)
    base = np.asarray(blocks_image(width, height, seed=seed), dtype=np.int16)
    noisy = base + rng.integers(-40, 40, size=base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


JPEG_KINDS = {
    "baseline": {"quality": 90},
    "progressive": {"quality": 90, "progressive": True},
    "4:4:4": {"quality": 95, "subsampling": 0},
    "tiny quality": {"quality": 5},
}


@pytest.mark.parametrize(
    ("fmt", "params"),
    [("PNG", {}), ("WEBP", {"lossless": True}), ("GIF", {})]
    + [("JPEG", params) for params in JPEG_KINDS.values()],
)
@pytest.mark.parametrize("size", [(64, 40), (7, 5), (1, 1), (333, 17)])
def test_accepted_images_have_the_same_facts(fmt, params, size):
    verdict = assert_same_verdict(encode(photo(*size, seed=size[0]), fmt, **params))
    assert verdict[:2] == ("accepted", fmt)


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_greyscale_and_cmyk_jpegs_have_the_same_facts(mode):
    image = photo(48, 40, seed=3).convert(mode)
    assert assert_same_verdict(encode(image, "JPEG", quality=85))[0] == "accepted"


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_every_orientation_gives_the_decoded_upright_size(orientation, fmt):
    params = {"quality": 90} if fmt == "JPEG" else {}
    verdict = assert_same_verdict(tagged(photo(80, 48, seed=9), orientation, fmt, **params))
    stored = (48, 80) if orientation >= 5 else (80, 48)  # the camera's pixels
    assert verdict[2:4] == (stored, (80, 48))


@pytest.mark.filterwarnings("ignore::UserWarning:PIL")
@pytest.mark.parametrize("case", sorted(MALFORMED_EXIF))
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_malformed_exif_is_read_as_the_decoder_reads_it(case, fmt):
    exif, _rotates = MALFORMED_EXIF[case]
    assert_same_verdict(encode(photo(48, 32, seed=6), fmt, exif=exif))


@pytest.mark.parametrize("kind", sorted(JPEG_KINDS))
def test_a_jpeg_cut_anywhere_gets_the_same_verdict(kind):
    data = encode(photo(96, 72, seed=11), "JPEG", **JPEG_KINDS[kind])
    verdicts = {assert_same_verdict(data[:cut])[0] for cut in range(0, len(data), 97)}
    assert "refused" in verdicts  # the cuts reach into the compressed stream


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "GIF"])
def test_other_formats_cut_in_half_are_refused_by_both(fmt):
    data = encode(photo(64, 64, seed=4), fmt)
    assert assert_same_verdict(data[: len(data) // 2])[:2] == ("refused", "corrupt_image")


@pytest.mark.parametrize("kind", sorted(JPEG_KINDS))
def test_damaged_jpeg_bytes_get_the_same_verdict(kind):
    """Bytes overwritten at seeded places, headers and compressed stream alike: whatever
    the full decoder makes of them (refused, or accepted with wrong pixels), the check
    at 1/8 scale makes the same."""
    data = encode(photo(96, 72, seed=12), "JPEG", **JPEG_KINDS[kind])
    rng = random.Random(kind)
    for _ in range(60):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            at, count = rng.randrange(2, len(data)), rng.randint(1, 8)
            damaged[at : at + count] = bytes(rng.randrange(256) for _ in damaged[at : at + count])
        assert_same_verdict(bytes(damaged))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image at all",
        b"\xff\xd8\xff" + b"\x00garbage" * 10,
        b"BM" + b"\x00" * 60,
        png_header_only(5000, 5000),
    ],
    ids=["empty", "text", "jpeg signature, garbage", "bmp", "png bomb header"],
)
def test_refusals_before_any_pixel_are_the_same(data):
    assert assert_same_verdict(data)[0] == "refused"


def test_the_pixel_limit_is_applied_to_the_header_size():
    data = encode(photo(200, 100, seed=2), "JPEG")
    assert assert_same_verdict(data, max_pixels=19_999)[:2] == ("refused", "image_too_large")
    assert assert_same_verdict(data, max_pixels=20_000)[0] == "accepted"


def test_a_multi_picture_jpeg_is_reported_as_jpeg():
    """MPO (many phone photos: a JPEG with a second, smaller picture after it)."""
    first, second = photo(64, 48, seed=1), photo(32, 24, seed=2)
    buffer = io.BytesIO()
    first.save(buffer, "MPO", save_all=True, append_images=[second])
    data = buffer.getvalue()
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert assert_same_verdict(data)[:3] == ("accepted", "JPEG", (64, 48))
