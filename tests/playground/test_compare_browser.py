"""Compare on your image, in a real browser: two live models, one dropped image, a real
worker running random-weight test checkpoints, two panels with their boxes."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.test_browser import (  # noqa: F401  (the module's browser fixture)
    BROWSER_MARKS,
    CHROMIUM,
    browser,
    wait_until,
)
from tests.test_responsive import LAYOUT_PROBLEMS

pytestmark = BROWSER_MARKS
MODELS = ("facebook/detr-resnet-50", "hustvl/yolos-tiny")
FLOOR = "0.002"

DROP = """async ([zone, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], "street.png", { type: "image/png" }));
  document.querySelector(zone).dispatchEvent(
    new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
}"""


def street_png() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (320, 240), (30, 140, 220))
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 60, 140, 200), fill=(200, 40, 40))
    draw.ellipse((180, 40, 300, 160), fill=(240, 220, 30))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.mark.worker
def test_two_live_models_on_one_image_side_by_side(
    browser,  # noqa: F811
    live_server,
    transactional_db,
    start_worker,
    runtime_checkpoint,
    settings,
    tmp_path,
):
    from catalog.models import ModelCard
    from playground.models import Job

    call_command("seed_catalog", stdout=io.StringIO())
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_DETECTION_FLOOR = float(FLOOR)
    # The seeded live cards run a test-sized random-weight checkpoint: the same one behind
    # both, so every box one model finds the other finds too (the matching end to end;
    # disagreement is covered by tests/playground/test_matching.py).
    checkpoint = str(runtime_checkpoint("yolos_tiny"))
    for model_id in MODELS:
        ModelCard.objects.by_model_id(model_id).update(checkpoint_local_dir=checkpoint)
    worker = start_worker(env_extra={"VITRINE_DETECTION_FLOOR": FLOOR})

    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/compare?models=" + ",".join(MODELS))
    assert page.locator("svg.costplot").is_visible()  # the speed/cost plot, server-drawn
    assert page.locator("svg.costplot g.point.compared").count() >= 1
    page.click("#compare-on-image")
    page.wait_for_url(lambda url: "/compare/run?models=" in url)
    assert page.locator("#compare-form input[name=models]:checked").count() == 2

    # The demo's example images are here too: a click fills the form as a pick would.
    page.click("[data-example$='park.jpg']")
    wait_until(page, "document.querySelector('#dropzone-hint').textContent === 'park.jpg'")
    assert page.evaluate("document.querySelector('#compare-form input[type=file]').files[0].size")
    page.evaluate(DROP, ["#dropzone", base64.b64encode(street_png()).decode()])
    assert page.locator("#dropzone-hint").inner_text() == "street.png"
    page.click("#compare-form button[type=submit]")
    page.wait_for_url(lambda url: "/compare/run/" in url)
    try:
        page.wait_for_selector("body[data-compare-status=done]", timeout=180_000)
    except Exception:
        pytest.fail(f"not done: {page.locator('#compare-summary').inner_text()}\n{worker.output()}")

    panels = page.locator(".compare-panel")
    assert panels.count() == 2
    assert [panels.nth(i).get_attribute("data-model-id") for i in range(2)] == list(MODELS)
    assert Job.objects.filter(status="succeeded").count() == 2, worker.output()
    # Random test weights, said on each panel by the live update (not only after a reload).
    assert Job.objects.filter(weights_untrained=True).count() == 2
    for i in range(2):
        assert panels.nth(i).locator("[data-role=untrained]").is_visible()

    # Random weights: nothing reaches the default 0.5; at the floor both models see boxes.
    assert [panels.nth(i).locator("canvas").get_attribute("data-boxes") for i in range(2)] == [
        "0",
        "0",
    ]
    page.locator("#threshold").fill(FLOOR)
    page.wait_for_selector(f"#compare-result[data-threshold='{FLOOR}']", timeout=30_000)
    for i in range(2):
        panel = panels.nth(i)
        boxes = int(panel.locator("canvas").get_attribute("data-boxes"))
        assert boxes > 0
        assert panel.get_attribute("data-agreed") == str(boxes)
        assert panel.get_attribute("data-only") == "0"
        badge = panel.locator("[data-role=status]")
        assert badge.inner_text() == "Succeeded"
        assert badge.get_attribute("class") == "badge badge-live"
        assert panel.locator("canvas").bounding_box()["width"] > 100
        assert panel.locator("[data-role=queue]").inner_text().endswith(" ms")
        assert panel.locator("[data-role=model]").inner_text().endswith(" ms")
        assert panel.locator("[data-role=cost]").inner_text().startswith("$0 · free try")
    summary = page.locator("#compare-summary").inner_text()
    assert summary.startswith(f"{boxes} boxes found by two or more models"), summary

    first, second = (panels.nth(i).bounding_box() for i in range(2))
    assert first["y"] == second["y"] and second["x"] > first["x"]  # side by side
    page.set_viewport_size({"width": 390, "height": 844})
    first, second = (panels.nth(i).bounding_box() for i in range(2))
    assert second["y"] >= first["y"] + first["height"]  # stacked on a phone
    assert page.evaluate(LAYOUT_PROBLEMS) == []
    shots = os.environ.get("BROWSER_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / "compare-run-390.png"), full_page=True)
        page.set_viewport_size({"width": 1280, "height": 900})
        page.screenshot(path=str(Path(shots) / "compare-run-1280.png"), full_page=True)

    # The same real jobs, measured: the beat task's work shows on the model page.
    from playground.tasks import refresh_model_stats

    settings.VITRINE_STATS_MIN_RUNS = 1
    assert refresh_model_stats()["changed"] == 2
    page.goto(f"/models/{MODELS[1]}")
    assert page.locator("#measured-runs").inner_text() == "1"
    latency = page.locator("#measured-latency table").inner_text()
    assert "Queue wait" in latency and "Model time" in latency and " ms" in latency
    if shots:
        page.locator("#measured-latency").screenshot(path=str(Path(shots) / "measured.png"))
    assert errors == []
    context.close()
