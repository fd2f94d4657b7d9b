"""Every page type in a real browser at phone, tablet and desktop widths.

Debian's Chromium through Playwright against the live server (see tests/test_browser.py).
Each page at 390, 768 and 1280 px: the page never scrolls sideways, every table fits or
sits in its own scroll box, benchmark numbers never break over two lines, og:/Twitter tags
are filled, every request (favicon, fonts, scripts) answers, and no script error is
raised. Full-page screenshots of each page at 390 and 1280 px are written to
``var/screenshots/`` (``SCREENSHOTS_DIR`` to change it) for a person to look at; CI keeps
them as artifacts.
"""

from __future__ import annotations

import io
import itertools
import os
import types
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from tests.test_browser import (  # noqa: F401  (the module's browser fixture)
    BROWSER_MARKS,
    CHROMIUM,
    PAGES_ON_EMBEDDED_ONLY,
    browser,
    wait_until,
    watch_csp,
)

pytestmark = BROWSER_MARKS

WIDTHS = [390, 768, 1280]
# The narrowest width a page must read at without scrolling sideways: a 320 px phone, and a
# 1280 px window at 400% zoom (WCAG 1.4.10). Each page of the 390 px sweep is narrowed to
# it too (a resize, not a sweep of its own): every page scrolled 40 px sideways there, the
# site nav's "API" past the edge, and the sweep's narrowest width, 390, did not show it.
NARROWEST = 320
SCREENSHOT_WIDTHS = {390, 1280}
SHOTS = Path(os.environ.get("SCREENSHOTS_DIR") or Path(settings.BASE_DIR) / "var" / "screenshots")

DETR = "/models/facebook/detr-resnet-50"
PAGES = {
    "models": "/models",
    "model-live": DETR,
    "model-coming-soon": "/models/PekingU/rtdetr_r50vd",
    "model-deprecated": "/models/legacy/detr-r101-dc5",
    "model-retired": "/models/legacy/detr-r50-panoptic",
    "compare": "/compare?models=facebook/detr-resnet-50,PekingU/rtdetr_r50vd,"
    "microsoft/conditional-detr-resnet-50",
    "compare-run": "/compare/run?models=facebook/detr-resnet-50,hustvl/yolos-tiny",
    "collection": "/collections/object-detection",
    "org": "/orgs/facebook",
    "task": "/tasks/object-detection",
    "pricing": "/pricing",
    "try": f"{DETR}/try",
    "playground": "/playground",
    "not-found": "/models/facebook/detr-resnet-5",
    "page-not-found": "/no-such-page",  # the site's 404 for any other address
    "login": "/accounts/login/",
    "signup": "/accounts/signup/",
    "api-docs": "/docs/api",
    # A public run's permalink (seed_pages makes it; {run} is its id), seen by a stranger.
    "run": "/playground/jobs/{run}",
    "dashboard": "/account/",  # signed in, with a key just created (shown once)
    "runs": "/runs",  # signed in as the run's owner
    "password-change": "/account/password/",  # signed in
    "account-delete": "/account/delete/",  # signed in, with credit left
    "receipt": "/account/top-ups/{receipt}/receipt",  # signed in, paid
}
# The pages that are 404s on purpose.
NOT_FOUND = (PAGES["not-found"], PAGES["page-not-found"])

