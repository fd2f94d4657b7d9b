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
(APP14), each known by its identifier, and every comment, are dropped, and so is everything
after the picture's end (a phone's second pictures of Multi-Picture Format, each with its
own EXIF, a Samsung trailer, a Motion Photo's video: session 48's probe got GPS back from
one). PNG keeps its chunks that draw the picture (the picture data, palette, transparency,
colour space, an APNG's frames) and loses the rest (text, XMP, EXIF, time), with nothing
after its end; GIF keeps its frames and their timing and loses its comments and
application blocks but an animation's loop count. Neither is decoded: a 40-megapixel PNG
costs a copy of its bytes, not 0.5 s of encoding per view. WebP keeps its picture, alpha,
colour profile and animation chunks and loses EXIF and XMP. A picture the worker turned is
written upright with no
orientation tag: a tag kept (or an XMP one turned into EXIF) would show a stranger another
rotation than the one the boxes were found on.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps

# The worker's own reading of the orientation, so the page and the worker cannot disagree.
from playground.runtime.images import ALLOWED_FORMATS, EXIF_TURNS, _orientation, decode_image

ORIENTATION = 0x0112
# APPn segments kept, each by its identifier: JFIF (APP0; not its JFXX thumbnail), the ICC
# colour profile (APP2; not Multi-Picture Format's index of the pictures after the first),
# Adobe's colour transform (APP14, CMYK/YCCK).
_KEPT_APP = {0xE0: (b"JFIF\0",), 0xE2: (b"ICC_PROFILE\0",), 0xEE: (b"Adobe",)}
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
    cutter = _CUTS.get(image_format)
    if not turned and cutter is not None:
        cut = cutter(data)
        if cut is not None:
            return cut
    if image_format == "GIF":  # not laid out as GIF says: its first frame, written again
        return _rewritten_gif(data)
    return _rewritten(data, image_format)


def _jpeg_cut(data: bytes) -> bytes | None:
    """The JPEG's segments without metadata, or None when it is not laid out as JPEG says
    (then it is written again instead)."""
    if data[:2] != b"\xff\xd8":
        return None
    kept: list[bytes] = []
    scanned = False
    i = 2
    while i + 1 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xD9:  # end of image: nothing after it is the picture
            kept.append(data[i : i + 2])
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
        if marker == 0xDA:  # start of scan: its coded data runs to the next marker
            scanned = True
            end = _scan_end(data, end)
        if marker == 0xE0 and data[i + 4 : i + 9] == b"JFIF\0" and end - i >= 18:
            # JFIF's header, without the thumbnail it may carry (a picture from before a
            # crop, say): its size set to 0 x 0.
            kept.append(b"\xff\xe0\x00\x10" + data[i + 4 : i + 16] + b"\x00\x00")
        elif not _jpeg_metadata(marker, data[i + 4 : end]):
            kept.append(data[i:end])
        i = end
    if not scanned:
        return None  # no scan: not a picture a browser shows
    return b"\xff\xd8" + b"".join(kept)


def _jpeg_metadata(marker: int, payload: bytes) -> bool:
    """Whether a segment is metadata: a comment, or an APPn but the kept ones."""
    if marker == 0xFE:
        return True
    if 0xE0 <= marker <= 0xEF:
        return not payload.startswith(_KEPT_APP.get(marker, ()))
    return False


def _scan_end(data: bytes, i: int) -> int:
    """Where a scan's entropy-coded data (from ``i``) ends: at the first marker that is not
    a stuffed 0xFF (0xFF00) or a restart marker (RSTn); the file's end if none."""
    while True:
        i = data.find(b"\xff", i)
        if i < 0 or i + 1 >= len(data):
            return len(data)
        following = data[i + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            i += 1
            continue
        return i


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


# PNG chunks that draw the picture (critical ones, transparency, colour space, physical
# size, significant bits, an APNG's animation and frames); text (tEXt, zTXt, iTXt: XMP among
# them), eXIf, tIME and anything else are metadata.
_PNG_KEPT = {
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP",
    b"sBIT", b"pHYs", b"bKGD", b"acTL", b"fcTL", b"fdAT",
}  # fmt: skip
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_cut(data: bytes) -> bytes | None:
    """The PNG's picture chunks, up to its IEND, or None when it is not laid out as PNG
    says (then it is written again)."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    kept = [_PNG_SIGNATURE]
    i = len(_PNG_SIGNATURE)
    while i + 12 <= len(data):
        size = int.from_bytes(data[i : i + 4], "big")
        kind = data[i + 4 : i + 8]
        end = i + 12 + size
        if end > len(data):
            return None
        if kind in _PNG_KEPT:
            kept.append(data[i:end])
        if kind == b"IEND":
            return b"".join(kept)
        i = end
    return None  # no IEND


_GIF_KEPT_APPLICATIONS = (b"NETSCAPE2.0", b"ANIMEXTS1.0")  # an animation's loop count


def _gif_cut(data: bytes) -> bytes | None:
    """The GIF's frames (images, their graphic controls, plain text) up to its trailer,
    without comments or application blocks but an animation's loop count; None when it is
    not laid out as GIF says."""
    if data[:6] not in (b"GIF87a", b"GIF89a") or len(data) < 13:
        return None
    i = 13 + _gif_table_size(data[10])
    kept = [data[:i]]
    while i < len(data):
        introducer = data[i]
        if introducer == 0x3B:  # trailer
            kept.append(b"\x3b")
            return b"".join(kept)
        if introducer == 0x2C:  # an image: descriptor, local colours, LZW code size, data
            if i + 10 > len(data):
                return None
            start, i = i, i + 10 + _gif_table_size(data[i + 9]) + 1
            i = _gif_sub_blocks_end(data, i)
            if i is None:
                return None
            kept.append(data[start:i])
        elif introducer == 0x21 and i + 1 < len(data):  # an extension
            start, label = i, data[i + 1]
            end = _gif_sub_blocks_end(data, i + 2)
            if end is None:
                return None
            identifier = data[i + 3 : i + 14] if i + 2 < len(data) else b""
            if label in (0xF9, 0x01) or (label == 0xFF and identifier in _GIF_KEPT_APPLICATIONS):
                kept.append(data[start:end])
            i = end
        else:
            return None
    return None  # no trailer


def _gif_table_size(flags: int) -> int:
    return 3 * 2 ** ((flags & 0x07) + 1) if flags & 0x80 else 0


def _gif_sub_blocks_end(data: bytes, i: int) -> int | None:
    """Where a run of data sub-blocks starting at ``i`` ends (after its empty one)."""
    while i < len(data):
        size = data[i]
        i += 1 + size
        if size == 0:
            return i if i <= len(data) else None
    return None


def _rewritten_gif(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data), formats=("GIF",)) as opened:
        out = io.BytesIO()
        opened.save(out, format="GIF", comment=b"")
    return out.getvalue()


# WebP chunks that draw the picture: its bitstream (lossy with its alpha, or lossless), the
# extended header, the colour profile, an animation's frames; EXIF and XMP are metadata.
_WEBP_KEPT = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ICCP", b"ANIM", b"ANMF"}
_VP8X_EXIF_XMP = 0x08 | 0x04  # the extended header's flags saying EXIF and XMP follow


def _webp_cut(data: bytes) -> bytes | None:
    """The WebP's picture chunks, its extended header no longer announcing EXIF or XMP, or
    None when it is not laid out as WebP says."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    end = 8 + int.from_bytes(data[4:8], "little")
    if end > len(data):
        return None
    kept = []
    i = 12
    while i + 8 <= end:
        kind, size = data[i : i + 4], int.from_bytes(data[i + 4 : i + 8], "little")
        stop = i + 8 + size + (size & 1)
        if stop > end:
            return None
        if kind == b"VP8X" and size >= 1:
            flags = data[i + 8] & ~_VP8X_EXIF_XMP
            kept.append(data[i : i + 8] + bytes([flags]) + data[i + 9 : stop])
        elif kind in _WEBP_KEPT:
            kept.append(data[i:stop])
        i = stop
    if i != end or not kept:
        return None
    body = b"WEBP" + b"".join(kept)
    return b"RIFF" + len(body).to_bytes(4, "little") + body


_CUTS = {"JPEG": _jpeg_cut, "PNG": _png_cut, "GIF": _gif_cut, "WEBP": _webp_cut}
