"""Turning uploaded bytes into an upright RGB image, refusing what we do not want to decode.

Untrusted input: only four formats are parsed, the pixel count is checked from the header
before any pixel is decoded, and every decoder failure becomes an ``ImageError``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import io
import logging
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps

from playground.runtime.errors import (
    CORRUPT_IMAGE,
    IMAGE_TOO_LARGE,
    UNSUPPORTED_FORMAT,
    ImageError,
)

logger = logging.getLogger(__name__)

# The Pillow plugins we let near uploaded bytes. MPO is what Pillow's JPEG plugin calls a
# multi-picture JPEG (many phone photos); it is decoded as its first picture.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
FORMAT_ALIASES = {"MPO": "JPEG"}

EMPTY_IMAGE_MESSAGE = "The image is empty."
UNSUPPORTED_FORMAT_MESSAGE = (
    "Unsupported image format{detail}: send a JPEG, PNG, WebP or GIF image."
)
IMAGE_TOO_LARGE_MESSAGE = (
    "The image is {width}x{height} ({pixels:,} pixels); the limit is {max_pixels:,} pixels."
)
IMAGE_TOO_LARGE_UNKNOWN_MESSAGE = "The image is larger than the {max_pixels:,} pixel limit."
CORRUPT_IMAGE_MESSAGE = (
    "The {format} image is incomplete or damaged ({reason}): re-export it, or send the "
    "original file."
)
# What a refusal calls each format (Pillow's names are upper case).
FORMAT_NAMES = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "GIF": "GIF"}
UNREADABLE_HEADER = "its header could not be read"
ZERO_SIZE = "its header gives a width or height of 0"

# Magic numbers: which allowed format the bytes claim to be (a claim Pillow then fails to
# honour means a corrupt file, not an unsupported one), and a name for some we refuse.
_ALLOWED_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)
_REFUSED_MAGIC = (
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
)


@dataclass
class DecodedImage:
    """An upload decoded for detection.

    ``image`` is RGB and upright (EXIF orientation applied); boxes are reported in its
    coordinates. ``original_size`` is the stored (width, height), ``oriented_size`` the
    upright one: they differ (swapped) for EXIF orientations 5-8.
    """

    image: Image.Image
    original_size: tuple[int, int]
    oriented_size: tuple[int, int]
    format: str
    sha256: str


def sniff_format(data: bytes) -> str | None:
    """The format the leading bytes claim, allowed or not; None when unrecognised."""
    for magic, name in _ALLOWED_MAGIC + _REFUSED_MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        return "AVIF" if brand.startswith(b"avi") else "HEIF"
    return None


@dataclass(frozen=True)
class ImageFacts:
    """What the web tier needs to know about an upload, without its pixels: the same
    format, sizes and digest ``decode_image`` gives for the same bytes."""

    original_size: tuple[int, int]
    oriented_size: tuple[int, int]
    format: str
    sha256: str


def _open(data: bytes, *, max_pixels: int) -> tuple[Image.Image, str]:
    """Open ``data`` and check its header (a known format, a non-empty canvas within
    ``max_pixels``); no pixel is decoded yet. Returns the open image and its format name."""
    if not data:
        raise ImageError(EMPTY_IMAGE_MESSAGE, code=CORRUPT_IMAGE)
    claimed = sniff_format(data)
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        # Pillow's own global guard fired while reading the header (a canvas over twice
        # Image.MAX_IMAGE_PIXELS): far past any limit of ours too.
        raise ImageError(
            IMAGE_TOO_LARGE_UNKNOWN_MESSAGE.format(max_pixels=max_pixels), code=IMAGE_TOO_LARGE
        ) from exc
    except Exception as exc:  # Pillow raises many types for bytes it cannot identify.
        if claimed in ALLOWED_FORMATS:
            raise ImageError(_corrupt(claimed, UNREADABLE_HEADER), code=CORRUPT_IMAGE) from exc
        detail = f" ({claimed})" if claimed else ""
        raise ImageError(
            UNSUPPORTED_FORMAT_MESSAGE.format(detail=detail), code=UNSUPPORTED_FORMAT
        ) from exc

    fmt = FORMAT_ALIASES.get(image.format or "", image.format or claimed or "unknown")
    width, height = image.size
    error = None
    if width <= 0 or height <= 0:
        error = ImageError(_corrupt(fmt, ZERO_SIZE), code=CORRUPT_IMAGE)
    elif width * height > max_pixels:
        error = ImageError(
            IMAGE_TOO_LARGE_MESSAGE.format(
                width=width, height=height, pixels=width * height, max_pixels=max_pixels
            ),
            code=IMAGE_TOO_LARGE,
        )
    if error is not None:
        image.close()
        raise error
    return image, fmt


def _corrupt(fmt: str, reason: str) -> str:
    """The corrupt_image message: what is wrong and what to do, the decoder's detail in
    parentheses (its own parenthesis, "truncated (7 bytes not processed)", flattened)."""
    reason = re.sub(r" \((.*)\)$", r": \1", reason.strip().rstrip(".")) or "broken data"
    return CORRUPT_IMAGE_MESSAGE.format(format=FORMAT_NAMES.get(fmt, fmt), reason=reason)


def _load(image: Image.Image, fmt: str) -> None:
    """Decode the pixels (``load``), every decoder failure an ``ImageError``.

    A JPEG missing only its end-of-image marker is refused like any truncated file, though
    browsers show it: libjpeg cannot tell it from a file cut mid-scan (given the marker, a
    scan cut in half decodes "fine", its missing rows grey), and Pillow's way of accepting
    it (``LOAD_TRUNCATED_IMAGES``) is one global switch that accepts every truncated file.
    The web check and the worker both come here, so they refuse the same bytes."""
    try:
        # Animated GIF/WebP: the file is positioned on its first frame after open.
        image.load()
    except Exception as exc:  # truncated data, bad CRC, broken stream: all "corrupt".
        raise ImageError(_corrupt(fmt, str(exc)), code=CORRUPT_IMAGE) from exc


def decode_image(data: bytes, *, max_pixels: int) -> DecodedImage:
    """Decode ``data`` into an upright RGB image, or raise ``ImageError``.

    The width x height in the header is checked against ``max_pixels`` before the pixels
    are decoded, so a small file claiming a huge canvas costs nothing.
    """
    image, fmt = _open(data, max_pixels=max_pixels)
    try:
        width, height = image.size
        _load(image, fmt)
        rgb = to_rgb(_exif_upright(image))
    except BaseException:
        image.close()
        raise
    if rgb is not image:
        image.close()  # its pixels were copied into rgb
    # Else the decoded image itself is the answer, not a copy of it (a copy cost a
    # third of a 640x480 JPEG's decode): it holds no file, only a BytesIO over ``data``.

    return DecodedImage(
        image=rgb,
        original_size=(width, height),
        oriented_size=rgb.size,
        format=fmt,
        sha256=hashlib.sha256(data).hexdigest(),
    )


DECODE_THREADS_ENV = "VITRINE_DECODE_THREADS"
# (pid, threads, pool): a forked child, or another thread count, makes its own.
_pool: tuple[int, int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def decode_threads() -> int:
    """Threads that decode a batch's images at once (VITRINE_DECODE_THREADS, default: this
    process's CPUs, at most 16)."""
    from playground.runtime.env import env_int

    try:
        cpus = len(os.sched_getaffinity(0))  # the CPUs this process may run on (Linux)
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, env_int(DECODE_THREADS_ENV, min(cpus, 16)))


