"""What a keyboard, screen-reader, zoom or forced-colours user met on the site (a probe in
Chromium, session 47), each as it must be now: the HTML through Django's test client where
that says it, the rest in a real browser (Debian's Chromium, see tests/test_browser.py).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from PIL import Image

from playground.palette import PALETTE
from tests import factories
from tests.test_accessibility import axe, described
from tests.test_browser import (  # noqa: F401  (the module's browser fixtures)
    BROWSER_MARKS,
    CHROMIUM,
    PAGES_ON_EMBEDDED_ONLY,
    browser,
    page,
    wait_until,
)

TWO_MODELS = "/compare/run?models=facebook/detr-resnet-50,hustvl/yolos-tiny"


def in_a_browser(test):
    """The browser modules' marks, on one test of this module (the rest need no browser).
    Keyboard, focus and contrast behaviours of pages, the same on any database: run in
    CI's embedded step only, as the whole-site sweeps are (PAGES_ON_EMBEDDED_ONLY)."""
    for mark in (*BROWSER_MARKS, PAGES_ON_EMBEDDED_ONLY):
        test = mark(test)
    return test


def png(size=(64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (30, 140, 220)).save(out, "PNG")
    return out.getvalue()


def queued_run(**fields):
    """A public run still in the queue, its upload stored (no worker: the test moves it)."""
    from catalog.models import ModelCard

    card = ModelCard.objects.get(slug="detr-resnet-50")
    return factories.finished_run(
        card=card, image_bytes=png(), result=None, is_public=True, status="queued",
        attempts=0, started_at=None, finished_at=None, **fields,
    )  # fmt: skip


def contrast(colour: str, other: str = "#ffffff") -> float:
    """WCAG 2's contrast ratio of two ``#rrggbb`` colours."""

    def luminance(hex_colour: str) -> float:
        channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted([luminance(colour), luminance(other)], reverse=True)
    return (high + 0.05) / (low + 0.05)


# --- the HTML --------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_running_runs_permalink_refreshes_itself_only_without_javascript(
    client, settings, tmp_path
):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    call_command("seed_catalog", stdout=io.StringIO())
    job = queued_run()
    body = client.get(f"/playground/jobs/{job.pk}").content.decode()
    # A bare refresh reloaded the page every 2 s with JavaScript on too, throwing a keyboard
    # or screen-reader user back to the top (WCAG 2.2.1); job.js follows the run instead.
    assert '<noscript><meta http-equiv="refresh" content="2"></noscript>' in body
    assert body.count('http-equiv="refresh"') == 1
    assert "/static/playground/job.js" in body
    job.status = "succeeded"
    job.result = []
    job.save()
    body = client.get(f"/playground/jobs/{job.pk}").content.decode()
    assert 'http-equiv="refresh"' not in body and "job.js" not in body


@pytest.mark.django_db
def test_a_refused_sign_in_is_announced_and_names_its_fields(client):
    factories.user(username="dev")
    body = client.post("/accounts/login/", {"username": "dev", "password": "wrong"}).content
    body = body.decode()
    assert re.search(r"<title>Error: Sign in · Vitrine</title>", body)
    assert '<p class="error" id="login-error" role="alert">' in body
    username = re.search(r'<input type="text" name="username"[^>]*>', body).group()
    password = re.search(r'<input type="password" name="password"[^>]*>', body).group()
    for field in (username, password):
        assert 'aria-invalid="true"' in field and 'aria-describedby="login-error"' in field
    # Focus goes to the password to type again (the username is kept), not back to Username.
    assert "autofocus" in password and "autofocus" not in username
    assert 'value="dev"' in username
    # Before any error: no "Error:", nothing marked invalid, Username focused.
    fresh = client.get("/accounts/login/").content.decode()
    assert "<title>Sign in · Vitrine</title>" in fresh
    assert "aria-invalid" not in fresh and "login-error" not in fresh
    assert re.search(r'<input type="text" name="username"[^>]*autofocus', fresh)


@pytest.mark.django_db
def test_a_sign_up_with_errors_says_so_in_its_title(client):
    body = client.post(
        "/accounts/signup/",
        {"username": "newbie", "email": "nope", "password1": "a", "password2": "b"},
    ).content.decode()
    assert "<title>Error: Sign up · Vitrine</title>" in body
    assert "<title>Sign up · Vitrine</title>" in client.get("/accounts/signup/").content.decode()


