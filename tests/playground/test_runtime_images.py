"""What uploads the runtime accepts, refuses, and how it turns them into RGB."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from playground.runtime import DecodedImage, ImageError, decode_image
from playground.runtime.images import (
    EMPTY_IMAGE_MESSAGE,
    IMAGE_TOO_LARGE_UNKNOWN_MESSAGE,
    UNSUPPORTED_FORMAT_MESSAGE,
)
from tests.playground.runtime_helpers import blocks_image, encode

pytestmark = pytest.mark.same_on_any_database

MAX_PIXELS = 4_000_000


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` RGB, followed by one tiny IDAT: a
    decompression bomb's shape without its payload. Decoding it would fail as truncated,
    so an "image_too_large" answer proves the size was checked first."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def decode(data: bytes, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    return decode_image(data, max_pixels=max_pixels)


def refused(data: bytes, max_pixels: int = MAX_PIXELS) -> ImageError:
    with pytest.raises(ImageError) as info:
        decode(data, max_pixels)
    return info.value


# --- accepted formats -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("fmt", "params"),
    [("PNG", {}), ("JPEG", {"quality": 95}), ("WEBP", {"lossless": True}), ("GIF", {})],
)
def test_the_four_formats_decode_with_size_format_and_digest(fmt, params):
    image = blocks_image(64, 40, seed=1)
    data = encode(image, fmt, **params)
    decoded = decode(data)
    assert decoded.format == fmt
    assert decoded.original_size == decoded.oriented_size == (64, 40)
    assert decoded.image.mode == "RGB"
    assert decoded.sha256 == __import__("hashlib").sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("fmt", "params"), [("JPEG", {"quality": 95}), ("PNG", {}), ("WEBP", {"lossless": True})]
)
def test_an_upright_rgb_upload_is_the_image_decoded_not_a_copy(fmt, params):
    """The common upload (RGB, no EXIF turn) is answered with the image Pillow decoded, not
    a copy of it (the copy cost a third of a 640x480 JPEG's decode on a 2-core EPYC): its
    pixels are Pillow's, readable after decode_image returns."""
    data = encode(blocks_image(64, 40, seed=2), fmt, **params)
    decoded = decode(data)
    assert decoded.image.format == fmt  # a copy has no format
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(np.asarray(decoded.image), expected)


def test_a_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (20, 10), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    decoded = decode(data)
    assert decoded.image.getpixel((5, 5)) == (255, 0, 0)


# --- conversions to RGB ---------------------------------------------------------------
def test_cmyk_jpeg_becomes_rgb():
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    decoded = decode(data)
    assert decoded.image.mode == "RGB"
    red, green, blue = decoded.image.getpixel((8, 8))
    assert red > 240 and green < 15 and blue < 15


def test_palette_png_keeps_its_colours():
    image = Image.new("P", (8, 8))
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    image.paste(1, (0, 0, 4, 8))
    decoded = decode(encode(image, "PNG"))
    assert decoded.image.getpixel((1, 1)) == (10, 200, 30)
    assert decoded.image.getpixel((6, 1)) == (0, 0, 0)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_pixels_are_composited_on_white(mode):
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # transparent black
    image.paste((200, 0, 0, 255), (0, 0, 4, 8))  # opaque red half
    if mode == "LA":
        image = image.convert("LA")
    decoded = decode(encode(image, "PNG"))
    assert decoded.image.getpixel((6, 4)) == (255, 255, 255)
    assert decoded.image.getpixel((1, 4)) == ((200, 0, 0) if mode == "RGBA" else (60,) * 3)


def test_palette_transparency_is_composited_on_white():
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (0, 0, 4, 8))
    decoded = decode(encode(image, "PNG", transparency=0))
    assert decoded.image.getpixel((6, 4)) == (255, 255, 255)
    assert decoded.image.getpixel((1, 4)) == (0, 0, 255)


