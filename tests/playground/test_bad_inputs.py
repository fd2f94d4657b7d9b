"""A corpus of bad (and awkward but valid) inputs against the inference API and the try page.

Every input is generated here (Pillow or plain bytes). The rule for each: no 5xx; an error
is one JSON shape ``{"error": {message, type, code, param}}`` with no server path or class
name in it (HTML only for a browser form post); a refused input creates no job and no
charge; an accepted one (CMYK, 16-bit, EXIF orientations, an animated GIF's first frame...)
is a 202 whose reserved charge is released when it is cancelled, so the wallet ends where it
started. The last test sends the whole corpus to a real worker and then a good image, which
must still succeed.
"""

# ruff: noqa: E501 -- the corpus is a table, one case a line

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache

import pytest
from PIL import Image

from billing.models import Charge
from billing.services.keys import api_key_create
from billing.services.ledger import wallet_for
from billing.services.topups import credit_grant
from playground.models import Job
from tests import factories

pytestmark = pytest.mark.django_db
FUNDS = Decimal("1.00")
PRICE = Decimal("0.0002")
JSON_ACCEPT = {"Accept": "application/json"}
# What no caller-facing message may contain: server paths, class names, stack traces.
LEAKS = (
    "/tmp",
    "/work",
    "/home",
    "/var/",
    "Traceback",
    "SizeDict",
    "Error:",
    "Exception",
    "$VITRINE",
)


# --- builders -----------------------------------------------------------------------------
def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def scene(size=(96, 64), mode="RGB") -> Image.Image:
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    return image.convert(mode) if mode != "RGB" else image


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + data))
    return struct.pack(">I", len(data)) + kind + data + crc


def png_header_only(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b"")


@cache
def single_colour_png(side: int = 20_000) -> bytes:
    """A real, complete side x side 1-bit PNG of one colour (~50 kB), built row by row."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", data)
        + png_chunk(b"IEND", b"")
    )


def gif_claiming(width: int, height: int) -> bytes:
    """A tiny GIF whose screen and frame descriptors claim ``width`` x ``height``."""
    data = bytearray(encode(Image.new("P", (8, 8)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    frame = data.index(b"\x2c", 13)  # the image descriptor
    data[frame + 5 : frame + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(scene((80, 40)), "JPEG", exif=exif.tobytes())


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (64, 48), colour) for colour in ("red", "green", "blue")]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def palette_with_alpha() -> bytes:
    image = scene().convert("P")
    return encode(image, "PNG", transparency=0)


def sixteen_bit() -> bytes:
    image = Image.new("I;16", (64, 48))
    image.putdata([i * 20 for i in range(64 * 48)])
    return encode(image, "PNG")


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def bad_crc_png() -> bytes:
    data = bytearray(encode(scene(), "PNG"))
    data[29] ^= 0xFF  # inside IHDR's CRC
    return bytes(data)


@cache
def noisy_png() -> bytes:
    """A ~2.2 MB PNG: its base64 JSON body is past Django's default 2.5 MB body limit."""
    import random

    rng = random.Random(7)
    return encode(Image.frombytes("RGB", (900, 820), rng.randbytes(900 * 820 * 3)), "PNG")


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> bytes:
    boundary = "corpusboundary"
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for name, (filename, data, content_type) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
        )
        parts.append(head.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def deep_json(depth: int) -> bytes:
    return b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}"


