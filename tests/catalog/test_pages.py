"""The pages visitors see: every seed number on its page, filters, compare, 404s, caching."""

from __future__ import annotations

import html
import io
import json
import re

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.cache import CSRF_INPUT
from catalog.models import DemandVote, ModelCard, PriceRoute
from catalog.paths import card_path
from tests import factories

pytestmark = pytest.mark.django_db

DETR = "/models/facebook/detr-resnet-50"
CONDITIONAL = "/models/microsoft/conditional-detr-resnet-50"
RTDETR = "/models/PekingU/rtdetr_r50vd"
YOLOS = "/models/hustvl/yolos-tiny"


@pytest.fixture
def seeded():
    call_command("seed_catalog", stdout=io.StringIO())


def page_text(response) -> str:
    """What a reader sees: tags dropped, entities decoded, whitespace collapsed."""
    body = response.content.decode()
    body = re.sub(r"<script.*?</script>", " ", body, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


SEED_PAGES = {
    "seed-000": (
        DETR,
        [
            "DETR ResNet-50",
            "Meta",
            "facebook/detr-resnet-50",
            "family DETR",
            "modalities: image",
            "Meta's transformer-based object detector. Returns bounding boxes + labels.",
            "$0.0002 per image",
            "$0.20 per 1k images",
            "$0.00021 per image with the 5% top-up fee included",
            "A $10 top-up (you pay $10.50) runs 50,000 images",
            "5% applied at credit top-up, not per call",
            "End-to-end object detection",
            "Open-weight",
            "Object detection",
            "Visual QA preprocessing",
            "Inventory counting",
            "More from Meta",
            "What is DETR ResNet-50?",
            "Streaming: no",
            "Does Vitrine cache results?",
            "X-Vitrine-Cache: hit",
            "x-use-cache: false",
            "Can I bring my own",
            "fee is waived",
            "402",
        ],
    ),
    "seed-001": (
        DETR,
        [
            "DEtection TRansformer (DETR)",
            "COCO 2017",
            "118k annotated images",
            "Cloudflare Workers AI",
            "Beta",
            "$0.0000075 per request",
            "$0.0075 per 1k requests",
            "@cf/facebook/detr-resnet-50",
            "An array of integers that represent the image data "
            "constrained to 8-bit unsigned integer values",
            "A value between 0 and 255 (unsigned 8bit)",
            "Confidence score indicating the likelihood that the detection is correct",
            "The x-coordinate of the top-left corner of the bounding box",
        ],
    ),
    "seed-002": (
        CONDITIONAL,
        [
            "Conditional DETR ResNet-50",
            "microsoft/conditional-detr-resnet-50",
            "published Sep 2022",
            "updated May 2024",
            "Coming soon",
            "Conditional DETR with ResNet-50 backbone (transformer encoder-decoder)",
            "44M",
            "Apache-2.0",
            "COCO 2017 (118k annotated images)",
            "conditional spatial query",
            "Converges 6.7\u00d7 faster than DETR with R50 and R101 backbones (10\u00d7 with the "
            "DC5 backbones), per the paper",
            "41.0 AP",
            "90G FLOPs",
            "34.8 AP",
            "42.0 AP",
            "AP_S",
            "AP_M",
            "AP_L",
            "Conditional DETR-R50 50 44 90 41.0 20.6 44.3 59.3",
            "DETR-R50 50 41 86 34.8 13.9 37.3 54.4",
            "DETR-R50 500 41 86 42.0 20.5 45.8 61.1",
            "Training or fine-tuning a DETR-style detector on a tight compute budget",
            "Detection of common objects (COCO categories) in photographs",
            "Transfer learning for custom object detection tasks",
            "44 million parameters.",
            "Notify me",
            "estimated, set at launch",
        ],
    ),
    "seed-003": (
        DETR,
        [
            "The input image data as a base64-encoded string. If no `parameters` are provided, "
            "you can also provide the image data as a raw bytes payload.",
            "The probability necessary to make a prediction.",
            "x-use-cache",
            "x-wait-for-model",
            "The predicted label for the bounding box.",
            "The associated score / probability.",
        ],
    ),
    "seed-004": (
        RTDETR,
        [
            "RT-DETR R50",
            "PekingU/rtdetr_r50vd",
            "published May 2024",
            "updated Feb 2025",
            "~$0.047 per 1k images",
            "estimated, set at launch",
            "63.7K downloads / month",
            "Apache-2.0",
            "RT-DETR with ResNet-50 backbone and efficient hybrid encoder",
            "42M",
            "136",
            "COCO 2017 (118k training images)",
            "CVPR 2024",
            "53.1% AP at 108 FPS on a T4 GPU",
            "2.2% AP",
            "55.3% AP",
            "PekingU/rtdetr_r50vd_coco_o365",
            "53.1 AP at 108 FPS against YOLOv8-L's 52.9 AP at 71 FPS",
            "YOLOv8-X is more accurate (53.9 AP) but slower (50 FPS)",
            "RT-DETR-R18 72 20 60.7 217 46.5 63.8 50.4 28.4 49.8 63.0",
            "RT-DETR-R34 72 31 91.0 172 48.5 66.2 52.3 30.2 51.9 66.2",
            "RT-DETR-R50 72 42 136 108 53.1 71.3 57.7 34.8 58.0 70.0",
            "RT-DETR-R101 72 76 259 74 54.3 72.7 58.6 36.0 58.8 72.1",
            "RT-DETR-R18 (Obj365) 60 20 61 217 49.2 66.6 53.5 33.2 52.3 64.8",
            "RT-DETR-R50 (Obj365) 24 42 136 108 55.3 73.4 60.1 37.9 59.9 71.8",
            "RT-DETR-R101 (Obj365) 24 76 259 74 56.2 74.6 61.3 38.3 60.5 73.5",
            "What is RT-DETR R50 best used for?",
            "How does RT-DETR R50 compare to YOLO",
            "Is RT-DETR R50 free to use?",
            "API providers besides Vitrine: 0",
            "Not yet live",
            "Related models",
            "DETR ResNet-50",
        ],
    ),
}


@pytest.mark.parametrize("seed", SEED_PAGES)
def test_every_seed_number_is_on_its_page(client, seeded, seed):
    url, facts = SEED_PAGES[seed]
    response = client.get(url)
    assert response.status_code == 200
    text = page_text(response)
    assert [fact for fact in facts if fact not in text] == []


@pytest.mark.parametrize("url", [DETR, CONDITIONAL, RTDETR, YOLOS])
def test_a_detector_page_never_shows_a_text_to_image_call(client, seeded, url):
    text = page_text(client.get(url)).lower()
    assert [w for w in ("images/generations", "prompt", "1024x1024", "b64_json") if w in text] == []
    assert "object_detection(" in text and "--data-binary @cats.jpg" in text


def test_the_vitrine_request_schema_gives_the_threshold_default(client, seeded):
    # The API applies 0.5 when no threshold is sent (playground/api.py DEFAULT_THRESHOLD).
    # The schema as the page shows it (key order is the database's: PostgreSQL's jsonb
    # sorts keys, SQLite keeps them as written).
    body = client.get(DETR).content.decode()
    shown = re.search(r'data-label="request schema"><pre[^>]*><code[^>]*>(.*?)</code>', body, re.S)
    schema = json.loads(html.unescape(shown[1]))
    threshold = schema["properties"]["parameters"]["properties"]["threshold"]
    assert (threshold["default"], threshold["minimum"], threshold["maximum"]) == (0.5, 0, 1)


def test_snippets_use_this_sites_api_and_auth(client, seeded, settings):
    settings.SITE_URL = "https://vitrine.example"
    text = page_text(client.get(DETR))
    url = "https://vitrine.example/v1/inference/facebook/detr-resnet-50"
    assert text.count(url) >= 3  # curl, requests, fetch
    # huggingface_hub and the cloudflare SDK use their drop-in routes.
    assert 'model="https://vitrine.example/hf/models/facebook/detr-resnet-50"' in text
    assert 'base_url="https://vitrine.example/client/v4"' in text
    assert "Authorization: Bearer $VITRINE_API_KEY" in text
    assert 'env.AI.run("@cf/facebook/detr-resnet-50"' in text
    # The Cloudflare call is only shown where there is a Cloudflare route.
    assert "env.AI.run" not in page_text(client.get(YOLOS))


def test_model_page_lists_the_api_errors(client, seeded):
    text = page_text(client.get(DETR))
    for status in ("400", "401", "402", "403", "404", "409", "410", "413", "415", "422", "429",
                   "500", "503"):  # fmt: skip
        assert f"{status} " in text or f"{status}\n" in text, status
    assert "idempotency_key_reused" in text and "Retry-After" in text


def header_rows(response) -> dict[str, dict[str, list[str]]]:
    """The API -> Schemas "Headers" tables: {schema title: {header: [type, default, html]}}."""
    body = response.content.decode()
    tables = {}
    for title, table in re.findall(
        r'<summary>([^<]+)<span class="summary-note">.*?'
        r'<table class="headers-table">(.*?)</table>',
        body,
        flags=re.S,
    ):
        rows = {}
        for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S):
            cells = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
            if cells:
                name = re.sub(r"</?code>", "", cells[0])
                rows[name] = [cell.strip() for cell in cells[1:]]
        tables[title] = rows
    return tables


