"""Defects outside probes found in how the API reads its input, each held here.

- A small PNG declaring a huge canvas is decoded in full in the web process to be checked:
  the pixels decoded at once there are bounded (``DecodeBudget``), a caller past the bound
  waits its turn.
- The drop-in routes (Hugging Face, Cloudflare) answer a multipart upload with a 415 that
  says what they take, and their "no image" and 413 texts name only what they take.
- A multipart ``image`` that is a text field, has an empty file name, is an empty file, or
  is cut off mid-file each get their own answer, not "send a multipart 'image' field".
- An image sent as ``Content-Type: application/json`` is told to send its own type.
- A truncated or damaged image's refusal says what to do.
- One Hugging Face header on a call that uses Vitrine's own features (``?webhook=``,
  ``?dry_run=``, ``Prefer``) no longer turns it into a Hugging Face call.

Every refusal: a 4xx in the flavour's one error shape, no job, no charge.
"""

from __future__ import annotations

import base64
import io
import struct
import threading
import zlib
from decimal import Decimal

import pytest
from PIL import Image, ImageFile

from billing.models import Charge
from billing.services.keys import api_key_create
from billing.services.topups import credit_grant
from playground import api, body_limits, flavours
from playground.flavours.common import MULTIPART_REFUSED
from playground.models import Job
from playground.runtime import ImageError, decode_image, inspect_image
from playground.runtime.images import EMPTY_IMAGE_MESSAGE, DecodeBudget, decode_budget
from tests import factories
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db
PRICE = Decimal("0.0002")
BOUNDARY = "probeboundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


# --- builders -----------------------------------------------------------------------------
def encode(fmt: str, size=(96, 64), **options) -> bytes:
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize(size).convert("RGB").save(buffer, format=fmt, **options)
    return buffer.getvalue()


def jpeg() -> bytes:
    return encode("JPEG")


def part(name: str, data: bytes, filename: str | None = None, content_type="image/jpeg") -> bytes:
    disposition = f'form-data; name="{name}"'
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}"
    if filename is not None:
        head += f'; filename="{filename}"\r\nContent-Type: {content_type}'
    return head.encode() + b"\r\n\r\n" + data + b"\r\n"


def multipart(*parts: bytes, closed: bool = True) -> bytes:
    return b"".join(parts) + (f"--{BOUNDARY}--\r\n".encode() if closed else b"")


def url(flavour: str, model_id: str) -> str:
    return {
        "vitrine": f"/v1/inference/{model_id}",
        "hf": f"/hf/models/{model_id}",
        "cloudflare": f"/client/v4/accounts/acct/ai/run/@cf/{model_id}",
    }[flavour]


def error_of(flavour: str, response) -> tuple[int, str, str]:
    """(status, Vitrine's code, message), after checking the flavour's one error shape."""
    body = response.json()
    if flavour == "vitrine":
        assert set(body) == {"error"}, body
        assert {"message", "type", "code", "param"} <= set(body["error"]), body
        return response.status_code, body["error"]["code"], body["error"]["message"]
    if flavour == "hf":
        assert set(body) == {"error"} and isinstance(body["error"], str), body
        return response.status_code, response["X-Vitrine-Error-Code"], body["error"]
    assert (body["result"], body["success"], body["messages"]) == (None, False, []), body
    (error,) = body["errors"]
    return response.status_code, response["X-Vitrine-Error-Code"], error["message"]


def nothing_happened() -> None:
    assert Job.objects.count() == 0 and Charge.objects.count() == 0


