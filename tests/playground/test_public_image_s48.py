"""What session 48's security probe got back from a public run's image as a stranger, each
as it must be now (playground/public_image.py): nothing after a JPEG's picture (a phone's
second pictures with their own EXIF, a trailer), no PNG text or EXIF chunk, no GIF comment
or XMP block; the pixels the upload's own, not written again."""

from __future__ import annotations

import io
import zlib

import pytest
from PIL import Image, ImageChops

from playground.public_image import without_metadata

GPS_IFD, MAKE = 0x8825, 0x010F
SECRETS = (b"SecretCam", b"TRAILER-SECRET", b"home of alice", b"Jane's house")


def gps_jpeg(size=(40, 30), colour=(1, 2, 3), **options) -> bytes:
    image = Image.new("RGB", size, colour)
    exif = Image.Exif()
    exif[MAKE] = "SecretCam"
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)})
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes(), **options)
    return out.getvalue()


def noise_jpeg(**options) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((96, 64), 40).convert("RGB").save(out, "JPEG", **options)
    return out.getvalue()


def pixels(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def assert_clean(clean: bytes, original: bytes) -> None:
    for secret in SECRETS:
        assert secret not in clean, secret
    assert ImageChops.difference(pixels(original), pixels(clean)).getbbox() is None


def test_nothing_after_a_jpegs_picture_reaches_a_stranger():
    # A phone's second picture (its own EXIF and GPS) and a trailer, after the first's end.
    picture = noise_jpeg()
    original = picture + gps_jpeg() + b"TRAILER-SECRET-owner=alice@example.org"
    clean = without_metadata(original, "JPEG")
    assert_clean(clean, picture)
    assert clean.endswith(b"\xff\xd9")
    # Cut, not written again: the picture's scan is the upload's own bytes.
    scan = picture[picture.index(b"\xff\xda") :]
    assert clean.endswith(scan)


def test_a_multi_picture_jpeg_keeps_its_first_picture_only():
    first = Image.effect_noise((64, 48), 30).convert("RGB")
    second = Image.new("RGB", (32, 24), (9, 9, 9))
    exif = Image.Exif()
    exif[MAKE] = "SecretCam"
    out = io.BytesIO()
    first.save(out, "MPO", save_all=True, append_images=[second], exif=exif.tobytes())
    original = out.getvalue()
    assert original.count(b"\xff\xd8") >= 2 and b"MPF\0" in original
    clean = without_metadata(original, "JPEG")
    assert b"MPF\0" not in clean  # the index of the pictures that are gone
    assert clean.count(b"\xff\xd8") == 1
    with Image.open(io.BytesIO(clean)) as image:
        assert image.format == "JPEG" and getattr(image, "n_frames", 1) == 1
    assert_clean(clean, original)


@pytest.mark.parametrize(
    "options",
    [{"progressive": True}, {"restart_marker_blocks": 1}, {"progressive": True, "optimize": True}],
    ids=["progressive", "restart-markers", "progressive-optimized"],
)
def test_jpegs_with_many_scans_or_restart_markers_are_cut_whole(options):
    picture = noise_jpeg(**options)
    original = picture + b"TRAILER-SECRET"
    clean = without_metadata(original, "JPEG")
    assert_clean(clean, picture)
    assert clean == picture[:2] + clean[2:]  # a JPEG
    assert clean[-2:] == b"\xff\xd9"


def test_a_comment_between_scans_goes():
    picture = noise_jpeg(progressive=True)
    second_scan = picture.index(b"\xff\xda", picture.index(b"\xff\xda") + 2)
    comment = b"\xff\xfe" + (2 + 12).to_bytes(2, "big") + b"home of alice"[:12]
    original = picture[:second_scan] + comment + picture[second_scan:]
    clean = without_metadata(original, "JPEG")
    assert b"home of alic" not in clean
    assert clean == picture  # exactly the picture without the comment


def chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return len(payload).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")


def test_a_pngs_text_and_exif_chunks_go_and_its_pixels_are_not_written_again():
    image = Image.effect_noise((80, 60), 50).convert("RGB")
    exif = Image.Exif()
    exif[MAKE] = "SecretCam"
    out = io.BytesIO()
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "home of alice")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>Jane's house</x:xmpmeta>")
    image.save(out, "PNG", pnginfo=info, exif=exif.tobytes())
    original = out.getvalue() + b"TRAILER-SECRET"
    clean = without_metadata(original, "PNG")
    assert_clean(clean, original[: -len(b"TRAILER-SECRET")])
    assert clean.endswith(chunk(b"IEND", b""))
    # The compressed picture data is the upload's own (a copy, no encoding).
    idat = original.index(b"IDAT") - 4
    assert original[idat : original.index(b"IEND") - 4] in clean
    with Image.open(io.BytesIO(clean)) as opened:
        assert dict(opened.getexif()) == {} and not opened.text


