"""An upload as a stranger gets it: the same picture without what the camera wrote about it.

A run made public shows its image to anyone with the link. A phone's JPEG carries EXIF
(GPS position, device, owner's name, time), XMP and IPTC blocks, comments; none of it is
needed to draw the boxes, and a visitor must not get it. Its owner gets the upload as sent.

JPEG, what cameras write, is cut at the byte level, so the pixels are the upload's own (no
re-encoding): every APPn segment but JFIF (APP0), the ICC colour profile (APP2) and Adobe's
colour transform (APP14), and every comment, are dropped. The EXIF orientation is kept in a
new EXIF block holding that tag alone: the browser turns the picture by it, as the worker
did before it found the boxes. PNG and WebP are written again by Pillow, losslessly, with no
metadata but that orientation. GIF carries no EXIF: as sent.
"""

from __future__ import annotations

import io

from PIL import Image

ORIENTATION = 0x0112
_KEPT_APP = {0xE0, 0xE2, 0xEE}  # JFIF, ICC profile, Adobe (CMYK/YCCK transform)
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RSTn: no length


def orientation_exif(orientation: int) -> bytes:
    """An EXIF block (``Exif\\0\\0`` + TIFF) holding only the orientation tag."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return exif.tobytes()


def without_metadata(data: bytes, image_format: str) -> bytes:
    """``data`` (an upload of ``image_format``, as Pillow names it) without its metadata."""
    if image_format == "JPEG":
        cut = _jpeg_cut(data)
        if cut is not None:
            return cut
    if image_format in ("JPEG", "PNG", "WEBP"):
        return _rewritten(data, image_format)
    return data


def _orientation_of(data: bytes) -> int:
    try:
        with Image.open(io.BytesIO(data)) as image:
            value = image.getexif().get(ORIENTATION, 1)
    except Exception:  # a malformed block means no turn, as for the worker
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _jpeg_cut(data: bytes) -> bytes | None:
    """The JPEG's segments without metadata, or None when it is not laid out as JPEG says
    (then it is written again instead)."""
    if data[:2] != b"\xff\xd8":
        return None
    orientation = _orientation_of(data)
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
    if orientation != 1:
        block = orientation_exif(orientation)
        app1 = b"\xff\xe1" + (len(block) + 2).to_bytes(2, "big") + block
        # After JFIF's APP0 when there is one (it must come first), else first.
        at = 1 if kept and kept[0][:2] == b"\xff\xe0" else 0
        kept.insert(at, app1)
    return b"\xff\xd8" + b"".join(kept)


def _rewritten(data: bytes, image_format: str) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        orientation = _orientation_of(data)
        options: dict = {"format": image_format}
        if image.info.get("icc_profile"):
            options["icc_profile"] = image.info["icc_profile"]
        if orientation != 1:
            options["exif"] = orientation_exif(orientation)
        if image_format == "WEBP":
            options["lossless"] = True
        elif image_format == "JPEG":
            options["quality"] = 95
        out = io.BytesIO()
        image.save(out, **options)
    return out.getvalue()