def decode_many(
    items: Sequence, decode: Callable[..., object], *, threads: int | None = None
) -> list[object]:
    """``decode(item)`` for each item, in order, on a pool of threads when there are several:
    Pillow decodes, rotates and converts with the GIL released, so a batch's images decode
    in parallel (on a GPU host, the CPU's whole share of each image once the resize runs on
    the device). An exception ``decode`` raises is returned in its item's place, not
    raised, so one bad image does not stop the others. ``decode`` must not use the
    database (each thread would open its own connection)."""

    def outcome(item):
        try:
            return decode(item)
        except Exception as exc:  # returned in its place: the caller decides per item
            return exc

    if len(items) > 1:
        threads = decode_threads() if threads is None else threads
        if threads > 1:
            return list(_decode_pool(threads).map(outcome, items))
    return [outcome(item) for item in items]


def _decode_pool(threads: int) -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool[:2] != (os.getpid(), threads):
            if _pool is not None and _pool[0] == os.getpid():
                _pool[2].shutdown(wait=False)  # this process's, for another thread count
            _pool = (os.getpid(), threads, ThreadPoolExecutor(threads, thread_name_prefix="decode"))
        return _pool[2]


# EXIF orientations that swap width and height (the transposes and the quarter turns).
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})


def inspect_image(data: bytes, *, max_pixels: int) -> ImageFacts:
    """Check ``data`` as ``decode_image`` would, refusing the same bytes with the same
    ``ImageError``, and return its facts without building the upright RGB image.

    For the web tier, which only accepts or refuses an upload: the worker decodes it for
    the model. A JPEG's whole compressed stream is still read (truncated or broken data is
    refused here, not in the worker), but at 1/8 scale, skipping the full-size inverse DCT,
    upsampling and colour conversion: 1.2 -> 0.3 ms for a 640x480 JPEG and 110-122 -> 16-32
    ms for a 12-megapixel photo (1-2.5 MB) on two EPYC cores. Other formats are decoded in
    full, so the pixels being decoded at once in this process are bounded by
    ``decode_budget(max_pixels)`` (a caller past it waits its turn), and the memory of a
    large decode is handed back to the system afterwards (``release_free_memory``): a
    155 KB PNG may declare 6320x6320 RGBA, 160 MB decoded.
    """
    image, fmt = _open(data, max_pixels=max_pixels)
    decoded_pixels = 0
    try:
        with image:
            width, height = image.size
            if fmt == "JPEG":
                image.draft(None, (1, 1))  # the largest DCT scaling (1/8) libjpeg offers
            decoded_pixels = image.size[0] * image.size[1]  # what load() allocates
            if fmt == "JPEG" and image.info.get("progressive"):
                # A progressive JPEG's scans are gathered in a coefficient buffer of the full
                # size (2 bytes a sample), whatever the scale it is read at: 8 concurrent
                # checks of a 466 KB progressive 6300x6300 JPEG took a uvicorn process to a
                # 1,496 MB peak while 1/8 of its pixels was held here (session 40).
                decoded_pixels = width * height
            # Held until the image is closed (its pixels freed), not just while decoding.
            with decode_budget(max_pixels).hold(decoded_pixels):
                try:
                    _load(image, fmt)
                    swapped = _orientation(image) in _SWAPPING_ORIENTATIONS
                finally:
                    image.close()
    finally:
        if decoded_pixels >= RELEASE_AFTER_PIXELS:
            release_free_memory()
    return ImageFacts(
        original_size=(width, height),
        oriented_size=(height, width) if swapped else (width, height),
        format=fmt,
        sha256=hashlib.sha256(data).hexdigest(),
    )


