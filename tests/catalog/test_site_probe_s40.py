"""Session 40's probe of the site against the seed pages, as a developer browsing it.

Seed 003 (Hugging Face's object-detection task page) is mostly its API specification: the
request payload (``inputs``, ``parameters.threshold``), the headers (``authorization``,
``x-use-cache``, ``x-wait-for-model``) and the response (``label``, ``score``, ``box``).
Vitrine's page for the task, ``/tasks/object-detection``, showed the task's description and
its models but none of that specification: it was only on each model's page.
"""

from __future__ import annotations

import html
import io
import itertools
import re

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db

TASK = "/tasks/object-detection"


@pytest.fixture
def seeded():
    call_command("seed_catalog", stdout=io.StringIO())


def text_of(body: str) -> str:
    body = re.sub(r"<script.*?</script>", " ", body, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def test_the_task_page_carries_seed_003s_api_specification(client, seeded):
    body = client.get(TASK).content.decode()
    text = text_of(body)
    for fact in (
        "API specification",
        "POST /v1/inference/<organisation>/<name>",
        # Request payload
        '"inputs"',
        "The input image data as a base64-encoded string. If no `parameters` are provided, "
        "you can also provide the image data as a raw bytes payload.",
        '"threshold"',
        "The probability necessary to make a prediction.",
        # Headers
        "x-use-cache",
        "x-wait-for-model",
        "If the model is not ready, wait for it instead of receiving 503.",
        # Response
        "Output is an array of objects.",
        "The predicted label for the bounding box.",
        "The associated score / probability.",
        "The x-coordinate of the top-left corner of the bounding box.",
        "The y-coordinate of the bottom-right corner of the bounding box.",
    ):
        assert fact in text, fact
    # Both of the task's own flavours, open to read; a provider's flavour stays on the pages
    # of the models it serves (Cloudflare's describes DETR's route only).
    api = body[body.index('id="api"') :]
    assert re.findall(r"<summary>(.*?)<span", api) == ["Vitrine API", "Hugging Face Inference"]
    assert api.count('<details class="schema" open>') == 2
    assert "Cloudflare Workers AI runs DETR" not in text


def test_the_task_pages_headings_go_down_one_level_at_a_time(client, seeded):
    main = client.get(TASK).content.decode().split("<main", 1)[1]
    levels = [int(n) for n in re.findall(r"<h(\d)", main)]
    assert 4 in levels  # the schemas' Request and Response
    assert all(b - a <= 1 for a, b in itertools.pairwise(levels)), levels


def test_collection_and_organisation_pages_have_no_api_section(client, seeded):
    for url in ("/collections/object-detection", "/orgs/facebook"):
        assert 'id="api"' not in client.get(url).content.decode(), url


def test_the_model_page_still_shows_every_flavour_its_routes_take(client, seeded):
    body = client.get("/models/facebook/detr-resnet-50").content.decode()
    schemas = body[body.index('id="api-schema"') :]
    assert re.findall(r"<summary>(.*?)<span", schemas)[:3] == [
        "Vitrine API",
        "Hugging Face Inference",
        "Cloudflare Workers AI",
    ]
    assert '<details class="schema" open>' not in body


@pytest.mark.parametrize(
    "url",
    [
        "/models/facebook/detr-resnet-50",
        "/models/microsoft/conditional-detr-resnet-50",
        "/models/hustvl/yolos-tiny",
    ],
)
def test_every_snippet_tab_says_what_it_is_above_its_code(client, seeded, url):
    # The "Python (cloudflare SDK)" tab was the only one with code and no line saying what it
    # runs (which client to install, which model id it takes).
    body = client.get(url).content.decode()
    panels = re.findall(r'data-snippet="([^"]+)">\s*<h3 class="tab-title">.*?</h3>\s*(<p)?', body)
    assert "cloudflare_sdk" in [slug for slug, _ in panels]
    assert [slug for slug, note in panels if not note] == []
    assert "pip install cloudflare" in text_of(body)


def test_the_schema_names_every_error_type_the_model_pages_table_lists(client, seeded):
    # The table's 402 said invalid_request_error while the API answers insufficient_credits
    # (seed 000's table too); the schema's list of types named neither that nor 503's.
    page = client.get("/models/facebook/detr-resnet-50").content.decode()
    table = page[page.index('<section id="errors">') :]
    rows = re.findall(r'<tr data-status="(\d+)"><td>\d+</td><td><code>([a-z_]+)</code>', table)
    types = dict(rows)
    assert types["402"] == "insufficient_credits"
    assert types["503"] == "service_unavailable"
    schema = client.get("/v1/openapi.json").json()
    described = schema["components"]["schemas"]["ErrorBody"]["properties"]["type"]["description"]
    assert set(types.values()) <= set(re.findall(r"[a-z_]+_?[a-z]+", described))


def test_compare_writes_every_models_parameters_in_one_unit(client, seeded):
    # RT-DETR's spec row said "42 million" (seed 004's wording) beside "41M", "44M", "6.5M".
    ids = (
        "facebook/detr-resnet-50,PekingU/rtdetr_r50vd,microsoft/conditional-detr-resnet-50,"
        "hustvl/yolos-tiny"
    )
    body = client.get(f"/compare?models={ids}").content.decode()
    row = re.search(r"<th[^>]*>\s*Parameters\s*</th>(.*?)</tr>", body, re.S)
    cells = [text_of(c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)]
    assert cells == ["41M", "42M", "44M", "6.5M"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("/orgs/facebook", "<code>facebook</code>"),
        ("/orgs/PekingU", "<code>PekingU</code>"),
        ("/collections/object-detection", "<p>Models that find objects in an image"),
    ],
)
def test_list_pages_render_their_intro_as_markdown(client, seeded, url, shown):
    # An organisation's page showed its description as typed: "under the `facebook`
    # namespace", backticks and all.
    body = client.get(url).content.decode()
    intro = body[body.index('<header class="page-head">') :]
    intro = intro[: intro.index("</header>")]
    assert shown in intro
    assert "`" not in text_of(intro)
    description = re.search(r'<meta name="description" content="([^"]*)"', body).group(1)
    assert "<" not in description and "`" not in description and description.strip()