def test_schema_header_tables_show_json_defaults_and_rendered_markdown(client, seeded):
    tables = header_rows(client.get(DETR))
    vitrine, hf = tables["Vitrine API"], tables["Hugging Face Inference"]
    # Defaults as JSON spells them, and no default as a dash, never Python's None/True.
    assert [row[1] for row in hf.values()] == ["\u2014", "true", "false"]
    assert vitrine["authorization"][:2] == ["string", "\u2014"]
    # Descriptions are Markdown, rendered: code spans and links, no backticks or brackets.
    assert (
        "<code>Bearer &lt;key&gt;</code> with your Vitrine API key." in vitrine["authorization"][2]
    )
    # x-use-cache is Vitrine's own cache on its route, not Hugging Face's (session 49).
    assert "X-Vitrine-Cache: hit and X-Vitrine-Cost: 0" in hf["x-use-cache"][2]
    assert "huggingface.co" not in hf["x-use-cache"][2]
    shown = "".join(row[2] for rows in tables.values() for row in rows.values())
    assert "`" not in shown and "](" not in shown
    # The /hf/ route takes a Vitrine key, so its header asks for one, not a Hugging Face token.
    auth = hf["authorization"][2]
    assert "<code>'Bearer vt_****'</code>" in auth and "Vitrine API key" in auth
    assert "hf_****" not in auth and "huggingface.co/settings/tokens" not in auth