@pytest.fixture
def card(settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card(organisation=factories.organisation(slug="facebook"))
    factories.route(card=card, price=PRICE)
    return card


@pytest.fixture
def auth(other_user):
    credit_grant(user=other_user, amount=Decimal("1.00"), reason="test")
    _, key = api_key_create(user=other_user, name="probe")
    return {"Authorization": f"Bearer {key}"}


def post(client, path, body=b"", content_type="image/jpeg", headers=None, **meta):
    return client.generic(
        "POST", path, body, content_type=content_type, headers=headers or {}, **meta
    )


# --- 1. full decodes in the web process are bounded ---------------------------------------
def rgba_png(side: int) -> bytes:
    """A real, complete side x side RGBA PNG (small on disk, side*side*4 bytes decoded)."""
    row = b"\x00" + b"\x10\x20\x30\xff" * side
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + payload))
        return struct.pack(">I", len(payload)) + kind + payload + crc

    header = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def test_concurrent_full_decodes_never_exceed_the_pixel_budget(monkeypatch):
    """8 threads check a 200x200 PNG at once under a budget of 2.5 such images: at most 2
    decode at a time (every decode is counted where Pillow runs it), the others wait their
    turn, and all 8 are answered."""
    side, callers = 200, 8
    max_pixels = side * side * 5 // 2  # this test's own budget: 2 images fit, 3 do not
    budget = decode_budget(max_pixels)
    data = rgba_png(side)
    inside, most, gate, lock = [0], [0], threading.Event(), threading.Lock()
    original = ImageFile.ImageFile.load

    def counted_load(image):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            gate.wait(timeout=120)  # held open until every caller decodes or waits
            return original(image)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(ImageFile.ImageFile, "load", counted_load)
    results: list = []
    threads = [
        threading.Thread(target=lambda: results.append(inspect_image(data, max_pixels=max_pixels)))
        for _ in range(callers)
    ]
    for thread in threads:
        thread.start()
    # Every caller is either decoding (held at the gate) or waiting for the budget.
    wait_for(lambda: inside[0] + budget.waiting == callers, timeout=60, message="stuck")
    assert inside[0] == 2 and budget.waiting == callers - 2
    gate.set()
    for thread in threads:
        thread.join(timeout=120)
    assert most[0] == 2
    assert len(results) == callers
    assert {(r.original_size, r.format) for r in results} == {((side, side), "PNG")}
    assert budget.held == 0 and budget.peak == 2 * side * side


def test_a_large_decode_is_not_starved_by_smaller_ones():
    """First come, first served: a caller that does not fit yet is not overtaken by a later
    one that would."""
    budget = DecodeBudget(10)
    order: list[str] = []
    big_started, big_release = threading.Event(), threading.Event()

    def big():
        with budget.hold(10):
            order.append("big")
            big_started.set()
            big_release.wait(timeout=60)

    def small():
        with budget.hold(1):
            order.append("small")

    with budget.hold(6):
        first = threading.Thread(target=big)
        first.start()
        wait_for(lambda: budget.waiting == 1, timeout=30, message="big did not queue")
        second = threading.Thread(target=small)
        second.start()
        wait_for(lambda: budget.waiting == 2, timeout=30, message="small did not queue")
        assert order == []  # 6 + 1 would fit, but small came after big
    big_started.wait(timeout=60)
    assert order == ["big"] and budget.waiting == 1
    big_release.set()
    first.join(timeout=60)
    second.join(timeout=60)
    assert order == ["big", "small"] and budget.held == 0 and budget.peak == 10


def test_an_inspection_waits_for_the_budget_and_then_runs():
    max_pixels = 3_333_333  # this test's own budget
    budget = decode_budget(max_pixels)
    data, answers = rgba_png(64), []
    with budget.hold(max_pixels):
        thread = threading.Thread(
            target=lambda: answers.append(inspect_image(data, max_pixels=max_pixels))
        )
        thread.start()
        wait_for(lambda: budget.waiting == 1, timeout=30, message="did not wait")
        assert answers == []
    thread.join(timeout=60)
    assert answers[0].original_size == (64, 64)