# --- the corpus ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """``body()`` sent as ``content_type``; ``status`` is the expected answer (202: accepted).

    ``image`` cases are images (or what claims to be one): the try page gets them as its
    multipart file too. ``meta`` overrides WSGI variables (a claimed Content-Length).
    """

    id: str
    body: Callable[[], bytes]
    content_type: str
    status: int
    code: str | None = None
    image: bool = True
    meta: dict[str, str] = field(default_factory=dict)


def _orientation_cases() -> list[Case]:
    return [
        Case(f"exif-orientation-{n}", lambda n=n: with_orientation(n), "image/jpeg", 202)
        for n in range(1, 9)
    ]


IMAGE_CASES = [
    Case("zero-bytes", lambda: b"", "image/jpeg", 400, "missing_image"),
    Case("one-byte", lambda: b"\xff", "image/jpeg", 415, "unsupported_format"),
    Case(
        "truncated-jpeg",
        lambda: truncated(encode(scene((400, 300)), "JPEG")),
        "image/jpeg",
        400,
        "corrupt_image",
    ),
    Case(
        "truncated-png",
        lambda: truncated(encode(scene((400, 300)), "PNG")),
        "image/png",
        400,
        "corrupt_image",
    ),
    Case(
        "truncated-webp",
        lambda: truncated(encode(scene((400, 300)), "WEBP")),
        "image/webp",
        400,
        "corrupt_image",
    ),
    Case("png-bad-crc", bad_crc_png, "image/png", 400, "corrupt_image"),
    Case("magic-only-png", lambda: b"\x89PNG\r\n\x1a\n<html>", "image/png", 400, "corrupt_image"),
    Case("text-as-jpeg", lambda: b"hello, I am text", "image/jpeg", 415, "unsupported_format"),
    Case(
        "html-as-png",
        lambda: b"<!doctype html><html><body>hi</body></html>",
        "image/png",
        415,
        "unsupported_format",
    ),
    Case(
        "svg-as-image",
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>',
        "image/svg+xml",
        415,
        "unsupported_format",
    ),
    Case(
        "pdf-as-jpeg",
        lambda: b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF",
        "image/jpeg",
        415,
        "unsupported_format",
    ),
    Case(
        "png-bomb-header",
        lambda: png_header_only(100_000, 100_000),
        "image/png",
        413,
        "image_too_large",
    ),
    Case(
        "gif-bomb-header", lambda: gif_claiming(65_535, 65_535), "image/gif", 413, "image_too_large"
    ),
    Case("20000x20000-single-colour", single_colour_png, "image/png", 413, "image_too_large"),
    Case("png-zero-width", lambda: png_header_only(0, 10), "image/png", 400, "corrupt_image"),
    Case(
        "strip-10000x10",
        lambda: encode(Image.new("RGB", (10_000, 10), "white"), "PNG"),
        "image/png",
        400,
        "image_aspect_unsupported",
    ),
    Case(
        "strip-10x10000",
        lambda: encode(Image.new("RGB", (10, 10_000), "white"), "PNG"),
        "image/png",
        400,
        "image_aspect_unsupported",
    ),
    Case("one-pixel", lambda: encode(Image.new("RGB", (1, 1), "red"), "PNG"), "image/png", 202),
    Case("animated-gif", lambda: animated("GIF"), "image/gif", 202),
    Case("animated-webp", lambda: animated("WEBP"), "image/webp", 202),
    Case("cmyk-jpeg", lambda: encode(scene(mode="CMYK"), "JPEG"), "image/jpeg", 202),
    Case("16-bit-png", sixteen_bit, "image/png", 202),
    Case("palette-alpha-png", palette_with_alpha, "image/png", 202),
    Case("greyscale-alpha-png", lambda: encode(scene(mode="LA"), "PNG"), "image/png", 202),
    *_orientation_cases(),
    Case(
        "malformed-exif",
        lambda: encode(scene(), "JPEG", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7f"),
        "image/jpeg",
        202,
    ),
    Case("tiff", lambda: encode(scene(), "TIFF"), "image/tiff", 415, "unsupported_format"),
    Case("bmp", lambda: encode(scene(), "BMP"), "image/bmp", 415, "unsupported_format"),
    Case("ico", lambda: encode(scene((32, 32)), "ICO"), "image/x-icon", 415, "unsupported_format"),
    Case("avif", lambda: encode(scene(), "AVIF"), "image/avif", 415, "unsupported_format"),
    Case(
        "heic-header",
        lambda: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
        "image/heic",
        415,
        "unsupported_format",
    ),
    Case(
        "psd-header", lambda: b"8BPS\x00\x01" + b"\x00" * 40, "image/png", 415, "unsupported_format"
    ),
    # Polyglots: a valid image with something else after it decodes as the image; a PDF
    # with an image inside is a PDF.
    Case(
        "jpeg-plus-html",
        lambda: encode(scene(), "JPEG") + b"<script>alert(1)</script>",
        "image/jpeg",
        202,
    ),
    Case(
        "gif-plus-zip",
        lambda: encode(scene(), "GIF") + b"PK\x03\x04" + b"\x00" * 26,
        "image/gif",
        202,
    ),
    Case(
        "pdf-with-jpeg-inside",
        lambda: b"%PDF-1.4\n" + encode(scene(), "JPEG"),
        "image/jpeg",
        415,
        "unsupported_format",
    ),
]

TOO_BIG = str(300 * 1024 * 1024)
REQUEST_CASES = [
    Case("raw-300MB-content-length", lambda: b"\xff\xd8\xff", "image/jpeg", 413, "image_too_large", image=False, meta={"CONTENT_LENGTH": TOO_BIG}),
    Case("json-300MB-content-length", lambda: b"{}", "application/json", 413, "request_too_large", image=False, meta={"CONTENT_LENGTH": TOO_BIG}),
    Case("multipart-300MB-content-length", lambda: multipart({}, {}), "multipart/form-data; boundary=corpusboundary", 413, "request_too_large", image=False, meta={"CONTENT_LENGTH": TOO_BIG}),
    Case("content-length-not-a-number", lambda: b"\xff\xd8\xff", "image/jpeg", 400, "bad_content_length", image=False, meta={"CONTENT_LENGTH": "lots"}),
    Case("json-over-2.5MB", lambda: json.dumps({"inputs": base64.b64encode(noisy_png()).decode()}).encode(), "application/json", 202, image=False),
    Case("json-data-url", lambda: json.dumps({"inputs": "data:image/png;base64," + base64.b64encode(encode(scene(), "PNG")).decode()}).encode(), "application/json", 202, image=False),
    Case("json-100000-deep", lambda: deep_json(100_000), "application/json", 400, "invalid_json", image=False),
    Case("json-40-deep", lambda: deep_json(40), "application/json", 400, "invalid_json", image=False),
    Case("json-not-json", lambda: b"{not json", "application/json", 400, "invalid_json", image=False),
    Case("json-bad-utf8", lambda: b'{"inputs": "\xff\xfe"}', "application/json", 400, "invalid_json", image=False),
    Case("json-nan-threshold", lambda: b'{"inputs": "aGVsbG8=", "parameters": {"threshold": NaN}}', "application/json", 400, "invalid_json", image=False),
    Case("json-threshold-twice", lambda: b'{"inputs": "aGVsbG8=", "parameters": {"threshold": 0.9, "threshold": 0.1}}', "application/json", 400, "invalid_json", image=False),
    Case("json-parameters-twice", lambda: b'{"inputs": "aGVsbG8=", "parameters": {"threshold": 0.9}, "parameters": {}}', "application/json", 400, "invalid_json", image=False),
    Case("json-inputs-twice", lambda: b'{"inputs": "AAAA", "inputs": "aGVsbG8="}', "application/json", 400, "invalid_json", image=False),
    Case("json-top-level-array", lambda: b"[1, 2, 3]", "application/json", 400, "missing_image", image=False),
    Case("json-inputs-a-number", lambda: b'{"inputs": 12}', "application/json", 400, "invalid_value", image=False),
    Case("json-base64-of-text", lambda: b'{"inputs": "aGVsbG8="}', "application/json", 415, "unsupported_format", image=False),
    Case("json-bad-base64", lambda: b'{"inputs": "%%%"}', "application/json", 400, "invalid_base64", image=False),
    Case("jpeg-labelled-json", lambda: encode(scene(), "JPEG"), "application/json", 400, "invalid_json", image=False),
    Case("jpeg-labelled-text", lambda: encode(scene(), "JPEG"), "text/plain", 202, image=False),
    Case("xml-body", lambda: b"<?xml version='1.0'?><a/>", "application/xml", 415, "unsupported_format", image=False),
    Case("multipart-no-boundary", lambda: multipart({}, {"image": ("a.jpg", encode(scene(), "JPEG"), "image/jpeg")}), "multipart/form-data", 400, None, image=False),
    Case("multipart-without-a-file", lambda: multipart({"threshold": "0.5"}, {}), "multipart/form-data; boundary=corpusboundary", 400, "missing_image", image=False),
    Case("multipart-too-many-fields", lambda: multipart({f"f{i}": "x" for i in range(1200)}, {}), "multipart/form-data; boundary=corpusboundary", 400, "too_many_fields", image=False),
    Case("form-field-over-2.5MB", lambda: b"inputs=" + b"A" * 3_000_000, "application/x-www-form-urlencoded", 413, "request_too_large", image=False),
    Case("form-too-many-fields", lambda: "&".join(f"f{i}=x" for i in range(1200)).encode(), "application/x-www-form-urlencoded", 400, "too_many_fields", image=False),
]  # fmt: skip
CORPUS = IMAGE_CASES + REQUEST_CASES


def test_the_corpus_is_big_enough():
    assert len(CORPUS) >= 40
    assert len({case.id for case in CORPUS}) == len(CORPUS)


# --- fixtures and checks ------------------------------------------------------------------
@pytest.fixture
def card(settings, tmp_path, runtime_checkpoint):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_PLAYGROUND_PER_HOUR = 1000
    # A real checkpoint directory: the web process reads its processor config (224/320).
    card = factories.card(checkpoint_local_dir=str(runtime_checkpoint("yolos_tiny")))
    factories.route(card=card, price=PRICE)
    return card


@pytest.fixture
def account(other_user):
    credit_grant(user=other_user, amount=FUNDS, reason="test")
    _, key = api_key_create(user=other_user, name="corpus")
    return {"user": other_user, "auth": f"Bearer {key}"}


def assert_one_error_shape(response, case: Case) -> None:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = response.json()
    assert list(body) == ["error"], body
    error = body["error"]
    assert {"message", "type", "code", "param"} <= set(error), error
    assert error["message"] and error["type"] and error["code"], error
    if case.code is not None:
        assert error["code"] == case.code, error
    for leak in LEAKS:
        assert leak not in error["message"], error


def send(client, url: str, case: Case, **headers):
    return client.generic(
        "POST", url, case.body(), content_type=case.content_type, headers=headers, **case.meta
    )


# --- the API ------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.id)
def test_the_api_answers_every_input_with_a_clear_status(client, card, account, case):
    response = send(
        client, f"/v1/inference/{card.model_id}", case,
        Authorization=account["auth"], Prefer="respond-async",
    )  # fmt: skip
    assert response.status_code < 500, response.content[:300]
    assert response.status_code == case.status, response.content[:300]
    if case.status == 202:
        job = response.json()
        assert job["status"] == "queued" and job["cost"] == str(PRICE)
        # Accepted: the price is held; cancelling releases it.
        cancelled = client.delete(job["url"], headers={"Authorization": account["auth"]})
        assert cancelled.json()["charge_status"] == "voided"
    else:
        assert_one_error_shape(response, case)
        assert Job.objects.count() == 0 and Charge.objects.count() == 0
    assert wallet_for(account["user"]).balance == FUNDS


# --- the try page -------------------------------------------------------------------------
def try_url(card) -> str:
    return f"/models/{card.model_id}/try"


def as_try_page_upload(case: Case) -> Case:
    """An image case as the try page's multipart form with the image as its file."""
    body = multipart({}, {"image": (f"{case.id}.bin", case.body(), case.content_type)})
    return Case(
        case.id, lambda: body, "multipart/form-data; boundary=corpusboundary", case.status,
        case.code, meta=case.meta,
    )  # fmt: skip