def test_an_operators_header_markdown_cannot_inject_script(client, db):
    card = factories.card()
    factories.route(card=card)
    evil = '<script>alert(1)</script>[x](javascript:alert(2)) <img src=x onerror="alert(3)">'
    card.task.schemas.create(
        flavour="vitrine",
        title="Vitrine API",
        headers=[{"name": "x-evil", "type": "string", "description": f"{evil} **kept**"}],
    )
    response = client.get(f"/models/{card.model_id}")
    row = header_rows(response)["Vitrine API"]["x-evil"]
    assert row[1] == "\u2014"  # no default key at all
    assert "<strong>kept</strong>" in row[2]
    body = response.content.decode().lower()
    assert "alert(1)" not in body and "onerror" not in body and "javascript:" not in body


def test_model_page_has_seo_and_faq_structured_data(client, seeded):
    body = client.get(DETR).content.decode()
    assert "<title>DETR ResNet-50 (facebook/detr-resnet-50)" in body
    assert '<meta property="og:title"' in body and '<meta name="description"' in body
    assert '"@type": "FAQPage"' in body and '"name": "What is DETR ResNet-50?"' in body


def test_list_search_filters_and_sorts(client, seeded):
    def ids(**params):
        response = client.get("/models", params)
        return re.findall(r'data-model-id="([^"]+)"', response.content.decode())

    assert len(ids()) == 4
    assert ids(q="rt-detr") == ["PekingU/rtdetr_r50vd"]
    assert ids(q="meta") == ["facebook/detr-resnet-50"]
    assert set(ids(status="coming_soon")) == {
        "microsoft/conditional-detr-resnet-50",
        "PekingU/rtdetr_r50vd",
    }
    assert ids(org="hustvl") == ["hustvl/yolos-tiny"]
    assert ids(sort="price") == [
        "PekingU/rtdetr_r50vd",  # $0.047 per 1k (estimated)
        "hustvl/yolos-tiny",  # $0.10
        "microsoft/conditional-detr-resnet-50",  # $0.20 (estimated); ties sort by name
        "facebook/detr-resnet-50",  # $0.20 on our route
    ]
    assert ids(price_max="0.1", sort="price") == ["PekingU/rtdetr_r50vd", "hustvl/yolos-tiny"]
    assert ids(price_min="0.15", status="live") == ["facebook/detr-resnet-50"]
    assert ids(sort="downloads")[0] == "PekingU/rtdetr_r50vd"


