"""Phone photos: the EXIF orientation tag decides which way is up, for pixels and boxes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from playground.runtime import CheckpointSpec, decode_image, get_detector
from tests.playground.runtime_helpers import blocks_image, encode

pytestmark = pytest.mark.same_on_any_database

MAX_PIXELS = 10_000_000
ORIENTATION_TAG = 0x0112
WIDTH, HEIGHT = 80, 48


def stored_pixels(upright: np.ndarray, orientation: int) -> np.ndarray:
    """What a camera writes for ``orientation`` (EXIF 2.3, tag 274) when the scene is
    ``upright``: the inverse of the transform a viewer applies. Written with numpy, not
    Pillow's transpose table, so the test does not share the code under test's mapping."""
    return {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],  # viewer mirrors left-right
        3: lambda a: a[::-1, ::-1],  # viewer rotates 180
        4: lambda a: a[::-1, :],  # viewer mirrors top-bottom
        5: lambda a: a.transpose(1, 0, 2),  # viewer transposes (main diagonal)
        6: lambda a: np.rot90(a, 1),  # viewer rotates 90 clockwise
        7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),  # viewer transverses (anti-diagonal)
        8: lambda a: np.rot90(a, -1),  # viewer rotates 90 counter-clockwise
    }[orientation](upright)


def tagged(upright: Image.Image, orientation: int, fmt: str = "PNG", **params) -> bytes:
    pixels = np.ascontiguousarray(stored_pixels(np.asarray(upright), orientation))
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    return encode(Image.fromarray(pixels), fmt, exif=exif, **params)


@pytest.fixture(scope="module")
def upright() -> Image.Image:
    return blocks_image(WIDTH, HEIGHT, seed=7)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_decodes_to_the_upright_pixels(upright, orientation):
    data = tagged(upright, orientation)
    decoded = decode_image(data, max_pixels=MAX_PIXELS)
    swapped = orientation >= 5
    assert decoded.original_size == ((HEIGHT, WIDTH) if swapped else (WIDTH, HEIGHT))
    assert decoded.oriented_size == (WIDTH, HEIGHT)
    assert decoded.image.mode == "RGB"
    assert np.array_equal(np.asarray(decoded.image), np.asarray(upright))


def test_detections_on_tagged_images_are_those_on_the_upright_image(upright, runtime_checkpoint):
    detector = get_detector(
        CheckpointSpec(local_dir=str(runtime_checkpoint("yolos_tiny"))), device="cpu"
    )
    reference = decode_image(encode(upright), max_pixels=MAX_PIXELS)
    images = [reference] + [
        decode_image(tagged(upright, orientation), max_pixels=MAX_PIXELS)
        for orientation in range(2, 9)
    ]
    results = detector.detect(images, threshold=0.1)
    assert len(results[0].detections) >= 5
    for result in results[1:]:
        assert result.detections == results[0].detections


def test_a_rotated_jpeg_from_a_phone_comes_out_upright(upright):
    # JPEG is lossy: the transposed blocks compress differently, so compare loosely.
    data = tagged(upright, 6, "JPEG", quality=95)
    decoded = decode_image(data, max_pixels=MAX_PIXELS)
    assert decoded.format == "JPEG"
    assert decoded.original_size == (HEIGHT, WIDTH)
    assert decoded.oriented_size == (WIDTH, HEIGHT)
    difference = np.abs(np.asarray(decoded.image, int) - np.asarray(upright, int))
    assert difference.mean() < 8