@pytest.mark.django_db
def test_each_chart_on_compare_is_named_by_its_heading(client):
    call_command("seed_catalog", stdout=io.StringIO())
    models = "facebook/detr-resnet-50,PekingU/rtdetr_r50vd,microsoft/conditional-detr-resnet-50"
    body = client.get(f"/compare?models={models}").content.decode()
    figures = re.findall(r'<figure class="panel chart"[^>]*>', body)
    assert len(figures) == 2  # AP against speed, time against price
    for figure in figures:
        # Focusable (it scrolls sideways on a phone), so it needs a name: it had none.
        assert 'tabindex="0"' in figure
        title = re.search(r'aria-labelledby="([^"]+)"', figure).group(1)
        caption = re.search(r'aria-describedby="([^"]+)"', figure).group(1)
        assert re.search(rf'<h2 id="{title}">Speed against (accuracy|cost)</h2>', body)
        assert f'<figcaption id="{caption}">' in body


def test_white_label_text_reads_on_every_box_colour():
    # A box's label is 12 px white text on its class's colour: AA asks 4.5:1.
    low = {colour: round(contrast(colour), 2) for colour in PALETTE if contrast(colour) < 4.5}
    assert low == {}
    # The page's swatches (site.css, one rule a colour) are the same colours, in order.
    css = (Path(settings.BASE_DIR) / "static/catalog/site.css").read_text()
    swatches = dict(re.findall(r"\.swatch-(\d+) \{ --box: (#[0-9a-f]{6}); \}", css))
    assert [swatches[str(i)] for i in range(len(swatches))] == list(PALETTE)


# --- in a browser ------------------------------------------------------------------------


@in_a_browser
def test_a_running_runs_permalink_follows_the_run_without_reloading(page, settings, tmp_path):  # noqa: F811
    from django.utils import timezone

    from playground.models import Job

    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    job = queued_run()
    page.goto(f"/playground/jobs/{job.pk}")
    page.wait_for_load_state("load")
    page.focus(".crumbs a")  # a keyboard user somewhere on the page
    page.evaluate("window.sameDocument = true")
    page.wait_for_timeout(2600)  # the old refresh reloaded the page after 2 s
    assert page.evaluate("window.sameDocument === true")
    assert page.evaluate("document.activeElement.matches('.crumbs a')")
    Job.objects.filter(pk=job.pk).update(status="running", started_at=timezone.now())
    # The running state is said in place (the status line is a polite live region).
    wait_until(page, "document.getElementById('run-status').textContent === 'Running'")
    assert page.locator("#status").inner_text().startswith("Running")
    assert page.evaluate("window.sameDocument === true")
    assert page.evaluate("document.activeElement.matches('.crumbs a')")
    # Ended: the page loads once more, with the result.
    Job.objects.filter(pk=job.pk).update(status="succeeded", result=[], finished_at=timezone.now())
    page.wait_for_selector("#detections-table", timeout=15_000)
    assert page.locator("#run-status").inner_text() == "Succeeded"


@in_a_browser
def test_keyboard_users_are_not_moved_by_the_playground_or_the_run_buttons(
    page,  # noqa: F811
    settings,
    tmp_path,
):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    # /playground's model picker: an arrow key picks another option and stays on the page
    # (it opened that model's demo at the first key, WCAG 3.2.2); Open opens it.
    page.goto("/playground")
    page.wait_for_load_state("load")
    picker = page.locator("#pick-model select")
    assert picker.locator("option").count() >= 2
    first = picker.input_value()
    picker.focus()
    page.keyboard.press("ArrowDown")
    page.wait_for_timeout(500)
    assert page.url.endswith("/playground") and picker.input_value() != first
    assert page.evaluate("document.activeElement.matches('#pick-model select')")

    # Run, pressed from the keyboard: focus stays on it while its upload is on its way
    # (disabling it dropped focus to <body>), and a second press sends nothing more.
    held = []
    page.route("**/try", lambda r: held.append(r) if r.request.method == "POST" else r.continue_())
    page.set_input_files(
        "#try-form input[type=file]", {"name": "a.png", "mimeType": "image/png", "buffer": png()}
    )
    page.focus("#run")
    page.keyboard.press("Enter")
    wait_until(page, "document.getElementById('status').textContent === 'Uploading…'")
    assert page.evaluate("document.activeElement.id") == "run"
    assert page.get_attribute("#run", "aria-disabled") == "true"
    page.keyboard.press("Enter")
    page.wait_for_timeout(200)
    assert len(held) == 1
    held[0].abort("connectionreset")
    wait_until(page, "document.getElementById('result').dataset.state === 'error'")
    assert page.evaluate("document.activeElement.id") == "run"
    assert page.get_attribute("#run", "aria-disabled") is None

    # The same on Compare on your image.
    held.clear()
    page.route(
        "**/compare/run", lambda r: held.append(r) if r.request.method == "POST" else r.continue_()
    )
    page.goto(TWO_MODELS)
    page.wait_for_load_state("load")
    page.set_input_files(
        "#compare-form input[type=file]",
        {"name": "a.png", "mimeType": "image/png", "buffer": png()},
    )
    page.focus("#compare-form button[type=submit]")
    page.keyboard.press("Enter")
    while not held:
        page.wait_for_timeout(100)
    assert page.evaluate("document.activeElement.matches('#compare-form button[type=submit]')")
    held[0].abort("connectionreset")
    page.wait_for_selector("#compare-error:not([hidden])")
    assert page.evaluate("document.activeElement.matches('#compare-form button[type=submit]')")