# What the page may not do, measured in the page itself.
LAYOUT_PROBLEMS = """() => {
  const width = document.documentElement.clientWidth;
  const problems = [];
  if (document.documentElement.scrollWidth > window.innerWidth) {
    const wide = document.documentElement.scrollWidth;
    problems.push(`page is ${wide}px wide in ${window.innerWidth}px`);
  }
  const scrolls = (el) => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if (o === "auto" || o === "scroll") return true;
    }
    return false;
  };
  for (const table of document.querySelectorAll("table")) {
    if (!table.offsetParent) continue;  // in a closed <details>, or hidden
    const box = table.getBoundingClientRect();
    const fits = box.right <= width + 1 && table.scrollWidth <= table.clientWidth + 1;
    if (!fits && !scrolls(table) && getComputedStyle(table).overflowX === "visible") {
      problems.push(`table ${table.id || table.className} (${Math.round(box.width)}px) is clipped`);
    }
  }
  // A chart or a table box that scrolls sideways says so in a line above it.
  for (const box of document.querySelectorAll("figure, .scroll")) {
    if (!box.offsetParent || box.scrollWidth <= box.clientWidth + 1) continue;
    const cue = box.previousElementSibling;
    if (!cue || !cue.matches(".scroll-cue") || !cue.offsetParent) {
      problems.push(`${box.tagName.toLowerCase()}.${box.className} scrolls sideways unsaid`);
    }
  }
  // Numbers never break: every benchmark cell and numeric cell is one line.
  for (const cell of document.querySelectorAll("table.bench td, td.num")) {
    if (!cell.offsetParent || !/\\d/.test(cell.textContent)) continue;
    const range = document.createRange();
    range.selectNodeContents(cell);
    const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
    if (lines.size > 1 && !cell.querySelector("br")) {
      problems.push(`"${cell.textContent.trim()}" wraps`);
    }
  }
  // An identifier in a table cell (an error code, a model id) never breaks inside itself.
  for (const code of document.querySelectorAll("td code")) {
    if (!code.offsetParent) continue;
    const lines = new Set([...code.getClientRects()].map((r) => Math.round(r.top)));
    if (lines.size > 1) problems.push(`<code>${code.textContent}</code> breaks`);
  }
  return problems;
}"""

# What a page is for, checked in the page itself (probe 3, session 49): [] when all is well.
PAGE_CHECKS = {
    # A run's labels are drawn by the page in its 12 px type at any scale, inside the
    # picture (a PNG drawn by the server and shrunk to a phone took them to 6 px).
    "run": """() => {
      const stage = document.querySelector(".run-stage")?.getBoundingClientRect();
      if (!stage) return ["the picture has no labels drawn over it"];
      const tags = [...document.querySelectorAll(".run-tag")];
      const problems = tags.length ? [] : ["no label is drawn"];
      for (const tag of tags) {
        const box = tag.getBoundingClientRect();
        const name = tag.textContent;
        if (parseFloat(getComputedStyle(tag).fontSize) < 12) problems.push(`${name} under 12 px`);
        if (box.left < stage.left - 1 || box.right > stage.right + 1 || box.top < stage.top - 1
            || box.bottom > stage.bottom + 1) problems.push(`${name} outside the picture`);
      }
      return problems;
    }""",
    # Every route's prices are on the screen, not a sideways swipe away.
    "pricing": """() => [...document.querySelectorAll("#price-table td.num")]
      .filter((cell) => cell.getBoundingClientRect().right > document.documentElement.clientWidth)
      .map((cell) => `${cell.textContent.trim()} is off the screen`)""",
    # A key's Revoke button stays in view; the top-up price table fits without scrolling.
    "dashboard": """() => {
      const width = document.documentElement.clientWidth;
      const problems = [...document.querySelectorAll("#api-keys tbody tr > :last-child")]
        .filter((cell) => cell.getBoundingClientRect().right > width + 1)
        .map(() => "a Revoke button is off the screen");
      const quotes = document.querySelector("table.quotes").closest(".scroll");
      if (quotes.scrollWidth > quotes.clientWidth + 1) problems.push("the top-up prices scroll");
      return problems;
    }""",
}
# Pages whose layout must not move as they load (site.js folding the filters, the API
# reference drawn by script, the run's picture arriving): their cumulative layout shift.
STEADY = {"models", "api-docs", "run"}
LAYOUT_SHIFTS = """window.__shifts = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) if (!entry.hadRecentInput) window.__shifts += entry.value;
}).observe({ type: "layout-shift", buffered: true });"""
HEADER_MAX = 100  # px: two rows at most (a phone's was three, 150 px)

META = """() => Object.fromEntries(
  [...document.querySelectorAll("meta[property^='og:'], meta[name^='twitter:']")]
    .map((m) => [m.getAttribute("property") || m.getAttribute("name"), m.content])
)"""