def test_an_animated_png_keeps_its_frames():
    frames = [Image.new("RGB", (20, 20), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, "PNG", save_all=True, append_images=frames[1:], duration=100, loop=0)
    original = out.getvalue()
    original = original[:33] + chunk(b"tEXt", b"Comment\0home of alice") + original[33:]
    clean = without_metadata(original, "PNG")
    assert b"home of alice" not in clean
    with Image.open(io.BytesIO(clean)) as opened:
        assert opened.n_frames == 2


def gif_with_secrets() -> bytes:
    frames = [
        Image.new("RGB", (24, 16), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))
    ]
    out = io.BytesIO()
    frames[0].save(
        out, "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0,
        comment=b"GPS 48.8583N 2.2945E home of alice",
    )  # fmt: skip
    data = out.getvalue()
    # An XMP application block (as Photoshop writes it) before the trailer, then a trailer.
    xmp = b"<x:xmpmeta>Jane's house</x:xmpmeta>"
    blocks = b"".join(
        bytes([len(xmp[i : i + 255])]) + xmp[i : i + 255] for i in range(0, len(xmp), 255)
    )
    application = b"\x21\xff\x0bXMP DataXMP" + blocks + b"\x00"
    return data[:-1] + application + b"\x3b" + b"TRAILER-SECRET"


def test_a_gifs_comments_and_application_blocks_go_its_animation_stays():
    original = gif_with_secrets()
    assert b"home of alice" in original and b"Jane's house" in original
    clean = without_metadata(original, "GIF")
    for secret in SECRETS:
        assert secret not in clean, secret
    with Image.open(io.BytesIO(original)) as before, Image.open(io.BytesIO(clean)) as after:
        assert after.n_frames == before.n_frames == 3
        assert after.info.get("loop") == 0  # the animation's loop count is kept
        assert "comment" not in after.info and "xmp" not in after.info
        for frame in range(3):
            before.seek(frame)
            after.seek(frame)
            assert (
                ImageChops.difference(before.convert("RGB"), after.convert("RGB")).getbbox() is None
            )


def test_a_gif_not_laid_out_as_gif_says_is_written_again_without_its_comment():
    original = gif_with_secrets()
    broken = original[: original.index(b"\x21\xff\x0bXMP")] + b"\x99garbage home of alice"
    clean = without_metadata(broken, "GIF")
    assert b"home of alice" not in clean
    with Image.open(io.BytesIO(clean)) as opened:
        assert opened.format == "GIF"


@pytest.mark.parametrize("lossless", [False, True], ids=["lossy", "lossless"])
def test_a_webps_exif_and_xmp_go_its_picture_is_not_written_again(lossless):
    image = Image.effect_noise((80, 60), 50).convert("RGB")
    exif = Image.Exif()
    exif[MAKE] = "SecretCam"
    out = io.BytesIO()
    image.save(
        out, "WEBP", lossless=lossless, exif=exif.tobytes(),
        xmp=b"<x:xmpmeta>Jane's house</x:xmpmeta>",
    )  # fmt: skip
    original = out.getvalue()
    assert b"SecretCam" in original and b"Jane's house" in original
    clean = without_metadata(original, "WEBP")
    assert_clean(clean, original)
    kind = b"VP8L" if lossless else b"VP8 "
    start = original.index(kind)
    size = int.from_bytes(original[start + 4 : start + 8], "little")
    assert original[start : start + 8 + size] in clean  # the bitstream as uploaded
    with Image.open(io.BytesIO(clean)) as opened:
        assert opened.format == "WEBP" and not opened.getexif() and "xmp" not in opened.info


def test_an_animated_webp_keeps_its_frames():
    frames = [Image.new("RGB", (20, 20), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    exif = Image.Exif()
    exif[MAKE] = "SecretCam"
    out = io.BytesIO()
    frames[0].save(
        out, "WEBP", save_all=True, append_images=frames[1:], duration=100, loop=0,
        exif=exif.tobytes(),
    )  # fmt: skip
    original = out.getvalue()
    clean = without_metadata(original, "WEBP")
    assert b"SecretCam" not in clean
    with Image.open(io.BytesIO(clean)) as opened:
        assert opened.n_frames == 2


def test_a_jfif_thumbnail_goes_with_its_header_kept():
    """JFIF's APP0 may carry a thumbnail (of the picture before a crop, say): the header
    stays, the thumbnail goes (the verification probe)."""
    picture = noise_jpeg()
    assert picture[2:4] == b"\xff\xe0" and picture[6:11] == b"JFIF\0"
    length = int.from_bytes(picture[4:6], "big")
    thumbnail = bytes([200, 10, 10]) * 4  # 2 x 2 RGB
    header = bytearray(picture[4 + 2 : 4 + 2 + 12])
    app0 = b"\xff\xe0" + (16 + len(thumbnail)).to_bytes(2, "big") + bytes(header) + b"\x02\x02"
    original = picture[:2] + app0 + thumbnail + picture[4 + length :]
    with Image.open(io.BytesIO(original)) as opened:
        assert opened.size == (96, 64)
    clean = without_metadata(original, "JPEG")
    assert thumbnail not in clean
    assert clean[2:6] == b"\xff\xe0\x00\x10" and clean[6:11] == b"JFIF\0"
    assert clean[18:20] == b"\x00\x00"  # no thumbnail
    assert_clean(clean, picture)
