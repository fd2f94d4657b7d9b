"""Compare: the merged benchmark table keeps every published row and one column per figure;
a bad selection (a duplicate, an unknown id among known ones) is refused as a whole."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from catalog.charts import benchmarks_by_dataset
from catalog.models import ModelCard

pytestmark = pytest.mark.django_db

DETR, CONDITIONAL, RT_DETR = (
    "facebook/detr-resnet-50",
    "microsoft/conditional-detr-resnet-50",
    "PekingU/rtdetr_r50vd",
)


@pytest.fixture
def seeded():
    call_command("seed_catalog", stdout=io.StringIO())


def cards(*model_ids: str) -> list[ModelCard]:
    found = {c.model_id: c for c in ModelCard.objects.select_related("organisation")}
    return [found[m] for m in model_ids]


def coco(*model_ids: str) -> dict:
    (table,) = [t for t in benchmarks_by_dataset(cards(*model_ids)) if "COCO" in t["dataset"]]
    return table


def test_rows_with_one_label_and_different_figures_stay_two_rows(seeded):
    """Conditional DETR's table has DETR-R50 after 50 epochs (34.8 AP) and after 500 (42.0)."""
    table = coco(CONDITIONAL, RT_DETR)
    ap = table["columns"].index("AP")
    detr_ap = sorted(r["cells"][ap] for r in table["rows"] if r["label"] == "DETR-R50")
    assert detr_ap == ["34.8", "42.0"]


def test_spellings_of_one_figure_are_one_column(seeded):
    """DETR's "GFLOPs" and Conditional DETR's "FLOPs (G)" are one column, 86 once per row."""
    table = coco(DETR, CONDITIONAL)
    flops = [c for c in table["columns"] if "flop" in c.lower()]
    assert len(flops) == 1, table["columns"]
    for row in table["rows"]:
        assert len(row["cells"]) == len(table["columns"])
    column = table["columns"].index(flops[0])
    assert {r["label"]: r["cells"][column] for r in table["rows"]}["Conditional DETR-R50"] == "90"


@pytest.mark.parametrize(
    "models",
    [f"{DETR},{DETR}", f"{DETR},nope/nope", f"{DETR}, {DETR} ,{DETR}"],
)
def test_a_duplicate_or_an_unknown_model_is_refused_as_a_whole(client, seeded, models):
    response = client.get("/compare", {"models": models})
    assert response.status_code == 400
    body = response.content.decode()
    assert "is chosen twice; pick 2 to 4 different models" in body or (
        "Unknown model: nope/nope" in body
    )
    assert 'id="compare-table"' not in body and 'id="compare-on-image"' not in body


def test_a_card_without_a_task_spec_row_shows_its_task(client, db):
    """The Task row came from the operator's spec rows only: "—" for a card whose task is
    set but has no such row."""
    from tests import factories

    task = factories.task(name="Object detection", slug="object-detection-x")
    a = factories.card(slug="with-row", task=task)
    a.specs.create(label="Task", value="Object detection")
    b = factories.card(slug="without-row", task=task)
    for card in (a, b):
        factories.route(card=card)
    page = client.get(f"/compare?models={a.model_id},{b.model_id}")
    assert page.status_code == 200
    rows = dict(page.context["spec_rows"])
    assert rows["Task"] == ["Object detection", "Object detection"]