def test_filter_state_lives_in_the_url(client, seeded):
    response = client.get("/models", {"q": "detr", "status": "live", "sort": "price"})
    body = response.content.decode()
    assert 'value="detr"' in body
    assert 'value="live" checked' in body


def test_bad_filters_do_not_500(client, seeded):
    response = client.get("/models", {"price_min": "cheap", "status": "launched"})
    assert response.status_code == 200
    assert "Some filters were not understood" in page_text(response)


def test_pagination_keeps_the_filters(client, db):
    for i in range(30):
        factories.card(display_name=f"Detector {i:02}", summary="fast detector")
    response = client.get("/models", {"q": "fast"})
    assert "Page 1 of 2" in page_text(response)
    assert 'href="?q=fast&amp;page=2"' in response.content.decode()
    assert (
        len(re.findall(r"data-model-id", client.get("/models?q=fast&page=2").content.decode())) == 6
    )


def test_unknown_model_is_a_404_that_suggests_close_matches(client, seeded):
    response = client.get("/models/facebook/detr-resnet-5")
    assert response.status_code == 404
    text = page_text(response)
    assert "No model called facebook/detr-resnet-5" in text
    assert "DETR ResNet-50" in text


def test_coming_soon_demand_votes_once_per_email_and_user(client, seeded, other_user):
    url = CONDITIONAL + "/notify"
    client.post(url, {"email": "Dev@Example.com"})
    response = client.post(url, {"email": "dev@example.com"}, follow=True)
    assert "You already asked for this model" in page_text(response)
    client.force_login(other_user)
    client.post(url)
    client.post(url)
    card = ModelCard.objects.get(slug="conditional-detr-resnet-50")
    assert DemandVote.objects.filter(card=card).count() == 2


def test_a_vote_needs_an_email_or_a_user(client, seeded):
    response = client.post(CONDITIONAL + "/notify", {"email": ""}, follow=True)
    assert "Enter an email address, or sign in" in page_text(response)
    assert DemandVote.objects.count() == 0


def test_deprecated_models_show_sunset_and_replacement(client, seeded):
    from datetime import date

    card = ModelCard.objects.get(slug="yolos-tiny")
    card.status = ModelCard.Status.DEPRECATED
    card.sunset_date = date(2027, 3, 31)
    card.replacement = ModelCard.objects.get(slug="detr-resnet-50")
    card.save()
    text = page_text(client.get(YOLOS))
    assert "Sunset on 31 Mar 2027" in text
    assert "Replacement: DETR ResNet-50" in text


def test_price_history_is_shown_with_dates(client, seeded, staff):
    from decimal import Decimal

    from catalog.services import price_route_save

    route = PriceRoute.objects.get(card__slug="detr-resnet-50", slug="vitrine")
    route.price = Decimal("0.00018")
    price_route_save(route=route, changed_by=staff)
    text = page_text(client.get(DETR))
    assert "$0.00018 per image" in text and "$0.0002 per image" in text


def test_compare_shows_specs_prices_benchmarks_and_the_scatter(client, seeded):
    response = client.get("/compare", {"models": "facebook/detr-resnet-50,PekingU/rtdetr_r50vd"})
    assert response.status_code == 200
    body = response.content.decode()
    assert '<svg class="scatter"' in body
    assert "<title>DETR-R50: 42.0 AP at 28 FPS (V100, PyTorch)</title>" in body
    assert "<title>RT-DETR-R50: 53.1 AP at 108 FPS (T4, TensorRT FP16, bs=1)</title>" in body
    text = page_text(response)
    assert "$0.0002 per image" in text and "~$0.000047 per image" in text


@pytest.mark.parametrize(
    ("models", "status", "message"),
    [
        ("facebook/detr-resnet-50", 400, "Pick 2 to 4 models to compare."),
        ("a/b,c/d", 400, "Unknown model: a/b, c/d"),
        ("a/b,c/d,e/f,g/h,i/j", 400, "Pick 2 to 4 models to compare."),
        # Session 48: a model chosen twice is named.
        (
            "facebook/detr-resnet-50,facebook/detr-resnet-50",
            400,
            "DETR ResNet-50 is chosen twice; pick 2 to 4 different models.",
        ),
        (
            "facebook/detr-resnet-50,hustvl/yolos-tiny,facebook/detr-resnet-50",
            400,
            "DETR ResNet-50 is chosen twice; pick 2 to 4 different models.",
        ),
    ],
)
def test_compare_refuses_bad_selections(client, seeded, models, status, message):
    response = client.get("/compare", {"models": models})
    assert response.status_code == status
    assert message in page_text(response)