# --- 2. the drop-in routes name what they take --------------------------------------------
@pytest.mark.parametrize("flavour", ["hf", "cloudflare"])
def test_a_multipart_upload_on_a_drop_in_is_a_415_pointing_at_the_raw_body(
    client, card, auth, flavour
):
    body = multipart(part("image", jpeg(), "plain.jpg"))
    response = post(client, url(flavour, card.model_id), body, MULTIPART, auth)
    status, code, message = error_of(flavour, response)
    assert (status, code) == (415, "unsupported_media_type"), response.content
    assert message == MULTIPART_REFUSED[flavour]
    assert "--data-binary" in message and "/v1/inference/" in message
    nothing_happened()


@pytest.mark.parametrize(
    ("flavour", "body", "content_type", "message"),
    [
        ("hf", b"", "image/jpeg", api.MISSING_IMAGE_HF),
        ("hf", b"{}", "application/json", api.MISSING_IMAGE_HF),
        ("cloudflare", b"", "image/jpeg", api.MISSING_IMAGE_CLOUDFLARE),
        ("vitrine", b"", "image/jpeg", api.MISSING_IMAGE),
    ],
)
def test_no_image_names_only_what_the_route_takes(
    client, card, auth, flavour, body, content_type, message
):
    response = post(client, url(flavour, card.model_id), body, content_type, auth)
    status, code, text = error_of(flavour, response)
    assert (status, code, text) == (400, "missing_image", message)
    if flavour != "vitrine":
        assert "multipart" not in text
    nothing_happened()


@pytest.mark.parametrize(
    ("flavour", "says", "never"),
    [
        ("vitrine", "as a multipart file", None),
        ("hf", '{"inputs": ...}', "multipart"),
        ("cloudflare", '{"image": [0-255, ...]}', "base64"),
    ],
)
def test_a_413_names_only_what_the_route_takes(client, card, auth, flavour, says, never):
    response = post(
        client, url(flavour, card.model_id), b"{}", "application/json", auth,
        CONTENT_LENGTH=str(300 * 1024 * 1024),
    )  # fmt: skip
    status, code, message = error_of(flavour, response)
    assert (status, code) == (413, "request_too_large")
    assert says in message and "314,572,800 bytes" in message
    if never:
        assert never not in message
    nothing_happened()


# --- 3. what a multipart 'image' is, said exactly -----------------------------------------
QUOTE = "?dry_run=true"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "param", "message"),
    [
        # curl -F "image=<plain.jpg": the file's bytes as a text field
        (multipart(part("image", jpeg())), MULTIPART, 400, "invalid_value", "image",
         api.IMAGE_NOT_A_FILE),
        # a form's image=<base64>
        (b"image=" + base64.b64encode(jpeg()).replace(b"+", b"%2B").replace(b"/", b"%2F"),
         "application/x-www-form-urlencoded", 400, "invalid_value", "image",
         api.IMAGE_NOT_A_FILE),
        # a browser's file input with no file chosen, and a named part with no file name
        (multipart(part("image", b"", "")), MULTIPART, 400, "missing_image", "image",
         api.IMAGE_WITHOUT_FILE_NAME),
        (multipart(part("image", jpeg(), "")), MULTIPART, 400, "missing_image", "image",
         api.IMAGE_WITHOUT_FILE_NAME),
        # an empty file: as the try page says it
        (multipart(part("image", b"", "empty.jpg")), MULTIPART, 400, "corrupt_image", "image",
         EMPTY_IMAGE_MESSAGE),
        # cut off mid-file (no closing boundary)
        (multipart(part("image", jpeg(), "plain.jpg"))[:300], MULTIPART, 400,
         "invalid_multipart", None, body_limits.MULTIPART_CUT),
        (multipart(part("image", jpeg(), "plain.jpg"), closed=False), MULTIPART, 400,
         "invalid_multipart", None, body_limits.MULTIPART_CUT),
        # no image part at all
        (multipart(part("threshold", b"0.5")), MULTIPART, 400, "missing_image", "image",
         api.NO_IMAGE_PART),
    ],
    ids=["text-field", "urlencoded-base64", "no-file-chosen", "nameless-file", "empty-file",
         "cut-mid-file", "no-closing-boundary", "no-image-part"],
)  # fmt: skip
def test_each_multipart_mistake_gets_its_own_answer(
    client, card, auth, body, content_type, status, code, param, message
):
    response = post(client, url("vitrine", card.model_id) + QUOTE, body, content_type, auth)
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert (error["code"], error["param"], error["message"]) == (code, param, message)
    nothing_happened()


