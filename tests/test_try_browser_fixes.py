"""What the try page, the compare page and a run's permalink show, in a real browser
(Debian's Chromium through Playwright, see tests/test_browser.py): the picture the model saw
with its boxes on it, whatever the upload's orientation metadata, size or transparency.

The jobs are made by the pages' own forms against the live server and a real broker; the
test then finishes each job in the database with a known box, as a worker would, so where
that box must land on the picture is known: on a red rectangle.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.utils import timezone
from PIL import Image, ImageDraw

from tests.test_browser import (  # noqa: F401  (the module's browser fixture)
    BROWSER_MARKS,
    CHROMIUM,
    browser,
    page,
    wait_until,
)

pytestmark = BROWSER_MARKS

RED = (220, 30, 30)
GREEN = (200, 220, 200)
XMP_6 = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
)
RED_BOX = {"xmin": 0, "ymin": 0, "xmax": 213, "ymax": 120}  # in the upright 640x480 frame


def upright() -> Image.Image:
    """The picture the worker sees: 640x480, a red rectangle in its top left corner."""
    image = Image.new("RGB", (640, 480), GREEN)
    ImageDraw.Draw(image).rectangle([0, 0, 213, 120], fill=RED)
    return image


def exif6_webp() -> bytes:
    """Stored turned a quarter, with EXIF orientation 6 (Chromium ignores it in WebP)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    upright().transpose(Image.Transpose.ROTATE_90).save(out, "WEBP", exif=exif.tobytes())
    return out.getvalue()


def xmp6_jpeg() -> bytes:
    """Stored turned a quarter, its orientation only in XMP (which browsers ignore)."""
    out = io.BytesIO()
    upright().transpose(Image.Transpose.ROTATE_90).save(out, "JPEG", xmp=XMP_6)
    return out.getvalue()


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def broker(broker_url, settings, tmp_path):
    """Jobs are queued to a real broker (no worker takes them: the test finishes them)."""
    from config.celery import app
    from tests.conftest import _reset_producer_pool

    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    previous = app.conf.broker_url
    _reset_producer_pool(app)
    app.conf.broker_url = settings.CELERY_BROKER_URL = broker_url
    yield
    _reset_producer_pool(app)
    app.conf.broker_url = previous


@pytest.fixture
def tab(page):  # noqa: F811
    """tests/test_browser.py's page (the catalogue seeded, the CSP watched), 1280x900."""
    return page


@pytest.fixture
def card(broker):
    from tests import factories

    card = factories.card(display_name="Orientation test")
    factories.route(card=card)
    return card


def finish(job_id, boxes: list[dict]) -> None:
    """End the job as a worker does: succeeded, with these detections."""
    from playground.models import Job

    now = timezone.now()
    done = Job.objects.filter(pk=job_id, status="queued").update(
        status="succeeded",
        attempts=1,
        started_at=now,
        finished_at=now,
        result=[{"label": "red", "score": 0.9, "box": box} for box in boxes],
        timings={"decode": 0.004, "preprocess": 0.01, "forward": 0.2, "postprocess": 0.003},
        weights_revision="sha256:" + "0" * 64,
        runtime_backend="transformers 4, cpu, pil preprocessing",
        runtime_precision="fp32",
    )
    assert done == 1


def try_run(tab, card, name: str, data: bytes, mime: str, boxes: list[dict]):
    """Upload ``data`` on the try page, finish its job with ``boxes``, wait for the drawing."""
    from playground.models import Job

    tab.goto(f"/models/{card.model_id}/try")
    tab.wait_for_load_state("load")
    before = set(Job.objects.values_list("pk", flat=True))
    tab.set_input_files(
        "#try-form input[type=file]", {"name": name, "mimeType": mime, "buffer": data}
    )
    tab.click("#run")
    wait_until(tab, "location.pathname.startsWith('/playground/jobs/')")
    (job_id,) = set(Job.objects.values_list("pk", flat=True)) - before
    finish(job_id, boxes)
    tab.wait_for_selector("body[data-job-status=succeeded]", timeout=30_000)
    return Job.objects.get(pk=job_id)