TRY_CASES = [as_try_page_upload(case) for case in IMAGE_CASES] + [
    case for case in REQUEST_CASES if case.content_type.startswith("multipart/")
]


@pytest.mark.parametrize("case", TRY_CASES, ids=lambda case: case.id)
def test_the_try_page_answers_every_input_with_a_clear_status(client, card, case):
    response = send(client, try_url(card), case, **JSON_ACCEPT)
    assert response.status_code < 500, response.content[:300]
    if case.id == "zero-bytes":  # an empty file: the decoder's "The image is empty."
        case = Case(case.id, case.body, case.content_type, 400, "corrupt_image")
    assert response.status_code == case.status, response.content[:300]
    if case.status == 202:
        assert response.json()["status"] == "queued"
    else:
        assert_one_error_shape(response, case)
        assert Job.objects.count() == 0
    assert Charge.objects.count() == 0  # tries are free


BROWSER_CASES = [
    case
    for case in TRY_CASES
    if case.id in ("strip-10000x10", "pdf-as-jpeg", "multipart-no-boundary", "multipart-300MB-content-length")
]  # fmt: skip


@pytest.mark.parametrize("case", BROWSER_CASES, ids=lambda case: case.id)
def test_a_browser_form_post_gets_the_page_back_with_the_message(client, card, case):
    response = send(client, try_url(card), case)
    assert response.status_code == 302 and response["Location"] == try_url(card)
    page = client.get(try_url(card))
    assert page.status_code == 200
    shown = [str(message) for message in page.context["messages"]]
    assert len(shown) == 1 and not any(leak in shown[0] for leak in LEAKS), shown
    assert Job.objects.count() == 0


