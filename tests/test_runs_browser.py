"""A run kept and shared, in a real browser (Debian's Chromium through Playwright) against
the live server and a real worker process: an API call makes the run, its owner finds it in
My runs, opens its permalink and downloads every export (each one parsed: the COCO file by
pycocotools); another user gets 404 until the owner makes it public.
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest
import requests
from django.core.management import call_command
from PIL import Image

from tests.test_browser import (  # noqa: F401  (fixtures)
    BROWSER_MARKS,
    CHROMIUM,
    browser,
    wait_until,
    yolos_checkpoint,
)

pytestmark = [*BROWSER_MARKS, pytest.mark.worker]
FLOOR = "0.002"
LABELS = ["cat", "N/A", "traffic light", "café", "LABEL_91", "🙂"]


def sign_in(context, username: str):
    page = context.new_page()
    page.goto("/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"pw-{username}-1")
    page.click("main form button[type=submit]")
    page.wait_for_url("**/account/")
    return page


def test_a_run_is_kept_exported_and_shared(
    browser,  # noqa: F811
    live_server,
    transactional_db,
    start_worker,
    yolos_checkpoint,  # noqa: F811
    settings,
    tmp_path,
):
    from pycocotools.coco import COCO

    from billing.services.keys import api_key_create
    from billing.services.topups import credit_grant
    from playground.models import Job
    from playground.palette import label_colour
    from tests import factories

    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_SYNC_WAIT = 600
    call_command("seed_catalog", stdout=io.StringIO())
    card = factories.card(
        display_name="YOLOS tiny (runs)",
        checkpoint_local_dir=str(yolos_checkpoint),
        checkpoint_revision="rev-runs-1",
    )
    factories.route(card=card, price=Decimal("0.0002"))
    owner = factories.user(username="dev")
    factories.user(username="visitor")
    credit_grant(user=owner, amount=Decimal("1"), reason="test")
    _, key = api_key_create(user=owner, name="laptop")
    worker = start_worker(
        env_extra={"VITRINE_DETECTION_FLOOR": FLOOR, "VITRINE_ALLOW_UNTRAINED": "1"}
    )
    photo = io.BytesIO()
    Image.new("RGB", (320, 240), (30, 140, 220)).save(photo, "JPEG")

    # An API call with the owner's key: the run is theirs on the site too.
    response = requests.post(
        f"{live_server.url}/v1/detections/{card.model_id}?threshold={FLOOR}",
        data=photo.getvalue(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg"},
        timeout=600,
    )
    assert response.status_code == 200, (response.text, worker.output())
    body = response.json()
    job = Job.objects.get(pk=body["id"])
    shown = [d for d in job.result if d["score"] >= float(FLOOR)]
    assert shown, "random weights above the floor: the exports have rows to check"
    permalink = f"/playground/jobs/{job.pk}"

    mine = browser.new_context(base_url=live_server.url, accept_downloads=True)
    page = sign_in(mine, "dev")
    page.click(".site-header >> text=My runs")
    page.wait_for_url("**/runs")
    row = page.locator(f"#runs tr[data-run='{job.pk}']")
    assert "YOLOS tiny (runs)" in row.inner_text() and "$0.0002" in row.inner_text()
    row.locator("a").click()
    page.wait_for_url(f"**{permalink}")
    wait_until(page, "document.getElementById('run-image').naturalWidth > 0")
    assert page.evaluate("document.getElementById('run-image').naturalWidth") == 320
    assert page.locator("#detections tr").count() == len(shown)
    # Each row's swatch is its label's colour, from a class (the page has no style
    # attribute under its Content-Security-Policy).
    swatches = page.eval_on_selector_all(
        "#detections tr",
        "rows => rows.map((r) => [r.cells[0].textContent,"
        " getComputedStyle(r.querySelector('.swatch')).backgroundColor])",
    )
    assert swatches == [[label, css_rgb(label_colour(label))] for label, _ in swatches]
    record = page.locator("#provenance-record").inner_text()
    assert "rev-runs-1" in record and "threshold 0.002" in record
    assert f"#{body['price_version']['id']}: $0.0002 per image" in record
    assert "$0.0002 · posted" in record

    files = {}
    for fmt in ("json", "coco", "csv", "png"):
        with page.expect_download() as download:
            page.click(f"#exports a[data-format={fmt}]")
        files[fmt] = tmp_path / download.value.suggested_filename
        download.value.save_as(files[fmt])
    assert sorted(p.name for p in files.values()) == sorted(
        f"{card.slug}-{str(job.pk)[:8]}.{ext}" for ext in ("json", "coco.json", "csv", "png")
    )
    exported = json.loads(files["json"].read_text())
    assert exported["id"] == str(job.pk) and exported["model_revision"] == "rev-runs-1"
    assert exported["price_version"] == body["price_version"] and exported["cost"] == "0.0002"
    assert exported["detections"] == body["detections"]
    coco = COCO(str(files["coco"]))
    assert len(coco.getAnnIds(imgIds=[1])) == len(shown)
    assert len(coco.loadRes(coco.dataset["annotations"]).getAnnIds()) == len(shown)
    names = {coco.cats[a["category_id"]]["name"] for a in coco.dataset["annotations"]}
    assert names == {d["label"] for d in shown}
    rows = list(csv.DictReader(files["csv"].open()))
    assert [r["label"] for r in rows] == [d["label"] for d in shown]
    assert Image.open(files["png"]).size == (320, 240)

    # Another signed-in user: 404 for the page, the image and the exports, until public.
    theirs = browser.new_context(base_url=live_server.url)
    other = sign_in(theirs, "visitor")
    assert other.goto(permalink).status == 404
    for path in ("/image", "/export.png", "/export.json"):
        assert other.request.get(permalink + path).status == 404, path

    page.click("#visibility button")
    page.wait_for_selector("#public-flag")
    assert page.locator("#visibility button").inner_text() == "Make private"

    assert other.goto(permalink).status == 200
    wait_until(other, "document.getElementById('run-image').naturalWidth > 0")
    assert other.locator("#visibility").count() == 0
    assert other.locator("#detections tr").count() == len(shown)
    assert other.request.get(permalink + "/export.coco").status == 200

    # The try page's canvas takes its colours from the palette the PNG is drawn with.
    other.goto(f"/models/{card.model_id}/try")
    colours = other.evaluate(
        "async (labels) => { const m = await import('/static/playground/playground.js');"
        " return labels.map((l) => m.boxColour(l)); }",
        LABELS,
    )
    assert colours == [label_colour(label) for label in LABELS]
    mine.close()
    theirs.close()


def css_rgb(hex_colour: str) -> str:
    """``#rrggbb`` as getComputedStyle writes it."""
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"