@in_a_browser
def test_a_form_sent_back_with_errors_puts_focus_on_what_to_fix(page):  # noqa: F811
    factories.user(username="dev", email="taken@example.com")
    page.goto("/accounts/signup/")
    page.fill("#id_username", "newbie")
    page.fill("#id_email", "taken@example.com")
    page.fill("#id_password1", "a-long-pass-phrase-9")
    page.fill("#id_password2", "a-long-pass-phrase-9")
    page.click("form button[type=submit]")
    page.wait_for_selector("#id_email[aria-invalid=true]")
    assert page.title() == "Error: Sign up · Vitrine"
    # The invalid field, not Username (which the form autofocuses, valid or not).
    assert page.evaluate("document.activeElement.id") == "id_email"

    page.goto("/accounts/login/")
    page.fill("#id_username", "dev")
    page.fill("#id_password", "wrong")
    page.click("form button[type=submit]")
    page.wait_for_selector("#login-error")
    assert page.title() == "Error: Sign in · Vitrine"
    assert page.evaluate("document.activeElement.id") == "id_password"


# Class chips as playground.js builds them: one with boxes at the threshold, one without.
CHIPS = """document.getElementById("main").insertAdjacentHTML("afterbegin", `<p id=chip-probe>
  <label class="chip class-chip"><input type=checkbox checked value=dog> dog
    <span class=count>12</span></label>
  <label class="chip class-chip is-empty"><input type=checkbox checked value=cat> cat
    <span class=count>0</span></label></p>`)"""


@in_a_browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_states_keep_their_contrast_and_survive_forced_colours(
    browser,  # noqa: F811
    live_server,
    transactional_db,
    scheme,
):
    call_command("seed_catalog", stdout=io.StringIO())
    context = browser.new_context(base_url=live_server.url, color_scheme=scheme)
    page = context.new_page()  # noqa: F811
    page.goto("/models/facebook/detr-resnet-50")
    page.wait_for_load_state("load")
    # An empty class chip was faded with opacity to about 2.5:1; a chip's count was 4.4:1.
    page.evaluate(CHIPS)
    violations = axe(page, context={"include": [["#chip-probe"]]})
    assert violations == [], described(violations)
    # Forced colours repaint the selected tab's accent border: it keeps an underline.
    page.emulate_media(forced_colors="active")
    assert page.evaluate("matchMedia('(forced-colors: active)').matches")
    decoration = page.eval_on_selector_all(
        "#use [role=tab]",
        "tabs => tabs.map((t) => [t.getAttribute('aria-selected'),"
        " getComputedStyle(t).textDecorationLine])",
    )
    assert {line for selected, line in decoration if selected == "true"} == {"underline"}
    assert {line for selected, line in decoration if selected == "false"} == {"none"}
    context.close()


def test_a_refused_sign_up_autofocuses_the_field_at_fault_without_script(client, db):
    """Django's sign-up form autofocuses Username even when the email is what was wrong;
    with no script to move it (site.js does), the page must say where to go itself."""
    import re

    from tests import factories

    factories.user(username="taken", email="taken@example.com")
    html = client.post(
        "/accounts/signup/",
        {"username": "newcomer", "email": "taken@example.com",
         "password1": "An0ther-horse-47", "password2": "An0ther-horse-47"},
    ).content.decode()  # fmt: skip
    focused = re.findall(r"<input[^>]*\bautofocus\b[^>]*>", html)
    assert len(focused) == 1 and 'name="email"' in focused[0], focused