# --- after the corpus, real work still goes through ----------------------------------------
@pytest.mark.worker
def test_after_the_whole_corpus_a_good_image_still_succeeds(
    client, start_worker, settings, tmp_path, runtime_checkpoint, other_user
):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_SYNC_WAIT = 300  # the corpus's accepted jobs run first, on 2 shared cores
    # The corpus is sent in one go: no abuse limit is under test here.
    settings.VITRINE_MAX_INFLIGHT_JOBS = 1000
    settings.VITRINE_API_RATE_PER_MINUTE = settings.VITRINE_ACCOUNT_RATE_PER_MINUTE = 1000
    worker = start_worker()
    card = factories.card(checkpoint_local_dir=str(runtime_checkpoint("yolos_tiny")))
    factories.route(card=card, price=PRICE)
    credit_grant(user=other_user, amount=FUNDS, reason="test")
    _, key = api_key_create(user=other_user, name="corpus")
    auth = {"Authorization": f"Bearer {key}"}
    url = f"/v1/inference/{card.model_id}"

    accepted = 0
    for case in CORPUS:
        response = send(client, url, case, Prefer="respond-async", **auth)
        assert response.status_code == case.status, (case.id, response.content[:300])
        accepted += response.status_code == 202

    good = encode(scene((320, 240)), "JPEG")
    response = client.post(url, data=good, content_type="image/jpeg", headers=auth)
    assert response.status_code == 200, (response.content, worker.output())
    assert isinstance(response.json(), list)
    # Every accepted job ran (the worker takes them in order) and was paid; nothing else was.
    jobs = Job.objects.all()
    assert jobs.count() == accepted + 1
    assert set(jobs.values_list("status", flat=True)) == {"succeeded"}, worker.output()
    spent = PRICE * (accepted + 1)
    assert wallet_for(other_user).balance == FUNDS - spent