CANVAS_SIZE = "[document.getElementById('canvas').width, document.getElementById('canvas').height]"
PIXEL = (
    "([id, x, y]) => Array.from("
    "document.getElementById(id).getContext('2d').getImageData(x, y, 1, 1).data)"
)

# The centre of the first box's rectangle on screen, as a pixel of the canvas under it.
UNDER_BOX = """() => {
  const canvas = document.getElementById("canvas");
  const c = canvas.getBoundingClientRect();
  const r = document.querySelector("#boxes g.box rect").getBoundingClientRect();
  const x = Math.floor((r.x + r.width / 2 - c.x) * canvas.width / c.width);
  const y = Math.floor((r.y + r.height / 2 - c.y) * canvas.height / c.height);
  return Array.from(canvas.getContext("2d").getImageData(x, y, 1, 1).data);
}"""


def is_red(rgba) -> bool:
    r, g, b = rgba[:3]
    return r > 170 and g < 90 and b < 90


@pytest.mark.parametrize(
    ("name", "data", "mime"),
    [("exif6.webp", exif6_webp(), "image/webp"), ("xmp6.jpg", xmp6_jpeg(), "image/jpeg")],
)
def test_the_try_page_draws_the_box_on_the_picture_the_model_saw(tab, card, name, data, mime):
    job = try_run(tab, card, name, data, mime, [RED_BOX])
    assert (job.width, job.height) == (640, 480)  # the worker's upright frame
    size = tab.evaluate(CANVAS_SIZE)
    assert size == [640, 480]
    # The canvas holds the upright picture: red where the box is, not stretched sideways.
    assert is_red(tab.evaluate(PIXEL, ["canvas", 106, 60]))
    assert is_red(tab.evaluate(PIXEL, ["canvas", 200, 110]))
    assert not is_red(tab.evaluate(PIXEL, ["canvas", 106, 400]))
    # The box drawn over it lands on the red rectangle.
    assert tab.locator("#boxes g.box").count() == 1
    assert is_red(tab.evaluate(UNDER_BOX))


@pytest.mark.parametrize(
    ("name", "data", "mime"),
    [("exif6.webp", exif6_webp(), "image/webp"), ("xmp6.jpg", xmp6_jpeg(), "image/jpeg")],
)
def test_the_compare_page_draws_the_boxes_on_the_picture_the_models_saw(
    tab, broker, name, data, mime
):
    from playground.models import Job

    tab.goto("/compare/run?models=facebook/detr-resnet-50,hustvl/yolos-tiny")
    tab.wait_for_load_state("load")
    tab.set_input_files(
        "#compare-form input[type=file]", {"name": name, "mimeType": mime, "buffer": data}
    )
    tab.click("#compare-form button[type=submit]")
    tab.wait_for_url(lambda url: "/compare/run/" in url)
    jobs = list(Job.objects.all())
    assert len(jobs) == 2 and {(j.width, j.height) for j in jobs} == {(640, 480)}
    for job in jobs:
        finish(job.pk, [RED_BOX])
    tab.wait_for_selector("body[data-compare-status=done]", timeout=30_000)
    for i in range(2):
        canvas = tab.locator(".compare-panel canvas").nth(i)
        assert canvas.get_attribute("data-boxes") == "1"
        width, height = canvas.evaluate("c => [c.width, c.height]")
        assert width * 480 == height * 640  # the upright frame's shape
        scale = width / 640
        sample = canvas.evaluate(
            "(c, [x, y]) => Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data)",
            [round(106 * scale), round(80 * scale)],
        )
        assert is_red(sample), sample
        below = canvas.evaluate(
            "(c, [x, y]) => Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data)",
            [round(106 * scale), round(400 * scale)],
        )
        assert not is_red(below), below


