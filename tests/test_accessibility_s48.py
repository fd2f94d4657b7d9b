"""What a screen-reader or keyboard user still met after session 47's fixes (the same probe:
Chromium's accessibility tree, keyboard, zoom), each as it must be now: the HTML through
Django's test client where that says it, the rest in a real browser (Debian's Chromium, see
tests/test_browser.py).
"""

from __future__ import annotations

import io
import itertools
import re
from datetime import UTC, datetime
from decimal import Decimal
from html import unescape

import pytest
from django.core.management import call_command
from django.template.defaultfilters import date as date_filter

from tests import factories
from tests.test_accessibility_s47 import in_a_browser, png, queued_run
from tests.test_browser import (  # noqa: F401  (the module's browser fixtures)
    BROWSER_MARKS,
    CHROMIUM,
    PAGES_ON_EMBEDDED_ONLY,
    browser,
    page,
    wait_until,
)

JSON = {"Accept": "application/json"}
TWO_MODELS = "/compare/run?models=facebook/detr-resnet-50,hustvl/yolos-tiny"
TRY = "/models/facebook/detr-resnet-50/try"


def spoken(html: str) -> str:
    """An element's text as a screen reader reads it: its tags dropped (visually-hidden
    text included), its spaces collapsed."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", "", html))).strip()


def headings(html: str) -> list[tuple[int, str]]:
    main = html.split("<main", 1)[1]
    found = re.findall(r"<h([1-6])[^>]*>(.*?)</h\1>", main, re.S)
    return [(int(level), spoken(text)) for level, text in found]


def upload(size: int, name: str = "big.png"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, b"\x89PNG" + b"\0" * (size - 4), content_type="image/png")


# --- the HTML --------------------------------------------------------------------------


@pytest.mark.django_db
def test_each_revoke_receipt_and_delete_control_on_the_dashboard_names_its_row(client):
    from billing.models import TopUp
    from billing.services.keys import api_key_create, provider_key_save

    user = factories.user(username="owner")
    first, _ = api_key_create(user=user, name="laptop")
    second, _ = api_key_create(user=user, name="ci")
    paid = {}
    for credit, day in ((Decimal("10"), 3), (Decimal("25"), 4)):
        top_up = TopUp.objects.create(
            user=user, credit=credit, fee=credit / 20, total=credit * Decimal("1.05"),
            provider="stripe", status=TopUp.Status.COMPLETED,
        )  # fmt: skip
        TopUp.objects.filter(pk=top_up.pk).update(
            created_at=datetime(2026, 12, day, 14, 5, tzinfo=UTC)
        )
        top_up.refresh_from_db()
        paid[int(credit)] = date_filter(top_up.created_at, "j M Y H:i")
    provider_key_save(user=user, provider="cloudflare", secret="cf-token-abcd-9876")
    client.force_login(user)
    body = client.get("/account/").content.decode()

    # Each Revoke said "Revoke" alone, a list of the same name; the visible word stays first
    # (WCAG 2.5.3: a voice user says what they see).
    buttons = re.findall(r'<button type="submit" class="danger">(.*?)</button>', body)
    names = [spoken(button) for button in buttons]
    assert f"Revoke key “laptop” (vt_{first.prefix}…)" in names
    assert f"Revoke key “ci” (vt_{second.prefix}…)" in names
    assert "Delete your cloudflare key …9876" in names
    seen = [re.match(r"\w+", button).group() for button in buttons if "visually-hidden" in button]
    assert sorted(seen) == ["Delete", "Revoke", "Revoke"]  # the visible word, first
    receipts = {
        pk: spoken(text)
        for pk, text in re.findall(
            r'<a href="/account/top-ups/([0-9a-f-]+)/receipt">(.*?)</a>', body
        )
    }
    assert sorted(receipts.values()) == [
        f"Receipt for the $10 top-up of {paid[10]}",
        f"Receipt for the $25 top-up of {paid[25]}",
    ], receipts
    assert len(set(names)) == len(names)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url", ["/models", "/tasks/object-detection", "/orgs/facebook", "/models?q=zzzz"]
)
def test_each_model_card_is_a_heading_under_the_lists_heading(client, url):
    call_command("seed_catalog", stdout=io.StringIO())
    body = client.get(url).content.decode()
    names = [
        unescape(name)
        for name in re.findall(
            r'<h3 class="card-name"><a class="card-title" href="/models/[^"]+">([^<]+)</a></h3>',
            body,
        )
    ]
    # One heading a card, its name the link to the model: H moves card to card.
    assert len(names) == body.count('<li class="card')
    outline = headings(body)
    levels = [level for level, _ in outline]
    assert levels[0] == 1 and levels.count(1) == 1, outline
    assert all(b - a <= 1 for a, b in itertools.pairwise(levels)), outline  # no level skipped
    # The cards' h3s in a row, right under an h2 that counts them ("4 models").
    count = (2, f"{len(names)} model{'' if len(names) == 1 else 's'}")
    at = outline.index(count) + 1
    assert outline[at : at + len(names)] == [(3, name) for name in names], outline


@pytest.mark.django_db
def test_a_too_large_upload_is_told_in_megabytes_on_the_page_and_in_json(
    client, settings, tmp_path
):
    from playground.views import file_sizes, too_large

    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_MAX_UPLOAD_BYTES = 1000
    call_command("seed_catalog", stdout=io.StringIO())
    said = "That file is 5 kB; the limit is 1 kB."  # was "5,000 bytes; ... 1,000 bytes."
    assert too_large(5000, 1000) == said
    refused = client.post(TRY, {"image": upload(5000)}, headers=JSON)
    assert refused.status_code == 413
    assert refused.json()["error"]["message"] == said
    assert refused.json()["error"]["code"] == "image_too_large"
    shown = client.post(TRY, {"image": upload(5000)}, follow=True).content.decode()
    assert said in shown and "5,000" not in shown
    models = ["facebook/detr-resnet-50", "hustvl/yolos-tiny"]
    compared = client.post("/compare/run", {"models": models, "image": upload(5000)}, headers=JSON)
    assert (compared.status_code, compared.json()["error"]["message"]) == (413, said)
    # Sizes as people read them (decimal units, as a file manager shows a file's), with as
    # many decimals as tell the size from the limit.
    assert file_sizes(12_582_912, 10_000_000) == ("12.6 MB", "10 MB")
    assert file_sizes(20_980_000, 20 * 1024 * 1024) == ("20.98 MB", "20.97 MB")
    assert file_sizes(999_960, 1000) == ("1 MB", "1 kB")  # not "1,000 kB"
    assert file_sizes(1001, 999) == ("1 kB", "999 bytes")
    assert file_sizes(12_250_000, 1) == ("12.3 MB", "1 byte")  # half up, exactly


@pytest.mark.django_db
def test_a_model_chosen_twice_to_compare_is_named(client, settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card(
        display_name="DETR twice", organisation=factories.organisation(slug="acme"), slug="old-detr"
    )
    factories.route(card=card)
    said = "DETR twice is chosen twice; pick 2 or 3 different models."
    twice = [card.model_id, card.model_id]
    refused = client.post("/compare/run", {"models": twice, "image": upload(100)}, headers=JSON)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["message"], error["code"], error["param"]) == (said, "invalid_models", "models")
    # The form, without JavaScript: the page says it too.
    shown = client.post("/compare/run", {"models": twice, "image": upload(100)})
    assert shown.status_code == 400 and said in shown.content.decode()
    # A link naming it twice (one model: nothing to run) says which model.
    link = client.get(f"/compare/run?models={card.model_id},{card.model_id}").content.decode()
    assert said in link
    # Its id beside its former id (renamed) is the same model twice, not two models.
    card.slug = "new-detr"
    card.save()
    both = ["acme/old-detr", "acme/new-detr"]
    refused = client.post("/compare/run", {"models": both, "image": upload(100)}, headers=JSON)
    assert (refused.status_code, refused.json()["error"]["message"]) == (400, said)
    link = client.get(f"/compare/run?models={','.join(both)}")
    assert len(link.context["choices"]) == 1 and said in link.content.decode()


# --- in a browser ------------------------------------------------------------------------

# Every text the element's contents were set to, in order (a set to the same words as
# before is a new announcement too: a live region speaks each change of its contents).
RECORD = """(id) => {
  window.said = window.said || {};
  const element = document.getElementById(id);
  window.said[id] = [];
  // Each record: the observer is called once for all the sets of one task.
  const said = window.said[id];
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === "characterData") said.push(r.target.textContent);
      else if (r.addedNodes.length) said.push([...r.addedNodes].map((n) => n.textContent).join(""));
    }
  }).observe(element, { childList: true, characterData: true, subtree: true });
}"""


def polls_of(job) -> str:
    """How many answers to a poll of ``job`` the page has had (resource timing entries)."""
    return (
        "performance.getEntriesByType('resource')"
        f".filter((e) => e.name.includes('/playground/jobs/{job.pk}')).length"
    )


def run_into(page, job):  # noqa: F811
    """Run on the try page, the upload answered with ``job`` (no worker, no broker)."""
    url = f"/playground/jobs/{job.pk}"
    created = {"id": str(job.pk), "url": url, "status": "queued", "queue_position": 1}
    page.route(
        "**/try",
        lambda r: (
            r.fulfill(status=202, json=created) if r.request.method == "POST" else r.continue_()
        ),
    )
    page.goto(TRY)
    page.wait_for_load_state("load")
    page.set_input_files(
        "#try-form input[type=file]", {"name": "a.png", "mimeType": "image/png", "buffer": png()}
    )
    wait_until(page, "!document.getElementById('run').disabled")


@in_a_browser
def test_the_try_pages_status_is_said_only_when_it_changes(page, settings, tmp_path):  # noqa: F811
    from django.utils import timezone

    from playground.models import Job

    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    job = queued_run()
    run_into(page, job)
    page.evaluate(RECORD, "status")
    page.click("#run")
    wait_until(page, "document.getElementById('status').textContent.startsWith('Queued')")
    # Several polls with the job still queued, each answer drawn (the next is asked after).
    wait_until(page, f"{polls_of(job)} >= 4")
    Job.objects.filter(pk=job.pk).update(status="running", started_at=timezone.now())
    wait_until(page, "document.getElementById('status').textContent === 'Running the model…'")
    polled = page.evaluate(polls_of(job))
    wait_until(page, f"{polls_of(job)} >= {polled + 4}")
    said = page.evaluate("window.said.status")
    # Each poll set the same sentence again, and a screen reader said "Running…" each time.
    assert said == [text for text, _ in itertools.groupby(said)], said
    assert said[0] == "Uploading…" and said[-1] == "Running the model…", said
    assert len(said) == 3, said


@in_a_browser
def test_refiltering_the_boxes_says_how_many_are_shown_once_it_settles(page, settings, tmp_path):  # noqa: F811
    from catalog.models import ModelCard

    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    box = {"xmin": 2, "ymin": 2, "xmax": 30, "ymax": 30}
    found = [("dog", 0.9), ("dog", 0.8), ("cat", 0.7), ("cat", 0.4), ("person", 0.2)]
    job = factories.finished_run(
        card=ModelCard.objects.get(slug="detr-resnet-50"), image_bytes=png(), is_public=True,
        result=[{"label": label, "score": score, "box": box} for label, score in found],
    )  # fmt: skip
    run_into(page, job)
    page.click("#run")
    wait_until(page, "document.body.dataset.jobStatus === 'succeeded'")
    region = page.locator("#boxes-shown")
    assert region.get_attribute("aria-live") == "polite" and region.inner_text() == ""
    # The slider's value is said by the slider; its <output> (a live region by default)
    # said it again at every step.
    assert page.get_attribute("#threshold-value", "aria-live") == "off"
    page.evaluate(RECORD, "boxes-shown")
    # A drag: many steps in a row, one sentence once it stops.
    page.evaluate("""() => {
      const slider = document.getElementById("threshold");
      for (const value of [0.1, 0.3, 0.5, 0.75, 0.6, 0.65]) {
        slider.value = String(value);
        slider.dispatchEvent(new Event("input", { bubbles: true }));
      }
    }""")
    wait_until(page, "document.getElementById('boxes-shown').textContent !== ''")
    assert page.evaluate("window.said['boxes-shown']") == ["3 of 5 boxes shown"]
    assert page.evaluate("document.getElementById('boxes').dataset.boxes") == "3"
    # A class chip, from the keyboard: the same.
    page.focus("#classes input[value=cat]")
    page.keyboard.press("Space")
    wait_until(page, "document.getElementById('boxes-shown').textContent === '2 of 5 boxes shown'")
    assert page.evaluate("window.said['boxes-shown']") == [
        "3 of 5 boxes shown",
        "2 of 5 boxes shown",
    ]


SIZES = [
    (5000, 1000), (12_582_912, 10_000_000), (20_980_000, 20_971_520), (999_960, 1000),
    (1001, 999), (12_250_000, 1), (1_234_567, 1000), (7_340_032_000, 20_971_520),
]  # fmt: skip


@in_a_browser
def test_a_too_large_file_is_told_in_the_servers_words_before_it_is_sent(page, settings):  # noqa: F811
    from playground.views import file_sizes, too_large

    settings.VITRINE_MAX_UPLOAD_BYTES = 1000
    big = {"name": "big.png", "mimeType": "image/png", "buffer": b"\x89PNG" + b"\0" * 4996}
    page.goto(TRY)
    page.wait_for_load_state("load")
    page.set_input_files("#try-form input[type=file]", big)
    wait_until(page, "document.getElementById('demo-cost').innerText.startsWith('That file')")
    assert page.locator("#demo-cost").inner_text() == "That file is 5 kB; the limit is 1 kB."
    assert too_large(5000, 1000) == "That file is 5 kB; the limit is 1 kB."
    # The pages' scripts (their shared sizes.js) write any size as the server does.
    imported = """async (sizes) => {
      const src = document.querySelector('script[src*="playground/playground"]').src;
      const { fileSizes } = await import(new URL("./sizes.js", src));
      return sizes.map(([size, limit]) => fileSizes(size, limit));
    }"""
    expected = [list(file_sizes(size, limit)) for size, limit in SIZES]
    assert page.evaluate(imported, SIZES) == expected

    page.goto(TWO_MODELS)
    page.wait_for_load_state("load")
    page.set_input_files("#compare-form input[type=file]", big)
    page.click("#compare-form button[type=submit]")
    page.wait_for_selector("#compare-error:not([hidden])")
    assert page.locator("#compare-error").inner_text() == too_large(5000, 1000)


# The look before cards had headings: a card's name a link in the card's head, the count of
# models a muted small paragraph.
BEFORE = """() => {
  const head = document.querySelector(".card-head");
  const old = document.createElement("div");
  old.className = "card-head";
  old.innerHTML = `<a class="card-title" href="#">${head.querySelector("a").textContent}</a>`;
  old.append(head.querySelector(".badge").cloneNode(true));
  head.after(old);
  const count = document.getElementById("result-count");
  const p = document.createElement("p");
  p.className = "muted small";
  p.textContent = count.textContent;
  count.after(p);
  const look = (el) => {
    const s = getComputedStyle(el), r = el.getBoundingClientRect();
    return [r.height, s.fontSize, s.fontWeight, s.lineHeight, s.color, s.marginTop, s.marginBottom];
  };
  return {
    title: [head, old].map((h) => look(h.querySelector(".card-title")).slice(1)),
    head: [head.getBoundingClientRect().height, old.getBoundingClientRect().height],
    count: [look(count), look(p)],
  };
}"""


@in_a_browser
def test_the_cards_headings_look_as_their_links_did(page):  # noqa: F811
    page.goto("/models")
    page.wait_for_load_state("load")
    look = page.evaluate(BEFORE)
    assert look["title"][0] == look["title"][1]
    assert look["head"][0] == look["head"][1]
    assert look["count"][0] == look["count"][1]
