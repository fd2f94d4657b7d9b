"""An upload as the page draws it, and as a stranger gets it.

Upright: the worker turns a picture by its EXIF orientation (playground/runtime/images.py,
Pillow's ``getexif``, which also reads a WebP's EXIF and an XMP ``tiff:Orientation``) and
gives its boxes in the upright frame, but a browser may not turn it the same way (Chromium
ignores a WebP's EXIF orientation and any XMP one). So a picture the worker turned is
served as ``upright_copy``: the worker's own upright pixels (transparency on white, as the
model saw them), re-encoded with no metadata left for a browser to turn it by again.

Without metadata: a run made public shows its image to anyone with the link. A phone's JPEG
carries EXIF (GPS position, device, owner's name, time), XMP and IPTC blocks, comments;
none of it is needed to draw the boxes, and a visitor must not get it. JPEG, what cameras
write, is cut at the byte level, so the pixels are the upload's own (no re-encoding): every
APPn segment but JFIF (APP0), the ICC colour profile (APP2) and Adobe's colour transform
(APP14), and every comment, are dropped. PNG and WebP are written again by Pillow,
losslessly, with no metadata. A picture the worker turned is written upright with no
orientation tag: a tag kept (or an XMP one turned into EXIF) would show a stranger another
rotation than the one the boxes were found on. GIF carries no EXIF: as sent.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps

# The worker's own reading of the orientation, so the page and the worker cannot disagree.
from playground.runtime.images import ALLOWED_FORMATS, EXIF_TURNS, _orientation, decode_image

ORIENTATION = 0x0112
_KEPT_APP = {0xE0, 0xE2, 0xEE}  # JFIF, ICC profile, Adobe (CMYK/YCCK transform)
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RSTn: no length
UPRIGHT_JPEG_QUALITY = 95
PNG_COMPRESS_LEVEL = 3  # lossless at any level; 3 is about twice as fast as the default 6


def orientation_of(data: bytes) -> int:
    """The EXIF orientation the worker turns ``data`` by (1: none)."""
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
            return _orientation(image)
    except Exception:  # a malformed file or block means no turn, as for the worker
        return 1


def is_turned(data: bytes) -> bool:
    """Whether the worker turns (or mirrors) this upload before it finds the boxes."""
    return orientation_of(data) in EXIF_TURNS


def upright_copy(data: bytes, *, max_pixels: int) -> tuple[bytes, str]:
    """``data`` as the model saw it, as ``(bytes, content type)``: the worker's decoding
    (orientation applied, transparency on white), with no EXIF or XMP left. A high-quality
    JPEG (4:4:4) for a lossy source (JPEG, lossy WebP), else a PNG: pixel for pixel.
    Raises the worker's ``ImageError`` for bytes it would refuse."""
    decoded = decode_image(data, max_pixels=max_pixels)
    # The colours the browser showed the upload in; nothing else from the upload.
    options = _save_options(icc_profile=_rgb_icc_profile(data))
    out = io.BytesIO()
    if decoded.format == "JPEG" or (decoded.format == "WEBP" and not _lossless_webp(data)):
        decoded.image.save(
            out, format="JPEG", quality=UPRIGHT_JPEG_QUALITY, subsampling=0, **options
        )
        return out.getvalue(), "image/jpeg"
    decoded.image.save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL, **options)
    return out.getvalue(), "image/png"


def _save_options(*, icc_profile: bytes | None) -> dict:
    """Options for ``Image.save`` that write no metadata but ``icc_profile`` (when given).

    Pillow's savers copy some of it from the image's ``info`` unless told otherwise: the
    JPEG saver the upload's comment (still in ``info`` after a turn or a conversion), the
    PNG saver its ICC profile (a CMYK or grey one too). Both are named here, empty when
    not wanted, so an option left out cannot bring them back."""
    return {"comment": b"", "icc_profile": icc_profile or None}


def _rgb_icc_profile(data: bytes) -> bytes | None:
    """The upload's ICC profile when it describes RGB (a CMYK or grey one cannot go with
    the RGB pixels ``decode_image`` gives)."""
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
            icc = image.info.get("icc_profile")
    except Exception:
        return None
    return icc if isinstance(icc, bytes) and icc[16:20] == b"RGB " else None


def _lossless_webp(data: bytes) -> bool:
    """Whether a WebP's picture is VP8L (lossless), walking its RIFF chunks."""
    i = 12
    while i + 8 <= len(data):
        fourcc, size = data[i : i + 4], int.from_bytes(data[i + 4 : i + 8], "little")
        if fourcc == b"VP8L":
            return True
        if fourcc == b"VP8 ":
            return False
        i += 8 + size + (size & 1)
    return False


def without_metadata(data: bytes, image_format: str) -> bytes:
    """``data`` (an upload of ``image_format``, as Pillow names it) without its metadata,
    upright when the worker turns it."""
    turned = is_turned(data)
    if image_format == "JPEG" and not turned:
        cut = _jpeg_cut(data)
        if cut is not None:
            return cut
    if image_format in ("JPEG", "PNG", "WEBP"):
        return _rewritten(data, image_format)
    return data


def _jpeg_cut(data: bytes) -> bytes | None:
    """The JPEG's segments without metadata, or None when it is not laid out as JPEG says
    (then it is written again instead)."""
    if data[:2] != b"\xff\xd8":
        return None
    kept: list[bytes] = []
    i = 2
    while i + 1 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:  # start of scan: the picture itself, to the end
            kept.append(data[i:])
            break
        if marker in _STANDALONE:
            kept.append(data[i : i + 2])
            i += 2
            continue
        if i + 4 > len(data):
            return None
        end = i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        if end > len(data):
            return None
        is_metadata = (0xE1 <= marker <= 0xEF and marker not in _KEPT_APP) or marker == 0xFE
        if not is_metadata:
            kept.append(data[i:end])
        i = end
    else:
        return None  # no scan: not a picture a browser shows
    return b"\xff\xd8" + b"".join(kept)


def _rewritten(data: bytes, image_format: str) -> bytes:
    with Image.open(io.BytesIO(data)) as opened:
        image = opened
        if _orientation(opened) in EXIF_TURNS:
            # The worker's turn (it applies ImageOps.exif_transpose to the same reading);
            # the copy is saved with no EXIF or XMP, so nothing turns it again.
            image = ImageOps.exif_transpose(opened)
        # The turned copy still holds the upload's ``info`` (its comment among it).
        options = _save_options(icc_profile=opened.info.get("icc_profile"))
        options["format"] = image_format
        if image_format == "WEBP":
            options["lossless"] = True
        elif image_format == "JPEG":
            options["quality"] = UPRIGHT_JPEG_QUALITY
        out = io.BytesIO()
        image.save(out, **options)
    return out.getvalue()