def test_a_tiny_picture_is_enlarged_with_square_pixels(tab, card):
    tiny = Image.new("RGB", (16, 16), GREEN)
    tiny.paste(RED, (0, 0, 8, 8))
    try_run(
        tab,
        card,
        "tiny.png",
        png(tiny),
        "image/png",
        [{"xmin": 0, "ymin": 0, "xmax": 8, "ymax": 8}],
    )
    assert tab.evaluate(CANVAS_SIZE) == [320, 320]
    shown = tab.locator("#canvas").bounding_box()
    assert shown["width"] >= 320 and abs(shown["width"] - shown["height"]) < 1
    assert tab.locator("#canvas").evaluate("c => getComputedStyle(c).imageRendering") == "pixelated"
    # Nearest neighbour: the red square ends sharp at 8 x 20 = 160 px, no blended edge.
    assert tab.evaluate(PIXEL, ["canvas", 159, 80])[:3] == list(RED)
    assert tab.evaluate(PIXEL, ["canvas", 160, 80])[:3] == list(GREEN)
    assert is_red(tab.evaluate(UNDER_BOX))
    # A 1x1 picture too.
    try_run(tab, card, "dot.png", png(Image.new("RGB", (1, 1), RED)), "image/png", [])
    assert tab.locator("#canvas").bounding_box()["width"] >= 320


def test_a_tall_picture_fits_the_screen_and_labels_stay_legible(tab, card):
    try_run(
        tab, card, "tall.png", png(Image.new("RGB", (400, 3000), GREEN)), "image/png",
        [{"xmin": 10, "ymin": 10, "xmax": 200, "ymax": 300}],
    )  # fmt: skip
    canvas = tab.locator("#canvas").bounding_box()
    overlay = tab.locator("#boxes").bounding_box()
    assert canvas["height"] <= 900 * 0.8 + 1  # capped to the viewport, the ratio kept
    assert abs(canvas["width"] / canvas["height"] - 400 / 3000) < 0.01
    assert overlay == canvas  # the boxes' SVG covers the picture exactly
    assert 11 <= tab.locator("#boxes g.box text").bounding_box()["height"] <= 20


def test_labels_are_sized_in_css_pixels_on_a_phone(tab, card):
    tab.set_viewport_size({"width": 390, "height": 844})
    picture = Image.new("RGB", (1280, 960), GREEN)
    try_run(
        tab, card, "wide.png", png(picture), "image/png",
        [{"xmin": 100, "ymin": 100, "xmax": 600, "ymax": 500},
         # at the right edge: its label is moved in, not cut off (session 49)
         {"xmin": 1250, "ymin": 700, "xmax": 1279, "ymax": 900}],
    )  # fmt: skip
    canvas = tab.locator("#canvas").bounding_box()
    assert canvas["width"] < 400
    label = tab.locator("#boxes g.box text").first.bounding_box()
    assert 11 <= label["height"] <= 20, label  # ~12 px text, not 28 image px shrunk to 8
    for tag in tab.locator("#boxes g.box rect.tag").all():
        box = tag.bounding_box()
        assert (
            canvas["x"] - 1 <= box["x"]
            and box["x"] + box["width"] <= canvas["x"] + canvas["width"] + 1
        )
    # Drawn again for a wider window: still the same size on screen.
    tab.set_viewport_size({"width": 1280, "height": 900})
    wait_until(tab, "document.getElementById('canvas').getBoundingClientRect().width > 600")
    tab.wait_for_timeout(200)
    assert 11 <= tab.locator("#boxes g.box text").first.bounding_box()["height"] <= 20


def test_transparent_parts_are_drawn_on_white_as_the_model_saw_them(
    browser,  # noqa: F811
    live_server,
    transactional_db,
    card,
):
    call_command("seed_catalog", stdout=io.StringIO())
    context = browser.new_context(base_url=live_server.url, color_scheme="dark")
    dark = context.new_page()
    picture = Image.new("RGBA", (400, 300), (0, 0, 0, 0))
    picture.paste((220, 30, 30, 255), (200, 0, 400, 300))
    try_run(dark, card, "clear.png", png(picture), "image/png", [])
    assert dark.evaluate(PIXEL, ["canvas", 50, 50]) == [255, 255, 255, 255]
    assert is_red(dark.evaluate(PIXEL, ["canvas", 300, 50]))
    context.close()