def test_collections_and_organisations_list_their_cards(client, seeded):
    text = page_text(client.get("/collections/coming-soon"))
    assert "Conditional DETR ResNet-50" in text and "RT-DETR R50" in text
    assert "YOLOS" not in text
    text = page_text(client.get("/orgs/facebook"))
    assert "Models from Meta" in text and "DETR ResNet-50" in text


def test_list_pages_are_cached_and_invalidated_when_an_operator_saves(client, seeded):
    assert client.get("/models")["X-Cache"] == "miss"
    assert client.get("/models")["X-Cache"] == "hit"
    card = ModelCard.objects.get(slug="yolos-tiny")
    card.display_name = "YOLOS tiny (renamed)"
    card.save()
    response = client.get("/models")
    assert response["X-Cache"] == "miss"
    assert "YOLOS tiny (renamed)" in page_text(response)


def test_model_pages_are_cached_for_visitors_and_invalidated_when_an_operator_saves(client, seeded):
    assert client.get(DETR)["X-Cache"] == "miss"
    assert client.get(DETR)["X-Cache"] == "hit"
    an_operators_save_is_seen(client, "A summary an operator just edited.")


def an_operators_save_is_seen(client, summary: str) -> None:
    """An operator edits the DETR card's summary: ``client``'s next page is rendered anew."""
    card = ModelCard.objects.get(slug="detr-resnet-50")
    card.summary = summary
    card.save()
    response = client.get(DETR)
    assert response["X-Cache"] == "miss"
    assert summary in page_text(response)