def test_16_bit_greyscale_is_scaled_not_clipped():
    values = np.array([[0, 256, 32768, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    decoded = decode(encode(image, "PNG"))
    assert [decoded.image.getpixel((x, 0)) for x in range(4)] == [
        (0, 0, 0),
        (1, 1, 1),
        (128, 128, 128),
        (255, 255, 255),
    ]


@pytest.mark.parametrize("mode", ["L", "1"])
def test_greyscale_and_bilevel_become_rgb(mode):
    image = Image.new("L", (8, 8), 0)
    image.paste(255, (0, 0, 4, 8))
    decoded = decode(encode(image.convert(mode), "PNG"))
    assert decoded.image.mode == "RGB"
    assert decoded.image.getpixel((1, 1)) == (255, 255, 255)
    assert decoded.image.getpixel((6, 1)) == (0, 0, 0)


# --- refusals ---------------------------------------------------------------------------
def test_a_header_over_the_limit_is_refused_before_decoding():
    error = refused(png_header_only(5000, 5000), max_pixels=MAX_PIXELS)
    assert error.code == "image_too_large"
    assert "5000x5000" in error.message


def test_a_header_past_pillows_own_bomb_guard_is_refused_as_too_large():
    error = refused(png_header_only(100_000, 100_000))
    assert error.code == "image_too_large"
    assert error.message == IMAGE_TOO_LARGE_UNKNOWN_MESSAGE.format(max_pixels=MAX_PIXELS)


def test_the_limit_is_ours_not_pillows_global():
    before = Image.MAX_IMAGE_PIXELS
    data = encode(blocks_image(40, 30, seed=2))
    assert decode(data, max_pixels=1200).original_size == (40, 30)  # exactly at the limit
    assert refused(data, max_pixels=1199).code == "image_too_large"
    assert before == Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize(("fmt", "name"), [("BMP", "BMP"), ("TIFF", "TIFF")])
def test_other_formats_are_refused_as_unsupported(fmt, name):
    error = refused(encode(blocks_image(16, 16, seed=3), fmt))
    assert error.code == "unsupported_format"
    assert error.message == UNSUPPORTED_FORMAT_MESSAGE.format(detail=f" ({name})")


def test_bytes_that_are_no_image_are_refused_as_unsupported():
    error = refused(b"<html><body>not an image</body></html>")
    assert error.code == "unsupported_format"


def test_empty_bytes_are_refused():
    error = refused(b"")
    assert (error.code, error.message) == ("corrupt_image", EMPTY_IMAGE_MESSAGE)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_truncated_files_are_refused_as_corrupt(fmt):
    data = encode(blocks_image(64, 64, seed=4), fmt)
    error = refused(data[: len(data) // 2])
    assert error.code == "corrupt_image"


def test_a_damaged_png_is_refused_as_corrupt():
    data = bytearray(encode(blocks_image(32, 32, seed=5), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 10 : idat + 30] = b"\xff" * 20  # the CRC no longer matches
    assert refused(bytes(data)).code == "corrupt_image"


def test_a_jpeg_signature_with_garbage_is_corrupt_not_unsupported():
    assert refused(b"\xff\xd8\xff" + b"\x00garbage" * 10).code == "corrupt_image"


# --- EXIF that is not what it should be --------------------------------------------------
def _tiff(entries: list[tuple[int, int, int, bytes]], extra: bytes = b"") -> bytes:
    data = b"II" + struct.pack("<HI", 42, 8) + struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        data += struct.pack("<HHI", tag, kind, count) + value
    return b"Exif\x00\x00" + data + struct.pack("<I", 0) + extra


SHORT, ASCII, RATIONAL = 3, 2, 5
MALFORMED_EXIF = {
    "garbage": (b"Exif\x00\x00" + bytes(range(200)), False),
    "truncated directory": (b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00\x12\x01", False),
    "offset past the end": (b"Exif\x00\x00II*\x00\xff\xff\xff\x7f", False),
    "orientation 9": (_tiff([(0x0112, SHORT, 1, struct.pack("<HH", 9, 0))]), False),
    "orientation 0": (_tiff([(0x0112, SHORT, 1, struct.pack("<HH", 0, 0))]), False),
    "orientation as text": (_tiff([(0x0112, ASCII, 4, b"six\x00")]), False),
    "orientation count huge": (_tiff([(0x0112, SHORT, 0x7FFFFFFF, b"\x00" * 4)]), False),
    # A readable orientation beside a broken tag (rational with zero denominator) still counts.
    "orientation 6 beside a broken tag": (
        _tiff(
            [
                (0x0112, SHORT, 1, struct.pack("<HH", 6, 0)),
                (0x011A, RATIONAL, 1, struct.pack("<I", 38)),
            ],
            struct.pack("<II", 1, 0),
        ),
        True,
    ),
}


@pytest.mark.filterwarnings("ignore::UserWarning:PIL")
@pytest.mark.parametrize("case", sorted(MALFORMED_EXIF))
def test_malformed_exif_does_not_stop_decoding(case):
    exif, rotates = MALFORMED_EXIF[case]
    image = blocks_image(48, 32, seed=6)
    data = encode(image, "PNG", exif=exif)
    decoded = decode(data)
    assert decoded.original_size == (48, 32)
    if rotates:
        assert decoded.oriented_size == (32, 48)
        assert np.array_equal(np.asarray(decoded.image), np.rot90(np.asarray(image), -1))
    else:
        assert decoded.oriented_size == (48, 32)
        assert np.array_equal(np.asarray(decoded.image), np.asarray(image))
