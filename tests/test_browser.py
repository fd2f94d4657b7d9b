"""Pages in a real browser: Debian's Chromium driven by Playwright against the live server.

CI installs Chromium with apt (.ci/run); Playwright's own browser download cannot work on
these machines. Without /usr/bin/chromium the tests are skipped with that reason.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from django.core.management import call_command

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# Every browser test module's marks (``pytestmark = BROWSER_MARKS``): CI sets
# REQUIRE_BROWSER=1 so a missing browser fails instead of skipping.
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("REQUIRE_BROWSER"),
        reason=f"no {CHROMIUM}: apt-get install chromium",
    ),
]
pytestmark = BROWSER_MARKS
# The whole-site layout and accessibility sweeps (every page, each width and scheme): the
# same pages on any database, checked in CI's embedded step and left out of its PostgreSQL
# step, as the detector's own tests are (tests/conftest.py; TEST_EVERYTHING=1 runs them
# there too). About 70 s of that step (session 46, when it passed 15 minutes).
PAGES_ON_EMBEDDED_ONLY = pytest.mark.skipif(
    os.environ.get("DATABASE_URL", "").startswith("postgres")
    and not os.environ.get("TEST_EVERYTHING"),
    reason="the same pages on any database: swept in the embedded step",
)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, which trips
    # Django's async-safety check on the test's own ORM calls (seeding, flushing). The
    # pages are served by the live server's own thread, which this does not touch.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def watch_csp(page) -> list[str]:
    """Every Content-Security-Policy violation the page reports from now on (Chromium
    logs each as a console error: "Refused to ... because it violates the following
    Content Security Policy directive")."""
    found: list[str] = []
    page.on(
        "console",
        lambda message: (
            found.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return found


def wait_until(page, expression: str, timeout: float = 30) -> None:
    """``page.wait_for_function`` for pages under the site's Content-Security-Policy:
    Playwright compiles a string predicate inside the page (``eval``, which the policy
    refuses); ``page.evaluate`` runs as DevTools does. Polls every 100 ms."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {expression}")
        page.wait_for_timeout(100)


@pytest.fixture
def page(browser, live_server, transactional_db, tmp_path):
    call_command("seed_catalog", stdout=io.StringIO())
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    violations = watch_csp(page)
    yield page
    assert violations == [], "the page broke its Content-Security-Policy"
    shots = os.environ.get("BROWSER_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        name = os.environ["PYTEST_CURRENT_TEST"].split(":")[-1].split(" ")[0]
        page.screenshot(path=str(Path(shots) / f"{name}.png"), full_page=True)
    context.close()


def test_search_filters_the_list(page):
    page.goto("/models")
    cards = page.locator("#results li.card")
    assert cards.count() == 4
    page.fill("input[name=q]", "rt-detr")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**/models?*q=rt-detr*")
    assert cards.count() == 1
    assert cards.first.get_attribute("data-model-id") == "PekingU/rtdetr_r50vd"
    page.check("input[name=status][value=live]")
    page.fill("input[name=q]", "")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**status=live*")
    ids = {cards.nth(i).get_attribute("data-model-id") for i in range(cards.count())}
    assert ids == {"facebook/detr-resnet-50", "hustvl/yolos-tiny"}


def test_a_model_page_shows_its_sections(page):
    page.goto("/models/facebook/detr-resnet-50")
    for section in (
        "#overview",
        "#about",
        "#use",
        "#api-schema",
        "#pricing",
        "#specs",
        "#benchmarks",
        "#capabilities",
        "#faq",
        "#price-history",
        "#related",
    ):
        assert page.locator(section).is_visible(), section
    assert "$0.0002" in page.locator("#pricing").inner_text()
    answer = page.locator("#faq details").first
    assert not answer.locator("p").first.is_visible()
    answer.locator("summary").click()
    assert answer.locator("p").first.is_visible()
    page.get_by_role("tab", name="Python", exact=True).click()
    assert "requests.post" in page.locator("[data-snippet=python] pre").inner_text()


def test_compare_shows_the_plot(page):
    page.goto("/compare?models=facebook/detr-resnet-50,PekingU/rtdetr_r50vd")
    plot = page.locator("svg.scatter")
    assert plot.is_visible()
    assert plot.bounding_box()["width"] > 300
    assert page.locator("svg.scatter g.point").count() >= 8
    assert page.locator("svg.scatter g.point.compared").count() >= 2
    assert page.locator("#compare-table").is_visible()


def test_a_coming_soon_page_records_demand(page):
    page.goto("/models/PekingU/rtdetr_r50vd")
    page.fill("#notify input[name=email]", "dev@example.com")
    page.click("#notify button")
    assert "Thanks: we will tell you when it is live." in page.locator(".messages").inner_text()


@pytest.fixture(scope="module")
def yolos_checkpoint(tmp_path_factory):
    from playground.runtime.checkpoints import build_checkpoint

    return build_checkpoint(
        "yolos_tiny",
        tmp_path_factory.mktemp("browser-ckpt") / "yolos_tiny",
        processor_size={"shortest_edge": 224, "longest_edge": 320},
    )


@pytest.mark.worker
def test_trying_a_model_draws_its_boxes_on_the_image(
    page, start_worker, yolos_checkpoint, settings, tmp_path
):
    from tests import factories

    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card(
        display_name="YOLOS tiny (test)", checkpoint_local_dir=str(yolos_checkpoint)
    )
    factories.route(card=card)
    worker = start_worker(env_extra={"VITRINE_DETECTION_FLOOR": "0.002"})
    image = tmp_path / "street.png"
    from PIL import Image

    Image.new("RGB", (320, 240), (30, 140, 220)).save(image)

    page.goto(f"/models/{card.model_id}")
    page.click("text=Try it on your image")
    # The form's script (a deferred module) runs before "load": a click before it would
    # post the form without it and land on the server-rendered permalink instead.
    page.wait_for_load_state("load")
    page.set_input_files("#try-form input[type=file]", str(image))
    page.click("#try-form button[type=submit]")
    page.wait_for_selector("body[data-job-status=succeeded]", timeout=120_000)

    assert page.locator("#result").is_visible(), worker.output()
    canvas = page.locator("#canvas")
    assert canvas.bounding_box()["width"] > 100
    assert canvas.get_attribute("data-boxes") == "0"  # random weights: nothing reaches 0.5
    page.locator("#threshold").fill("0.002")
    boxes = int(canvas.get_attribute("data-boxes"))
    assert boxes > 0
    assert page.locator("#detections tr").count() == boxes
    # The run's permalink is in the address bar: a reload shows the run, not an empty form;
    # Back returns to the page the run was started on.
    from playground.models import Job

    job = Job.objects.get()
    started_on = f"/models/{card.model_id}#demo"  # "Try it on your image": the inline demo
    assert page.url.endswith(f"/playground/jobs/{job.pk}"), page.url
    page.reload()
    assert page.locator("#run-status").inner_text() == "Succeeded"
    assert page.locator("#detections-table").count() == 1  # the run's own page
    page.go_back()
    page.wait_for_selector("#try-form", state="attached")  # that page again, not the run's
    assert page.url.endswith(started_on), page.url
    assert page.locator("#result").is_hidden()


@pytest.mark.worker
def test_the_inline_demo_runs_a_dropped_example_and_refilters_without_a_new_run(
    page, start_worker, yolos_checkpoint, settings, tmp_path
):
    """On a live model's page, signed in with a funded wallet: the price before Run, an
    example dropped on the demo, the live state, boxes equal to the detections above the
    threshold, the slider and the class filter redrawing with no new job and no new charge,
    and the JSON tab equal to what the API answers for the same image and threshold."""
    import json
    from collections import Counter

    from billing.models import Charge
    from billing.services.keys import api_key_create
    from playground.demo import EXPORT_FORMATS as EXPORTS
    from playground.models import Job
    from tests import factories

    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    # Random weights score every class near 1/num_labels: a low floor keeps some boxes.
    settings.VITRINE_DETECTION_FLOOR = 0.002
    card = factories.card(display_name="YOLOS demo", checkpoint_local_dir=str(yolos_checkpoint))
    factories.route(card=card)
    # Past a thousand, so the balance shows the site's one money format (thousands separated).
    user = factories.funded(factories.user(username="demo"), "1234")
    _, key = api_key_create(user=user, name="compare")
    auth = {"Authorization": f"Bearer {key}"}
    worker = start_worker(
        env_extra={"VITRINE_DETECTION_FLOOR": "0.002", "VITRINE_ALLOW_UNTRAINED": "1"}
    )

    page.goto("/accounts/login/")
    page.fill("input[name=username]", "demo")
    page.fill("input[name=password]", "pw-demo-1")
    page.click("form button[type=submit]")
    page.wait_for_url("**/account/")
    page.goto(f"/models/{card.model_id}")
    page.wait_for_selector("#demo-cost[data-pays=wallet]")
    assert "Run costs $0.0002 from your wallet" in page.locator("#demo-cost").inner_text()

    # The other two ways in choose an image without running anything: the file picker,
    # then a paste from the clipboard (a screenshot arrives as a nameless image file).
    chosen = page.locator("#demo-chosen span")
    picked = tmp_path / "picked.png"
    from PIL import Image

    Image.new("RGB", (64, 48), (200, 40, 40)).save(picked)
    page.set_input_files("#dropzone input[type=file]", str(picked))
    page.wait_for_selector("#demo-chosen:not([hidden])")
    assert chosen.inner_text().startswith("picked.png")
    page.evaluate(
        """async () => {
          const blob = await (await fetch(document.querySelector("#demo-chosen img").src)).blob();
          const transfer = new DataTransfer();
          transfer.items.add(new File([blob], "", { type: "image/png" }));
          document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer }));
        }"""
    )
    wait_until(
        page, "document.querySelector('#demo-chosen span').textContent.startsWith('pasted.png')"
    )
    assert (
        page.eval_on_selector(
            "#dropzone input[type=file]", "i => i.files.length === 1 && i.files[0].name"
        )
        == "pasted.png"
    )  # what Run sends is the pasted image
    assert Job.objects.count() == 0  # choosing runs nothing

    # Drop an example image on the demo, as a file dragged from the desktop arrives.
    page.evaluate(
        """async () => {
          const example = document.querySelector("[data-example$='street.jpg']").dataset.example;
          const blob = await (await fetch(example)).blob();
          const transfer = new DataTransfer();
          transfer.items.add(new File([blob], "street.jpg", { type: "image/jpeg" }));
          document.getElementById("dropzone").dispatchEvent(
            new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        }"""
    )
    page.wait_for_selector("#demo-chosen:not([hidden])")
    page.click("#run")
    page.wait_for_selector("#result[data-state]")  # the live state, without a reload
    page.wait_for_selector("body[data-job-status=succeeded]", timeout=180_000)
    states = page.locator("#result").get_attribute("data-states").split(",")
    assert (states[0], states[-1]) == ("queued", "succeeded"), (states, worker.output())
    job = Job.objects.get(card=card)
    assert job.owner_id == user.pk and job.timings["load"] > 0  # a fresh worker loaded it
    assert page.locator("#demo-untrained").is_visible()  # random test weights, said so
    facts = page.locator("#timings").inner_text()
    assert "queue wait" in facts and "model load" in facts and "$0.0002" in facts
    assert "(balance $1,233.9998)" in facts, facts  # as the server formats money, not 1233.9998

    jobs, charges = Job.objects.count(), Charge.objects.count()
    slider = page.locator("#threshold")
    scores = sorted(d["score"] for d in job.result)
    slider.fill(str(round(scores[len(scores) // 2], 3)))
    threshold = float(slider.input_value())
    above = [d for d in job.result if d["score"] >= threshold]
    assert 0 < len(above) < len(job.result)
    assert page.locator("#canvas").get_attribute("data-boxes") == str(len(above))
    assert page.locator("#boxes g.box").count() == page.locator("#detections tr").count()
    assert page.locator("#boxes g.box").count() == len(above)

    label, _ = Counter(d["label"] for d in above).most_common(1)[0]
    page.locator(f"#classes input[value='{label}']").uncheck()
    rest = [d for d in above if d["label"] != label]
    drawn = page.eval_on_selector_all("#boxes g.box", "gs => gs.map((g) => g.dataset.label)")
    assert sorted(drawn) == sorted(d["label"] for d in rest)
    assert page.locator("#detections tr").count() == len(rest)
    if rest:  # hovering a row marks its box
        row = page.locator("#detections tr").first
        row.hover()
        index = row.get_attribute("data-i")
        assert "is-hovered" in page.locator(f"#boxes g.box[data-i='{index}']").get_attribute(
            "class"
        )
    assert (Job.objects.count(), Charge.objects.count()) == (jobs, charges)  # nothing ran again

    page.get_by_role("tab", name="JSON", exact=True).click()
    shown = json.loads(page.locator("#demo-json").inner_text())
    resource = page.request.get(f"/v1/jobs/{job.pk}?threshold={threshold}", headers=auth)
    assert shown == resource.json()["detections"]
    # A new call of the API with the same image and threshold answers the same boxes.
    image = Path(__file__).resolve().parents[1] / "static/playground/examples/street.jpg"
    answer = page.request.post(
        f"/v1/inference/{card.model_id}?threshold={threshold}",
        headers={**auth, "Content-Type": "image/jpeg"},
        data=image.read_bytes(),
        timeout=120_000,
    )
    if answer.status == 202:  # the call's wait ran out on a busy machine: poll the job
        url = answer.json()["url"]
        for _ in range(600):
            polled = page.request.get(f"{url}?threshold={threshold}", headers=auth).json()
            if polled["status"] == "succeeded":
                break
            page.wait_for_timeout(200)
        assert polled["detections"] == shown
    else:
        assert answer.status == 200, answer.text()
        assert answer.json() == shown
    page.get_by_role("tab", name="API call", exact=True).click()
    curl = page.locator("#demo-curl").inner_text()
    assert (
        f"{page.evaluate('location.origin')}/v1/inference/{card.model_id}?threshold={threshold}"
        in curl
    )
    assert "--data-binary @street.jpg" in curl
    assert f'"threshold": {threshold}' in page.locator("#demo-python").inner_text()
    # The filled result panel fits a phone: nothing scrolls the page sideways.
    page.set_viewport_size({"width": 390, "height": 900})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # The panel links the run's permalink and its downloads.
    exports = page.eval_on_selector_all("#demo-exports a", "as => as.map((a) => a.pathname)")
    assert exports == [f"/playground/jobs/{job.pk}/export.{fmt}" for fmt in EXPORTS]
    # The permalink and the downloads keep the slider's threshold: what is kept is what is shown.
    kept = page.eval_on_selector_all(
        "#demo-links a", "as => as.map((a) => new URL(a.href).searchParams.get('threshold'))"
    )
    assert len(kept) == len(EXPORTS) + 1 and {float(t) for t in kept} == {threshold}
    page.click("#demo-permalink")
    page.wait_for_url(f"**/playground/jobs/{job.pk}?threshold=*")
    assert page.locator("#run-status").inner_text() == "Succeeded"
    assert page.locator("#detections-table tbody tr").count() == len(above)  # as on the demo