def test_a_cached_page_with_a_form_carries_each_visitors_own_csrf_token(seeded):
    from django.test import Client

    first, second = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    assert first.get(CONDITIONAL)["X-Cache"] == "miss"
    hit = second.get(CONDITIONAL)
    assert hit["X-Cache"] == "hit"
    assert "private" in hit["Cache-Control"]  # no shared cache keeps a page with a token
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', hit.content.decode())[1]
    assert token != "__vitrine_csrf__"
    # The second visitor's form post passes the CSRF check with the token they were served.
    response = second.post(
        CONDITIONAL + "/notify", {"email": "second@example.com", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    assert DemandVote.objects.filter(email="second@example.com").exists()


def member_client(enforce_csrf_checks: bool = False):
    from django.test import Client

    member = Client(enforce_csrf_checks=enforce_csrf_checks)
    member.force_login(factories.user())
    return member


def test_signed_in_visitors_share_a_cached_page_of_their_own_kind(client, seeded):
    anonymous = client.get(DETR)
    assert anonymous["X-Cache"] == "miss" and "Sign in" in page_text(anonymous)
    first, second = member_client(), member_client()
    page = first.get(DETR)
    assert page["X-Cache"] == "miss"  # not the anonymous copy
    assert "Log out" in page_text(page) and "Sign in" not in page_text(page)
    hit = second.get(DETR)
    assert hit["X-Cache"] == "hit" and "Log out" in page_text(hit)
    # A member's page is theirs (it carries their token): no shared cache keeps it.
    assert hit["Cache-Control"] == "private, max-age=0" and "Cookie" in hit["Vary"]
    again = client.get(DETR)
    assert again["X-Cache"] == "hit" and "Sign in" in page_text(again)
    an_operators_save_is_seen(second, "Edited while members were reading.")


def test_a_members_page_holds_nothing_of_the_member_but_the_token(seeded):
    """What lets members share one copy: rendered afresh for two different members, the
    pages differ only in their CSRF tokens (no name, email or balance in a template)."""
    first, second = member_client(), member_client()
    for url in (DETR, CONDITIONAL, "/models", "/orgs/facebook", "/compare"):
        one = first.get(url, headers={"Cache-Control": "no-cache"})
        two = second.get(url, headers={"Cache-Control": "no-cache"})
        assert (one["X-Cache"], two["X-Cache"]) == ("miss", "miss")
        bodies = [CSRF_INPUT.sub(rb"\1\2", r.content) for r in (one, two)]
        assert bodies[0] == bodies[1], url


def test_a_hard_reload_renders_the_page_afresh_and_replaces_the_copy(client, seeded):
    assert client.get(DETR)["X-Cache"] == "miss"
    assert client.get(DETR)["X-Cache"] == "hit"
    # A change the catalogue's signals do not see (an update() that bypasses save()).
    ModelCard.objects.filter(slug="detr-resnet-50").update(summary="Updated behind the cache.")
    assert "Updated behind the cache." not in page_text(client.get(DETR))
    reloaded = client.get(DETR, headers={"Cache-Control": "no-cache"})
    assert reloaded["X-Cache"] == "miss"
    assert "Updated behind the cache." in page_text(reloaded)
    after = client.get(DETR)
    assert after["X-Cache"] == "hit" and "Updated behind the cache." in page_text(after)


def test_a_members_cached_form_posts_with_their_own_token(seeded):
    member_client(enforce_csrf_checks=True).get(CONDITIONAL)  # stores the members' copy
    member = member_client(enforce_csrf_checks=True)
    hit = member.get(CONDITIONAL)
    assert hit["X-Cache"] == "hit"
    tokens = set(re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', hit.content.decode()))
    assert len(tokens) == 1 and "__vitrine_csrf__" not in tokens
    response = member.post(CONDITIONAL + "/notify", {"csrfmiddlewaretoken": tokens.pop()})
    assert response.status_code == 302
    assert DemandVote.objects.filter(user=member.session["_auth_user_id"]).exists()


def queries_for(client, url) -> int:
    from django.core.cache import cache

    cache.clear()
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_pages_use_a_constant_number_of_queries(client, seeded):
    urls = [
        "/models",
        "/models?q=detr&sort=price",
        DETR,
        "/collections/object-detection",
        "/orgs/facebook",
        "/compare?models=facebook/detr-resnet-50,PekingU/rtdetr_r50vd",
    ]
    small = {url: queries_for(client, url) for url in urls}
    org = ModelCard.objects.get(slug="detr-resnet-50").organisation
    task = ModelCard.objects.get(slug="detr-resnet-50").task
    cards = ModelCard.objects.bulk_create(
        ModelCard(
            organisation=org,
            task=task,
            slug=f"bulk-{i}",
            display_name=f"DETR bulk {i}",
            summary="detr",
            status="live",
        )
        for i in range(1000)
    )
    PriceRoute.objects.bulk_create(
        PriceRoute(card=c, slug="vitrine", provider="Vitrine", price="0.0001") for c in cards
    )
    large = {url: queries_for(client, url) for url in urls}
    assert large == small


def test_an_operators_markdown_cannot_inject_script_into_a_page(client, db):
    card = factories.card(
        description='<script>alert(1)</script><img src=x onerror="alert(2)">'
        "[x](javascript:alert(3))\n\n**kept**"
    )
    factories.route(card=card)
    body = client.get(f"/models/{card.model_id}").content.decode().lower()
    assert "alert(1)" not in body and "onerror" not in body and "javascript:" not in body
    assert "<strong>kept</strong>" in body


def test_cheapest_compares_prices_of_one_unit_only(client, db):
    """DETR's Cloudflare route ($0.0000075 per request, run on the caller's own Cloudflare
    key) was marked "Cheapest" beside ours per image: not the same offer."""
    from decimal import Decimal

    card = factories.card()
    own = factories.route(card=card, price=Decimal("0.0002"))
    provider = {"is_own": False, "byok_available": True}
    factories.route(card=card, slug="cloudflare", provider="Cloudflare Workers AI",
                    unit="request", price=Decimal("0.0000075"), **provider)  # fmt: skip
    page = client.get(card_path(card)).content.decode()
    assert "Cheapest" not in page
    factories.route(card=card, slug="other", provider="Other", price=Decimal("0.0001"), **provider)
    page = client.get(card_path(card)).content.decode()
    assert re.findall(r'<div class="route cheapest" data-route="([a-z]+)"', page) == ["other"]
    assert own.slug not in re.findall(r'<div class="route cheapest" data-route="([a-z]+)"', page)


def test_a_coming_soon_pages_snippets_say_the_calls_answer_409_until_launch(client, seeded):
    """Its snippets are the ones it will take, but run as printed they answer 409: the page
    says so beside them, as a retired page says 410 (session 43's outside probe)."""
    text = client.get(CONDITIONAL).content.decode()
    api = text[text.index('id="api"') :]
    assert api.index('id="api-not-live"') < api.index('data-tabs="snippets"')
    assert "409 model_not_available" in api[: api.index('data-tabs="snippets"')]
    live = client.get(DETR).content.decode()
    assert 'id="api-not-live"' not in live
