"""Session 49's probe of the model pages against their seed pages: what the catalogue says
of dates, prices, status, speeds, sources and Vitrine's own routes is true."""

from __future__ import annotations

import calendar
import datetime
import html
import io
import re
from decimal import Decimal

import pytest
from django.core.management import call_command

from catalog import pricing
from catalog.models import Collection, ModelCard, PriceRoute
from tests import factories

pytestmark = pytest.mark.django_db

DETR = "facebook/detr-resnet-50"
CONDITIONAL_DETR = "microsoft/conditional-detr-resnet-50"
RT_DETR = "PekingU/rtdetr_r50vd"
YOLOS_TINY = "hustvl/yolos-tiny"


@pytest.fixture
def seeded():
    call_command("seed_catalog", stdout=io.StringIO())


def text_of(fragment: str) -> str:
    """What a reader sees: tags dropped, entities decoded, whitespace collapsed."""
    fragment = re.sub(r"<script.*?</script>", " ", fragment, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", fragment))).strip()


def page(client, model_id: str) -> str:
    response = client.get(f"/models/{model_id}")
    assert response.status_code == 200
    return response.content.decode()


def specs(body: str) -> dict[str, str]:
    table = body.split('<section id="specs">')[1].split("</table>")[0]
    return {
        text_of(th): text_of(td)
        for th, td in re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", table, flags=re.S)
    }


# --- 2: the task page says which endpoints the API reference holds --------------------------
def test_the_task_page_says_where_the_drop_in_routes_are_documented(client, seeded):
    text = text_of(client.get("/tasks/object-detection").content.decode())
    assert "every endpoint is in the API reference" not in text
    assert "The /v1 endpoints (inference, jobs, models) are in the API reference" in text
    assert "POST /hf/models/<organisation>/<name>" in text
    assert "POST /client/v4/accounts/<account>/ai/run/@cf/<organisation>/<name>" in text
    paths = client.get("/v1/openapi.json").json()["paths"]
    assert all(path.startswith("/v1/") for path in paths)  # the sentence's claim


# --- 3: /v1/models `created` is the weights' publication, never the seed's load time -------
@pytest.mark.parametrize(
    ("model_id", "day"),
    [(DETR, datetime.date(2020, 5, 1)), (YOLOS_TINY, datetime.date(2021, 6, 1))],
)
def test_created_is_the_weights_publication_for_detr_and_yolos(client, seeded, model_id, day):
    created = client.get(f"/v1/models/{model_id}").json()["created"]
    assert created == calendar.timegm(day.timetuple())


def test_created_without_any_date_is_documented_as_the_cards_creation(client, db):
    card = factories.card()
    factories.route(card=card)
    created = client.get(f"/v1/models/{card.model_id}").json()["created"]
    assert created == int(card.created_at.timestamp())
    schema = client.get("/v1/openapi.json").json()["components"]["schemas"]["Model"]
    description = schema["properties"]["created"]["description"]
    assert "created in Vitrine's catalogue" in description


# --- 5: a coming-soon page does not say workers run it ----------------------------------------
@pytest.mark.parametrize("model_id", [DETR, CONDITIONAL_DETR, RT_DETR, YOLOS_TINY])
def test_the_fidelity_answer_is_true_of_the_models_status(client, seeded, model_id):
    card = ModelCard.objects.by_model_id(model_id).get()
    (answer,) = [
        e.answer for e in card.faq.all() if "running the model with transformers" in e.question
    ]
    if card.is_coming_soon:
        assert "Vitrine's workers run" not in answer
        assert "measured latency" not in answer
        assert "once it is live" in answer
        assert 'id="measured-latency"' not in page(client, model_id)  # nothing measured here
    else:
        assert "Vitrine's workers run the pinned checkpoint" in answer


# --- 6: what a call to Vitrine's Cloudflare-compatible route costs ---------------------------
def test_the_cloudflare_route_price_is_vitrines_from_the_cards_price(client, db):
    card = factories.card()
    own = factories.route(card=card, price=Decimal("0.00037"))
    cloudflare = factories.route(
        card=card, slug="cloudflare", provider="Cloudflare Workers AI", is_own=False,
        provider_model_id="@cf/acme/detector", unit=PriceRoute.Unit.REQUEST,
        price=Decimal("0.0000081"), byok_available=True, is_beta=True,
    )  # fmt: skip
    body = page(client, card.model_id)
    vitrine_price = f"{pricing.format_usd(own.price)} per image"
    snippet = body.split('id="snippet-cloudflare_sdk"')[1].split("</div>")[0]
    note = text_of(snippet.split('data-price-note="cloudflare-snippet"')[1].split("</p>")[0])
    assert f"a call costs Vitrine's price, {vitrine_price}, from your Vitrine wallet" in note
    assert f"{pricing.format_usd(cloudflare.price)} per request is Cloudflare's own price" in note
    assert "BYOK" in note
    box = body.split('id="pricing"')[1].split("</section>")[0]
    route = box.split('data-route="cloudflare"')[1]
    assert f"Vitrine's price, {vitrine_price}" in text_of(
        route.split('data-price-note="cloudflare-pricing"')[1].split("</p>")[0]
    )


def test_the_seeded_detr_page_and_pricing_say_which_price_the_route_pays(client, seeded):
    text = text_of(page(client, DETR))
    assert "a call costs Vitrine's price, $0.0002 per image, from your Vitrine wallet" in text
    assert "$0.0000075 per request is Cloudflare's own price" in text
    which = text_of(client.get("/pricing").content.decode().split('id="which-price"')[1])
    assert "every call Vitrine runs costs" in which and "Cloudflare-compatible" in which


# --- 7: "Coming soon" follows the models' status ----------------------------------------------
def _collection_ids(client) -> set[str]:
    body = client.get("/collections/coming-soon").content.decode()
    cards = body.split('<ul class="cards">')[1].split("</main>")[0]
    return set(re.findall(r'href="/models/([^"/]+/[^"/]+)"', cards))


def test_the_coming_soon_collection_follows_the_status(client, seeded):
    assert _collection_ids(client) == {CONDITIONAL_DETR, RT_DETR}
    card = ModelCard.objects.by_model_id(RT_DETR).get()
    card.status = ModelCard.Status.LIVE
    card.save()

    assert _collection_ids(client) == {CONDITIONAL_DETR}
    assert 'href="/collections/coming-soon"' not in page(client, RT_DETR)
    assert 'href="/collections/coming-soon"' in page(client, CONDITIONAL_DETR)
    assert Collection.objects.get(slug="coming-soon").cards.filter(pk=card.pk).exists()

    card.status = ModelCard.Status.COMING_SOON
    card.save()
    assert _collection_ids(client) == {CONDITIONAL_DETR, RT_DETR}


# --- 8: every seeded card states its input size; speeds say their GPU and runtime -----------
@pytest.mark.parametrize(
    ("model_id", "size"),
    [
        (DETR, "800 px shortest edge, longest edge at most 1333 px"),
        (CONDITIONAL_DETR, "800 px shortest edge, longest edge at most 1333 px"),
        (RT_DETR, "640x640 (every image resized to it)"),
        (YOLOS_TINY, "512 px shortest edge, longest edge at most 1333 px"),
    ],
)
def test_every_card_states_its_input_size(client, seeded, model_id, size):
    assert specs(page(client, model_id))["Input size"] == size


def test_compare_fills_the_input_size_row_and_says_the_speeds_are_not_comparable(client, seeded):
    body = client.get("/compare", {"models": f"{DETR},{CONDITIONAL_DETR},{RT_DETR}"})
    body = body.content.decode()
    row = re.search(r"<tr><th>Input size</th>(.*?)</tr>", body, flags=re.S)[1]
    assert "—" not in row and row.count("<td>") == 3
    caption = text_of(body.split('id="speed-accuracy-caption"')[1].split("</figcaption>")[0])
    assert "different GPUs and runtimes" in caption
    assert "FPS (T4, TensorRT FP16, bs=1): RT-DETR R50" in caption
    assert "FPS (V100, PyTorch): DETR ResNet-50" in caption
    cost = text_of(body.split('id="speed-cost-caption"')[1].split("</figcaption>")[0])
    assert "different GPUs and runtimes" in cost and "not comparable" in cost
    assert "FPS (T4, TensorRT FP16, bs=1): RT-DETR R50" in cost


# --- 9, 10: each table names the source that prints its figures -------------------------------
def test_benchmark_tables_cite_where_their_figures_are_printed(client, seeded):
    conditional = ModelCard.objects.by_model_id(CONDITIONAL_DETR).get().benchmarks.get()
    assert conditional.source_url == "https://github.com/Atten4Vis/ConditionalDETR"
    assert conditional.source.startswith("The Atten4Vis/ConditionalDETR repository's model zoo")
    assert "Meng et al. 2021" in conditional.source  # the method's source
    text = text_of(page(client, CONDITIONAL_DETR))
    assert "41.0 AP in the official repository's model zoo" in text
    rtdetr = ModelCard.objects.by_model_id(RT_DETR).get()
    table = rtdetr.benchmarks.get()
    assert table.source.startswith("The PekingU/rtdetr_r50vd model card")
    assert "48.9 AP and 66.8 AP50 at 92 GFLOPs and 161 FPS" in table.caption
    assert "outperforming YOLO detectors of the same scale" in rtdetr.description
    assert "previous YOLO detectors" not in rtdetr.description


# --- 11: the Hugging Face block says what Vitrine's route does ---------------------------------
def test_the_hugging_face_block_describes_vitrines_route(client, seeded, settings):
    # The figures the headers state are the route's settings (playground/flavours/hf.py).
    assert settings.VITRINE_HF_CACHE_TTL == 24 * 3600
    assert (settings.VITRINE_HF_WAIT, settings.VITRINE_HF_WAIT_FOR_MODEL) == (30, 300)
    body = client.get("/tasks/object-detection").content.decode()
    block = body.split("<summary>Hugging Face Inference")[1].split("</details>")[0]
    text = text_of(block)
    assert "Vitrine's Hugging Face-compatible route" in text
    assert "Authentication header in the form 'Bearer vt_****'" in text
    assert "Vitrine's /hf/ route takes a Vitrine key, not a Hugging Face hf_ token" in text
    assert "On Vitrine's route: Vitrine's result cache, per account" in text
    assert "within 24 hours" in text and "X-Vitrine-Cache: hit" in text
    assert "over 30 seconds is answered 503 at once" in text
    assert "with true it waits up to 300 seconds" in text
    assert "deterministic" not in text
    assert "parameters#caching" not in block


def test_the_endpoint_url_may_wrap_only_after_a_slash(client, seeded):
    # A phone broke it mid-token ("faceb/ook"); a <wbr> after each "/" copies as nothing.
    body = page(client, DETR)
    code = re.search(r'<code id="inference-url">(.*?)</code>', body).group(1)
    assert code.count("/<wbr>") == code.count("/") - 1  # not inside "://"
    assert code.replace("<wbr>", "").endswith(f"://testserver/v1/inference/{DETR}")