def test_a_good_multipart_upload_still_works(client, card, auth):
    body = multipart(part("threshold", b"0.4"), part("image", jpeg(), "plain.jpg"))
    response = post(client, url("vitrine", card.model_id) + QUOTE, body, MULTIPART, auth)
    assert response.status_code == 200, response.content
    assert response.json()["image"]["format"] == "JPEG"


# --- 4. an image labelled JSON --------------------------------------------------------------
@pytest.mark.parametrize("flavour", ["vitrine", "hf", "cloudflare"])
@pytest.mark.parametrize(
    ("fmt", "name", "media_type"),
    [("JPEG", "JPEG", "image/jpeg"), ("PNG", "PNG", "image/png"), ("WEBP", "WebP", "image/webp"),
     ("GIF", "GIF", "image/gif")],
)  # fmt: skip
def test_an_image_sent_as_json_is_told_its_content_type(
    client, card, auth, flavour, fmt, name, media_type
):
    response = post(client, url(flavour, card.model_id), encode(fmt), "application/json", auth)
    status, code, message = error_of(flavour, response)
    assert (status, code) == (400, "invalid_json"), response.content
    assert message == body_limits.JSON_IS_IMAGE.format(format=name, media_type=media_type)
    assert "codec" not in message
    nothing_happened()


def test_another_file_sent_as_json_is_told_what_is_read(client, card, auth):
    response = post(client, url("vitrine", card.model_id), encode("BMP"), "application/json", auth)
    status, code, message = error_of("vitrine", response)
    assert (status, code) == (400, "invalid_json")
    assert message == body_limits.JSON_IS_OTHER_FILE.format(format="BMP")


# --- 5. a damaged image's refusal says what to do -----------------------------------------
DAMAGED = {
    "jpeg-without-end-marker": lambda: encode("JPEG", (400, 300))[:-2],
    "jpeg-cut-mid-scan": lambda: encode("JPEG", (400, 300))[:1500],
    "webp-cut-mid-data": lambda: encode("WEBP", (400, 300))[:-40],
    "png-cut-mid-data": lambda: encode("PNG", (400, 300))[:500],
}


@pytest.mark.parametrize("case", DAMAGED, ids=list(DAMAGED))
def test_a_damaged_image_is_refused_alike_with_what_to_do(client, card, auth, case):
    data = DAMAGED[case]()
    with pytest.raises(ImageError) as checked:
        inspect_image(data, max_pixels=40_000_000)
    with pytest.raises(ImageError) as decoded:  # the worker's decoder: the same refusal
        decode_image(data, max_pixels=40_000_000)
    assert (checked.value.code, str(checked.value)) == (decoded.value.code, str(decoded.value))
    message = str(checked.value)
    assert checked.value.code == "corrupt_image"
    assert "incomplete or damaged" in message and "re-export it" in message
    assert "unreadable header" not in message
    response = post(client, url("vitrine", card.model_id) + QUOTE, data, "image/jpeg", auth)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": message, "type": "invalid_request_error", "code": "corrupt_image",
        "param": None,
    }  # fmt: skip


# --- 6. Vitrine's own features keep a call Vitrine's ------------------------------------
HF_HEADERS = [
    {"x-use-cache": "true"},
    {"x-wait-for-model": "true"},
    {"User-Agent": "python-requests; hf_hub/1.2.0; python/3.11"},
]


@pytest.mark.parametrize("hf", HF_HEADERS, ids=["x-use-cache", "x-wait-for-model", "hf_hub"])
def test_a_quote_with_a_hugging_face_header_is_still_a_quote(client, card, auth, hf):
    response = post(client, url("vitrine", card.model_id) + QUOTE, jpeg(), "image/jpeg",
                    {**auth, **hf})  # fmt: skip
    assert response.status_code == 200, response.content
    assert response.json()["object"] == "quote"
    nothing_happened()