class DecodeBudget:
    """A first-come, first-served semaphore counted in decoded pixels.

    ``hold(pixels)`` waits until ``pixels`` more fit under ``capacity`` and every earlier
    caller has had its turn (a large decode is not starved by a stream of small ones), then
    holds them until its block ends. A request for more than the capacity holds all of it.
    ``peak`` is the most pixels ever held at once; ``waiting`` how many callers wait now."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self.held = 0
        self.peak = 0
        self._queue: deque[object] = deque()
        self._turn = threading.Condition()

    @property
    def waiting(self) -> int:
        with self._turn:
            return len(self._queue)

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        weight = min(max(1, pixels), self.capacity)
        ticket = object()
        with self._turn:
            self._queue.append(ticket)
            try:
                while self._queue[0] is not ticket or self.held + weight > self.capacity:
                    self._turn.wait()
            finally:
                self._queue.remove(ticket)
                self._turn.notify_all()  # the next in line may fit too (or is first now)
            self.held += weight
            self.peak = max(self.peak, self.held)
        try:
            yield
        finally:
            with self._turn:
                self.held -= weight
                self._turn.notify_all()


# (pid, capacity) -> budget: a forked child gets its own (a parent's lock may be held).
_budgets: dict[tuple[int, int], DecodeBudget] = {}
_budgets_lock = threading.Lock()
# After a decode this large (~16 MB of pixels), free memory is handed back to the system.
RELEASE_AFTER_PIXELS = 4_000_000


def decode_budget(max_pixels: int) -> DecodeBudget:
    """This process's budget for full decodes: ``max_pixels`` at once, i.e. one image of
    the largest size allowed (at most 4 bytes a pixel in Pillow: 160 MB at 40 MP), or
    many smaller ones together, whatever the number of concurrent calls."""
    key = (os.getpid(), max_pixels)
    with _budgets_lock:
        budget = _budgets.get(key)
        if budget is None:
            budget = _budgets[key] = DecodeBudget(max_pixels)
        return budget


_malloc_trim: Callable[[int], int] | bool | None = None


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim(0)``; a
    no-op where there is none). Pillow allocates a large image in blocks that glibc serves
    from its per-thread arenas once it has freed one such block: freed, they stayed in the
    process (8 concurrent 160 MB decodes left a web process at 1.27 GB)."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
            trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
            _malloc_trim = trim
        except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)  # ctypes releases the GIL for the call


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation ``ImageOps.exif_transpose`` acts on; 1 for a malformed block,
    as ``_exif_upright`` treats it."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # Pillow's EXIF parser raises assorted errors on broken blocks.
        return 1
    return value if isinstance(value, int | float) else 1


EXIF_TURNS = (2, 3, 4, 5, 6, 7, 8)  # the orientations ImageOps.exif_transpose acts on


def _exif_upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation: a turned copy, or ``image`` itself when it needs no
    turn (``exif_transpose`` would copy it). A malformed EXIF block means "no rotation",
    not an error."""
    if _orientation(image) not in EXIF_TURNS:
        return image
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:  # Pillow's EXIF parser raises assorted errors on broken blocks.
        logger.info("ignoring malformed EXIF data", exc_info=True)
        upright = None
    return upright if upright is not None else image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any decoded mode to 8-bit RGB.

    Transparency is composited on white (a plain ``convert("RGB")`` would show whatever
    colour the transparent pixels happen to hold, often black); 16/32-bit greyscale is
    scaled, not clipped, to 8 bits.
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(image, dtype=np.int64)
        if mode.startswith("I;16") or values.max(initial=0) > 255:
            # 16-bit samples: keep the high byte, as 16-bit to 8-bit viewers do.
            values = np.clip(values, 0, 65535) >> 8
        grey = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), mode="L")
        return grey.convert("RGB")
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        grey = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), mode="L")
        return grey.convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    # CMYK (Pillow undoes Adobe's inverted CMYK while decoding), P, L, 1, YCbCr, ...
    return image.convert("RGB")