def test_a_refused_file_is_not_sent_and_sizes_are_written_as_the_site_writes_them(
    tab, card, settings
):
    from playground.models import Job

    settings.VITRINE_MAX_UPLOAD_BYTES = 1000
    tab.goto(f"/models/{card.model_id}/try")
    tab.wait_for_load_state("load")
    file_input = "#try-form input[type=file]"
    bmp = io.BytesIO()
    Image.new("RGB", (8, 8)).save(bmp, "BMP")
    tab.set_input_files(
        file_input, {"name": "a.bmp", "mimeType": "image/bmp", "buffer": bmp.getvalue()}
    )
    # The page checks a chosen file in its change handler (reading its first bytes is
    # asynchronous): wait for what it says, not read it at once (a CI run read it first).
    said = "document.getElementById('demo-cost').innerText === {!r}"
    run_disabled = "document.getElementById('run').disabled"
    wait_until(tab, said.format("That is image/bmp; choose a JPEG, PNG, WebP or GIF image."))
    assert tab.eval_on_selector(file_input, "i => i.files.length") == 0
    wait_until(tab, run_disabled)
    big = {"name": "big.png", "mimeType": "image/png", "buffer": b"\x89PNG" + b"\0" * 1_234_563}
    tab.set_input_files(file_input, big)
    wait_until(tab, said.format("That file is 1.2 MB; the limit is 1 kB."))
    assert tab.eval_on_selector(file_input, "i => i.files.length") == 0
    wait_until(tab, run_disabled)
    tab.set_input_files(
        file_input,
        {"name": "ok.png", "mimeType": "image/png", "buffer": png(Image.new("RGB", (8, 8)))},
    )
    wait_until(tab, "!" + run_disabled)
    assert tab.locator("#demo-chosen").is_visible()
    assert Job.objects.count() == 0


def test_the_permalink_enlarges_a_tiny_picture_and_caps_a_tall_one(tab, card):
    from tests import factories

    tiny = Image.new("RGB", (16, 16), GREEN)
    tiny.paste(RED, (0, 0, 8, 8))
    runs = {
        "tiny": factories.finished_run(card=card, image_bytes=png(tiny), result=[], is_public=True),
        "tall": factories.finished_run(
            card=card, image_bytes=png(Image.new("RGB", (400, 3000), GREEN)), result=[],
            is_public=True,
        ),
    }  # fmt: skip
    tab.goto(f"/playground/jobs/{runs['tiny'].pk}")
    wait_until(tab, "document.getElementById('run-image').naturalWidth > 0")
    image = tab.locator("#run-image")
    # The run's own 16 px picture (the page draws its boxes), shown 320 px wide, square pixels.
    assert image.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [16, 16]
    assert image.bounding_box()["width"] >= 320
    assert image.evaluate("i => getComputedStyle(i).imageRendering") == "pixelated"
    tab.goto(f"/playground/jobs/{runs['tall'].pk}")
    wait_until(tab, "document.getElementById('run-image').naturalWidth > 0")
    box = tab.locator("#run-image").bounding_box()
    assert box["height"] <= 720 + 1  # views.PAGE_IMAGE_MAX_HEIGHT
    assert abs(box["width"] / box["height"] - 400 / 3000) < 0.02


def test_the_compare_page_keeps_polling_through_a_lost_connection(tab, broker):
    """A failed poll of a comparison (offline, the server restarting) is asked again: it
    stopped the page for good, while each model's paid job went on on the server."""
    from playground.models import Job

    tab.goto("/compare/run?models=facebook/detr-resnet-50,hustvl/yolos-tiny")
    tab.wait_for_load_state("load")
    tab.set_input_files(
        "#compare-form input[type=file]",
        {"name": "red.png", "mimeType": "image/png", "buffer": png(upright())},
    )
    tab.click("#compare-form button[type=submit]")
    tab.wait_for_url(lambda url: "/compare/run/" in url)
    polls = []

    def cut(route):
        polls.append(route.request.url)
        route.abort("internetdisconnected")

    tab.route("**/compare/run/*?threshold=*", cut)
    tab.wait_for_selector("#compare-result[data-status=reconnecting]", timeout=30_000)
    assert "Connection lost" in tab.locator("#compare-summary").text_content()
    tab.unroute("**/compare/run/*?threshold=*")
    for job in Job.objects.all():
        finish(job.pk, [RED_BOX])
    tab.wait_for_selector("body[data-compare-status=done]", timeout=30_000)
    assert polls  # the page did lose some
    assert tab.locator(".compare-panel canvas").count() == 2