def seed_pages():
    """The seed catalogue plus a deprecated and a retired model, both replaced by DETR."""
    from catalog.models import ModelCard
    from tests import factories

    call_command("seed_catalog", stdout=io.StringIO())
    detr = ModelCard.objects.get(slug="detr-resnet-50")
    legacy = factories.organisation(name="Legacy Lab", slug="legacy")
    deprecated = factories.card(
        organisation=legacy,
        slug="detr-r101-dc5",
        display_name="DETR R101-DC5",
        summary="The dilated-C5 DETR: better small-object AP, much slower.",
        status=ModelCard.Status.DEPRECATED,
        deprecation_date=date(2026, 9, 1),
        sunset_date=date(2027, 3, 31),
        replacement=detr,
        license="Apache-2.0",
    )
    factories.route(card=deprecated, price="0.0004")
    retired = factories.card(
        organisation=legacy,
        slug="detr-r50-panoptic",
        display_name="DETR R50 panoptic",
        summary="DETR with a panoptic segmentation head.",
        status=ModelCard.Status.RETIRED,
        sunset_date=date(2026, 6, 30),
        replacement=detr,
    )
    factories.route(card=retired, price="0.0003")
    dev = factories.user(username="dev")
    return {"run": run_for(dev, detr), "receipt": paid_top_up(dev)}


def paid_top_up(user):
    """A completed top-up of ``user``'s (its receipt's id): the dashboard lists it, the
    wallet holds its credit."""
    from billing.services.topups import top_up_complete, top_up_create

    top_up = top_up_create(user=user, credit=Decimal("25"), provider="dev")
    top_up_complete(top_up=top_up)
    return top_up.pk


def run_for(owner, card):
    """A public run of ``owner``'s with long labels, as a permalink and My runs show it."""
    from PIL import Image

    from tests import factories

    image = io.BytesIO()
    Image.new("RGB", (1600, 1000), (30, 140, 220)).save(image, "PNG")
    labels = ["person", "traffic light", "motorcycle", "fire hydrant", "potted plant"]
    result = [
        {"label": label, "score": 0.97 - n * 0.1,
         "box": {"xmin": 40 + n * 250, "ymin": 80 + n * 60, "xmax": 300 + n * 250, "ymax": 900}}
        for n, label in enumerate(labels)
    ]  # fmt: skip
    job = factories.finished_run(
        card=card, image_bytes=image.getvalue(), result=result, owner=owner, is_public=True,
        parameters={"threshold": 0.5},
    )  # fmt: skip
    return job.pk