@pytest.mark.parametrize("hf", HF_HEADERS, ids=["x-use-cache", "x-wait-for-model", "hf_hub"])
def test_a_webhook_with_a_hugging_face_header_is_checked_as_vitrine_s(client, card, auth, hf):
    response = post(client, url("vitrine", card.model_id) + "?webhook=http://127.0.0.1/hook",
                    jpeg(), "image/jpeg", {**auth, **hf})  # fmt: skip
    assert response.status_code == 400, response.content
    error = response.json()["error"]  # Vitrine's shape, not {"error": "Unknown query ..."}
    assert (error["code"], error["param"]) == ("invalid_webhook", "webhook")
    nothing_happened()


def test_prefer_respond_async_with_a_hugging_face_header_answers_202(client, card, auth):
    headers = {**auth, "x-use-cache": "true", "Prefer": "respond-async"}
    response = post(client, url("vitrine", card.model_id), jpeg(), "image/jpeg", headers)
    assert response.status_code == 202, response.content
    assert response.json()["object"] == "detection_job"
    assert response["Preference-Applied"] == "respond-async"


def test_a_402_with_a_hugging_face_header_and_prefer_is_vitrine_s(client, card, other_user):
    _, key = api_key_create(user=other_user, name="empty")  # no credit
    headers = {"Authorization": f"Bearer {key}", "x-wait-for-model": "true",
               "Prefer": "respond-async"}  # fmt: skip
    response = post(client, url("vitrine", card.model_id), jpeg(), "image/jpeg", headers)
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_credits"
    nothing_happened()


def test_a_pure_hugging_face_call_keeps_hugging_face_s_shape(client, card, auth):
    headers = {**auth, "x-use-cache": "true"}
    response = post(client, url("vitrine", card.model_id) + "?threshold=2", jpeg(),
                    "image/jpeg", headers)  # fmt: skip
    assert error_of("hf", response)[:2] == (400, "invalid_threshold")


@pytest.mark.parametrize(
    ("headers", "query", "flavour"),
    [
        ({"x-use-cache": "true"}, "", "hf"),
        ({"User-Agent": "hf_hub/1.0"}, "threshold=0.3&route=vitrine", "hf"),
        ({"x-use-cache": "true"}, "dry_run=true", "vitrine"),
        ({"x-use-cache": "true"}, "webhook=https://a.example/h", "vitrine"),
        ({"x-use-cache": "true"}, "box_format=float", "vitrine"),
        ({"x-use-cache": "true"}, {"dry_run": "true"}, "vitrine"),
        ({"x-use-cache": "true"}, b"dry_run=true", "vitrine"),
        ({"x-use-cache": "true", "Prefer": "respond-async"}, "", "vitrine"),
        ({"x-use-cache": "true", "content-type": MULTIPART}, "", "vitrine"),
        ({"x-use-cache": "true", "Idempotency-Key": "k"}, "", "hf"),  # every flavour's
        ({}, "", "vitrine"),
    ],
)
def test_which_flavour_a_v1_inference_call_gets(headers, query, flavour):
    assert flavours.flavour_for("/v1/inference/facebook/detr-resnet-50", headers, query) == flavour


@pytest.mark.parametrize("hf", HF_HEADERS, ids=["x-use-cache", "x-wait-for-model", "hf_hub"])
def test_a_refusal_before_the_view_keeps_a_vitrine_call_in_vitrine_s_shape(client, card, auth, hf):
    # Refused by the middleware (the body's declared length), before any view runs.
    response = client.post(
        url("vitrine", card.model_id) + QUOTE, data=b"\xff\xd8\xff", content_type="image/jpeg",
        headers={**auth, **hf}, CONTENT_LENGTH=str(300 * 1024 * 1024),
    )  # fmt: skip
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "image_too_large"  # not {"error": "..."}
    nothing_happened()
