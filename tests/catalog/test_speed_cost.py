"""The speed/cost plot on /compare: one labelled point per model, measured speed first."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from django.utils import timezone

from catalog.models import ModelCard, ModelStats

pytestmark = pytest.mark.django_db
DETR = "facebook/detr-resnet-50"


@pytest.fixture
def seeded():
    call_command("seed_catalog", stdout=io.StringIO())


def points(page: str) -> dict[str, str]:
    """model id -> the point's classes, from the server-rendered SVG."""
    return dict(
        (model_id, classes)
        for classes, model_id in re.findall(r'<g class="point([^"]*)" data-model-id="([^"]+)"',
                                            page.split('id="speed-cost"')[1])
    )  # fmt: skip


def test_published_speeds_are_hollow_points_with_a_table_fallback(client, seeded):
    page = client.get("/compare", {"models": f"{DETR},hustvl/yolos-tiny"}).content.decode()
    found = points(page)
    assert "published" in found[DETR] and "compared" in found[DETR]
    assert '<title id="cost-title">' in page and '<desc id="cost-desc">' in page
    table = page.split('id="speed-cost-table"')[1].split("</table>")[0]
    # DETR-R50: 28 FPS on a V100 in the paper -> 35.7 ms; $0.0002 per image -> $0.20 per 1k.
    assert re.search(r"<th>DETR[^<]*</th><td class=\"num\">35.7</td><td>FPS \(V100, PyTorch\)</td>"
                     r"<td class=\"num\">\$0.20</td>", table), table  # fmt: skip
    # Live models with a price but no speed are named, not silently left out.
    assert "No speed yet" in page and "YOLOS" in page.split('id="speed-cost-missing"')[1]


def test_an_estimated_price_reads_as_one_and_every_unplotted_model_is_named(client, seeded):
    """RT-DETR's price is an estimate: the plot's tooltip and the table said "$0.047" while
    the rest of the page said "~$0.047". Conditional DETR (coming soon, priced, no published
    FPS) was in neither plot nor the note saying why."""
    models = f"{DETR},PekingU/rtdetr_r50vd,microsoft/conditional-detr-resnet-50"
    page = client.get("/compare", {"models": models}).content.decode()
    section = page.split('id="speed-cost"')[1]
    rtdetr = re.search(r'data-model-id="PekingU/rtdetr_r50vd"><title>([^<]+)</title>', section)
    assert "~$0.047 estimated per 1k images" in rtdetr[1]
    table = section.split('id="speed-cost-table"')[1].split("</table>")[0]
    assert re.search(r"<th>RT-DETR R50</th>.*?~\$0.047 <small>\(estimated\)</small>", table)
    assert re.search(r"<th>DETR ResNet-50</th>.*?>\$0.20</td>", table)  # a firm price: no ~
    missing = section.split('id="speed-cost-missing"')[1].split("</p>")[0]
    assert "Conditional DETR ResNet-50" in missing and "YOLOS tiny" in missing


def test_a_measured_speed_replaces_the_published_one(client, seeded, settings):
    settings.VITRINE_STATS_MIN_RUNS = 5
    card = ModelCard.objects.by_model_id(DETR).get()
    ModelStats.objects.create(
        card=card, runs_7d=12, queue_p50_ms=40, queue_p95_ms=90, model_p50_ms=812,
        model_p95_ms=1400, refreshed_at=timezone.now(),
    )  # fmt: skip
    page = client.get("/compare").content.decode()  # no selection: the plot is still there
    assert "measured" in points(page)[DETR]
    assert '<td class="num">812</td><td>measured on Vitrine</td>' in page


def test_the_compare_page_queries_do_not_grow_with_the_catalogue(
    client, seeded, django_assert_max_num_queries
):
    url = "/compare?models=" + f"{DETR},hustvl/yolos-tiny"
    with django_assert_max_num_queries(16):
        assert client.get(url).status_code == 200


def test_measured_latency_reads_in_the_site_number_format(client, seeded, settings):
    """A cold start's seconds and a busy week's runs are thousands-separated, as every other
    number on the site is."""
    settings.VITRINE_STATS_MIN_RUNS = 5
    card = ModelCard.objects.by_model_id(DETR).get()
    ModelStats.objects.create(
        card=card, runs_7d=12345, queue_p50_ms=40, queue_p95_ms=48210, model_p50_ms=812,
        model_p95_ms=1400, refreshed_at=timezone.now(),
    )  # fmt: skip
    page = client.get(f"/models/{DETR}").content.decode()
    block = page.split('id="measured-latency"')[1].split("</section>")[0]
    assert '<td class="num">48,210 ms</td>' in block
    assert '<td class="num">1,400 ms</td>' in block
    assert '<span id="measured-runs">12,345</span>' in block


def test_a_retired_model_promises_no_latency_and_shows_no_empty_nav(client):
    from datetime import date

    from tests import factories

    live = factories.card(slug="detr-live")
    retired = factories.card(
        slug="detr-old", status=ModelCard.Status.RETIRED, sunset_date=date(2026, 6, 30),
        replacement=live,
    )  # fmt: skip
    page = client.get(f"/models/{retired.model_id}").content.decode()
    assert "is retired" in page
    assert "Not enough runs yet" not in page and 'id="measured-latency"' not in page
    assert 'class="section-nav"' not in page  # no one-tab nav over an empty page
    live_page = client.get(f"/models/{live.model_id}").content.decode()
    assert "Not enough runs yet" in live_page and 'class="section-nav"' in live_page