@pytest.fixture
def site(live_server, transactional_db, settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    ids = seed_pages()
    return types.SimpleNamespace(url=live_server.url, ids=ids)


def sign_in_with_a_new_key(page):
    page.goto("/accounts/login/")
    page.fill("input[name=username]", "dev")
    page.fill("input[name=password]", "pw-dev-1")
    page.click("form button[type=submit]")
    page.wait_for_url("**/account/")
    page.fill("#create-key input[name=name]", "laptop")
    page.click("#create-key button[type=submit]")
    page.wait_for_selector("#new-key")


def visit_every_page(page, site):
    """Open each of ``PAGES`` in turn (the dashboard by signing in), checking its status
    and its Content-Security-Policy, loaded (the API reference's operations drawn); yields
    each page's name while it is open."""
    for name, url in PAGES.items():
        if name == "dashboard":
            sign_in_with_a_new_key(page)
        else:
            response = page.goto(url.format(**site.ids))
            assert response.status == (404 if url in NOT_FOUND else 200), name
            assert response.headers["content-security-policy"] == settings.VITRINE_CSP
        page.wait_for_load_state("load")
        if name == "api-docs":
            page.wait_for_selector("#swagger-ui .opblock", timeout=30_000)
        yield name


def settle(page) -> None:
    """Wait two frames: a resize's handlers (site.js's scroll cues) have run by then."""
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")


def layout_problems_at(page, width: int) -> list[str]:
    """``LAYOUT_PROBLEMS`` on the page as it is, narrowed to ``width`` px."""
    page.set_viewport_size({"width": width, "height": 900})
    settle(page)
    return page.evaluate(LAYOUT_PROBLEMS)


@PAGES_ON_EMBEDDED_ONLY
@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_fits_its_viewport(browser, site, width):  # noqa: F811
    context = browser.new_context(
        base_url=site.url, viewport={"width": width, "height": 900}, device_scale_factor=1
    )
    context.add_init_script(LAYOUT_SHIFTS)
    page = context.new_page()
    failed_requests: list[str] = []
    script_errors: list[str] = []
    page.on(
        "response",
        lambda r: (
            failed_requests.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith(NOT_FOUND)
            else None
        ),
    )
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    violations = watch_csp(page)
    problems = {}
    try:
        for name in visit_every_page(page, site):
            if name in STEADY and (shift := page.evaluate("window.__shifts")) > 0.05:
                problems[f"{name} shifts"] = [f"layout shift {shift:.3f}"]
            if found := page.evaluate(PAGE_CHECKS.get(name, "() => []")):
                problems[f"{name} checks"] = found
            header = page.locator(".site-header").bounding_box()["height"]
            if header > HEADER_MAX:
                problems[f"{name} header"] = [f"{header:.0f} px tall"]
            if width == WIDTHS[0]:
                if found := layout_problems_at(page, NARROWEST):
                    problems[f"{name} at {NARROWEST} px"] = found
                page.set_viewport_size({"width": width, "height": 900})
                settle(page)
            if found := page.evaluate(LAYOUT_PROBLEMS):
                problems[name] = found
            meta = page.evaluate(META)
            assert meta["og:title"] == page.title(), name
            assert meta["og:description"].strip(), name
            assert meta["og:image"].startswith(site.url), name
            assert meta["twitter:card"] == "summary_large_image", name
            assert meta["twitter:title"] == page.title(), name
            icons = page.eval_on_selector_all("link[rel=icon]", "ls => ls.map((l) => l.href)")
            assert len(icons) == 2, name
            assert page.locator(".site-header .brand").is_visible(), name
            if width in SCREENSHOT_WIDTHS:
                SHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
        for url in ["/favicon.ico", *icons]:
            assert page.request.get(url).status == 200, url
        if width in SCREENSHOT_WIDTHS:  # dark mode, for a person to look at
            page.emulate_media(color_scheme="dark")
            for name in ("models", "model-live"):
                page.goto(PAGES[name])
                page.screenshot(path=str(SHOTS / f"{name}-{width}-dark.png"), full_page=True)
    finally:
        context.close()
    assert problems == {}
    assert failed_requests == []
    assert script_errors == []
    assert violations == []


def test_on_a_phone_the_price_comes_before_the_api_and_the_faq(browser, site):  # noqa: F811
    context = browser.new_context(base_url=site.url, viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(DETR)

    def top(selector):
        return page.locator(selector).bounding_box()["y"]

    assert top("#pricing") < top("#about") < top("#api") < top("#benchmarks") < top("#faq")
    # Schemas are collapsed: the specs and benchmarks are not pushed below the fold by JSON.
    assert page.locator("details.schema[open]").count() == 0
    assert not page.locator("details.schema pre").first.is_visible()
    context.close()


def test_a_chart_wider_than_a_phone_says_it_scrolls_and_not_once_it_fits(browser, site):  # noqa: F811
    context = browser.new_context(base_url=site.url, viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(PAGES["compare"])
    charts = page.locator("figure.chart")
    assert charts.count() >= 2  # AP against speed, time against price
    cues = page.locator("p.scroll-cue + figure.chart")
    assert cues.count() == charts.count()
    assert page.locator("p.scroll-cue:has(+ figure.chart)").first.inner_text() == (
        "Scroll sideways to see the whole chart →"
    )
    page.set_viewport_size({"width": 1280, "height": 900})
    wait_until(page, "!document.querySelector('p.scroll-cue + figure.chart')")
    context.close()


def test_on_a_phone_the_model_page_reads_without_sideways_scrolling(browser, site):  # noqa: F811
    """The errors table scrolled four columns sideways (its meanings off-screen), the
    section tabs were cut at "Related" with no sign of more, the title broke "ResNet-" /
    "50", the price history cut its prices."""
    context = browser.new_context(base_url=site.url, viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto("/models/microsoft/conditional-detr-resnet-50")
    title = page.locator("h1 .nobreak", has_text="ResNet-50")
    assert title.count() == 1
    lines = page.evaluate(
        "(el) => new Set([...el.getClientRects()].map((r) => Math.round(r.top))).size",
        title.element_handle(),
    )
    assert lines == 1
    page.goto(DETR)
    errors = page.locator("table.errors")
    box = errors.locator("xpath=..")  # its .scroll box
    assert box.evaluate("(el) => el.scrollWidth <= el.clientWidth + 1")
    assert errors.locator("tr[data-status='400'] td").nth(3).is_visible()
    tabs = page.locator(".section-nav ul")
    assert tabs.get_attribute("data-more") is not None  # faded: more tabs to the right
    tabs.evaluate("(el) => { el.scrollLeft = el.scrollWidth; }")
    wait_until(page, "!document.querySelector('.section-nav ul').hasAttribute('data-more')")
    page.locator("#price-history summary").click()
    for price in page.locator("ol.price-history .price").all():
        assert price.evaluate("(el) => el.getBoundingClientRect().right <= window.innerWidth")
    page.set_viewport_size({"width": 1280, "height": 900})
    wait_until(page, "!document.querySelector('.section-nav ul').hasAttribute('data-more')")
    context.close()


def test_snippets_are_tabs_with_copy_buttons(browser, site):  # noqa: F811
    context = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.goto(DETR)
    tabs = page.locator("#use [role=tab]")
    labels = tabs.all_inner_texts()
    assert labels[:5] == ["curl", "Python", "huggingface_hub", "JavaScript (browser)", "Node.js"]
    assert "Run locally (transformers)" in labels and "Cloudflare Workers AI" in labels
    assert page.locator("[data-snippet=curl]").is_visible()
    assert not page.locator("[data-snippet=node]").is_visible()

    page.get_by_role("tab", name="Node.js").click()
    node = page.locator("[data-snippet=node]")
    assert node.is_visible() and not page.locator("[data-snippet=curl]").is_visible()
    node.get_by_role("button", name="Copy").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == node.locator("pre").inner_text().rstrip("\n")
    assert 'import { readFile } from "node:fs/promises";' in copied
    assert f"{site.url}/v1/inference/facebook/detr-resnet-50" in copied

    # The choice is remembered: the next model page opens on Node.js too.
    page.goto("/models/hustvl/yolos-tiny")
    assert page.locator("[data-snippet=node]").is_visible()
    context.close()


def test_without_javascript_every_snippet_shows_under_its_title(browser, site):  # noqa: F811
    context = browser.new_context(base_url=site.url, java_script_enabled=False)
    page = context.new_page()
    page.goto(DETR)
    assert page.locator("#use [role=tab]").count() == 0
    for slug in ("curl", "python", "huggingface_hub", "javascript", "node", "transformers"):
        assert page.locator(f"[data-snippet={slug}] pre").is_visible(), slug
    assert page.locator("[data-snippet=node] .tab-title").inner_text() == "Node.js"
    context.close()


def test_the_new_api_key_has_a_copy_button(browser, site):  # noqa: F811
    context = browser.new_context(base_url=site.url, viewport={"width": 390, "height": 844})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    sign_in_with_a_new_key(page)
    # The one-time key's heading takes focus on load: it was neither focused nor announced.
    assert page.evaluate("document.activeElement.id") == "new-key-title"
    secret = page.locator("#new-key-secret").inner_text().strip()
    assert secret.startswith("vt_")
    page.locator("#new-key").get_by_role("button", name="Copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    assert page.locator("#new-key .copy").inner_text() == "Copied"
    # Said to a screen reader too: the button's static aria-label ("Copy API key") hid its
    # "Copied", and a polite live region announces it.
    assert page.get_attribute("#new-key .copy", "aria-label") == "Copied API key"
    wait_until(page, "document.querySelector('#copy-status[role=status]')?.textContent > ''")
    assert page.inner_text("#copy-status") == "Copied API key to the clipboard."
    context.close()


def test_the_price_route_admin_inline_fits_a_laptop_screen(browser, site):  # noqa: F811
    from catalog.models import ModelCard
    from tests import factories

    factories.user(username="operator", is_staff=True, is_superuser=True)
    card = ModelCard.objects.get(slug="detr-resnet-50")
    context = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    violations = watch_csp(page)
    page.goto(f"/admin/catalog/modelcard/{card.pk}/change/")
    page.fill("input[name=username]", "operator")
    page.fill("input[name=password]", "pw-operator-1")
    page.click("input[type=submit]")
    page.wait_for_selector("#routes-group")
    assert page.locator("#routes-group input[name='routes-0-price']").is_visible()
    group = page.locator("#routes-group").bounding_box()
    assert group["x"] + group["width"] <= 1280
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#routes-group").screenshot(path=str(SHOTS / "admin-price-routes-1280.png"))
    page.locator("#routes-group .add-row a").click()  # the inline's own script runs
    assert page.locator("#routes-group input[name='routes-1-price']").is_visible()
    context.close()
    assert violations == [], "the admin broke the Content-Security-Policy"


def test_the_browser_javascript_snippet_runs_in_a_page(browser, site, tmp_path):  # noqa: F811
    """The page's own "JavaScript (browser)" snippet, run in a page of another origin with a
    file input: as pasted, it runs and the API refuses its placeholder key; with a key in
    its place, the File goes to the API (CORS preflight and all), which accepts key, model
    and image and answers 402 for the empty wallet."""
    from PIL import Image

    from billing.services.keys import MALFORMED_KEY, api_key_create
    from billing.services.ledger import INSUFFICIENT_CREDITS
    from catalog.snippets import API_KEY_PLACEHOLDER
    from tests import factories

    # Not "dev", whose wallet holds a paid top-up (the receipt page): an empty wallet.
    _, key = api_key_create(user=factories.user(username="no-credit"), name="browser")
    Image.new("RGB", (64, 48), (30, 140, 220)).save(tmp_path / "cats.jpg", "JPEG")
    context = browser.new_context(base_url=site.url)
    page = context.new_page()
    page.goto(DETR)
    code = page.locator("[data-snippet=javascript] pre").text_content()
    assert f"{site.url}/v1/inference/" in code
    # The snippet declares its own key: pasted as is it names the placeholder, which the
    # visitor replaces with a key (no ReferenceError for an undeclared apiKey).
    placeholder = f'const apiKey = "{API_KEY_PLACEHOLDER}";'
    assert code.count(placeholder) == 1
    # Run it from another origin: the API answers CORS.
    # The developer's own page, served from another origin by a server of its own (a
    # Vitrine page would bring Vitrine's CSP, which lets no page script call another origin;
    # a page Playwright fulfils has no address, and Chromium keeps it off loopback).
    their_site = their_page_server()
    page.goto(f"http://127.0.0.1:{their_site.server_port}/")
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<input type=file id=pick>')")
    page.set_input_files("#pick", str(tmp_path / "cats.jpg"))
    run = (
        "async (code) => {"
        "  const run = new Function(`return (async () => {\\n${code}\\n})()`);"
        "  try { await run(); return null; } catch (e) { return e.message; }"
        "}"
    )
    # As pasted: it runs, and the API refuses the placeholder (not a ReferenceError).
    assert page.evaluate(run, code) == MALFORMED_KEY
    # With the visitor's key in its place: the API took key, model and image (402).
    error = page.evaluate(run, code.replace(placeholder, f'const apiKey = "{key}";'))
    assert error == INSUFFICIENT_CREDITS.format(balance="$0", cost="$0.0002")
    context.close()
    their_site.shutdown()


def their_page_server():
    """An empty HTML page on 127.0.0.1, in a thread: another site's page."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<!doctype html><title>their page</title><body>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_the_layout_check_catches_what_it_is_for(browser):  # noqa: F811
    """The in-page check fails on the defects it guards against, as they looked before."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    wide_row = "".join(f"<td>1,234,{n}.5</td>" for n in range(100, 112))
    page.set_content(
        "<body style='margin:0'><table id=wide><tr>" + wide_row + "</tr></table>"
        "<div style='width:40px'><table class=bench><tr><td>41.0 46.5</td></tr></table></div>"
    )
    problems = page.evaluate(LAYOUT_PROBLEMS)
    assert any(p.startswith("page is ") for p in problems), problems
    assert any(p.startswith("table wide ") for p in problems), problems
    assert '"41.0 46.5" wraps' in problems
    page.set_content(
        "<body style='margin:0'><table style='width:120px'><tr><td>"
        "<code style='overflow-wrap:anywhere'>invalid_request_error</code></td></tr></table>"
    )
    assert "<code>invalid_request_error</code> breaks" in page.evaluate(LAYOUT_PROBLEMS)
    page.set_content(
        "<body style='margin:0'><div style='overflow-x:auto'><table id=wide><tr>"
        + wide_row
        + "</tr></table></div></body>"
    )
    assert page.evaluate(LAYOUT_PROBLEMS) == []
    context.close()


def test_the_keyboard_starts_at_a_visible_skip_link(browser, site):  # noqa: F811
    context = browser.new_context(base_url=site.url, viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto("/compare/run?models=facebook/detr-resnet-50,hustvl/yolos-tiny")
    assert not page.locator(".skip-link").is_visible() or (
        page.locator(".skip-link").bounding_box()["y"] < 0
    )
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == "Skip to content"
    assert page.locator(".skip-link").bounding_box()["y"] >= 0  # on screen once focused
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # The section a page belongs to is marked in the site nav (compare on your image: Compare).
    assert page.locator(".site-nav a[aria-current=page]").inner_text() == "Compare"
    context.close()


# Each item's text: where its first line of text sits (the middle of its box, in CSS px).
TEXT_MIDDLES = """(selector) => [...document.querySelectorAll(selector)].map((el) => {
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT, {
    acceptNode: (n) => (n.textContent.trim() ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_SKIP),
  });
  const text = walker.nextNode();
  const range = document.createRange();
  range.selectNodeContents(text);
  const box = range.getClientRects()[0];
  return Math.round(box.top + box.height / 2);
})"""


@pytest.mark.parametrize("width", [390, 1280])
def test_a_row_of_buttons_and_a_table_row_with_a_button_sit_on_one_line(browser, site, width):  # noqa: F811
    # The error pages' "where to go next" buttons: every one but the first was 2 px lower
    # (a list item's stacked margin inside the flex row); the dashboard's API key row: the
    # Revoke button's label sat 7 px below the row's text (cells aligned to their top).
    context = browser.new_context(base_url=site.url, viewport={"width": width, "height": 900})
    page = context.new_page()
    page.goto(PAGES["page-not-found"])
    tops = sorted(link.bounding_box()["y"] for link in page.locator(".error-links .btn").all())
    assert len(tops) == 4
    # Buttons less than half a button apart are on one line, and must be level.
    assert all(b - a < 0.5 or b - a > 16 for a, b in itertools.pairwise(tops)), tops
    sign_in_with_a_new_key(page)
    middles = page.evaluate(TEXT_MIDDLES, "#api-keys tbody tr:first-child td")
    # (the key itself is in the smaller monospace face: its middle is a px or two off)
    assert len(middles) == 7 and max(middles) - min(middles) <= 2, middles
    context.close()


def test_an_organisations_link_sits_a_paragraph_below_its_intro(browser, site):  # noqa: F811
    # The intro became Markdown (the seed's `facebook` showed its backticks); its last
    # paragraph has no margin, and the organisation's link stuck to it.
    context = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto("/orgs/facebook")
    assert page.locator(".page-head .lead code").inner_text() == "facebook"
    intro = page.locator(".page-head .lead").bounding_box()
    link = page.locator(".page-head a[href='https://ai.meta.com/']").bounding_box()
    gap = link["y"] - (intro["y"] + intro["height"])
    assert gap >= 12, gap
    context.close()
