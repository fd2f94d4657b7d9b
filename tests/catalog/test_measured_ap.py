"""Measured-here AP on the model page: trained weights of the card's revision only."""

from __future__ import annotations

import io

import pytest
from django.core.cache import cache
from django.core.management import call_command

from catalog.evaluations import evaluation_record
from catalog.models import EvaluationResult, ModelCard
from tests.catalog.test_pages import DETR, page_text, queries_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def detr():
    call_command("seed_catalog", stdout=io.StringIO())
    return ModelCard.objects.get(slug="detr-resnet-50")


def report(*, ap: float = 0.42, images: int = 500, untrained: bool = False) -> dict:
    return {
        "weights": {"revision": "a" * 40, "untrained": untrained},
        "dataset": {"name": "COCO val2017", "images": images, "annotations": 3600},
        "metrics": {
            "AP": ap,
            "AP50": 0.624,
            "AP75": 0.442,
            "AP_S": 0.205,
            "AP_M": 0.458,
            "AP_L": -1.0,
        },
        "runtime": {"device": "cuda:0 (NVIDIA H200)", "precision": "fp32"},
        "timing": {"seconds": 61.5},
    }


def test_a_trained_evaluation_is_shown_beside_the_papers_figures(client, detr):
    evaluation_record(card=detr, report=report())
    response = client.get(DETR)
    text = page_text(response)
    assert "Measured on Vitrine's workers on 500 COCO val2017 images" in text
    assert "42.0 62.4 44.2 20.5 45.8 -" in text  # AP_L -1: no large object in the subset
    assert "cuda:0 (NVIDIA H200)" in text
    # Beside the paper's own table, which stays.
    body = response.content.decode()
    at = body.index
    assert at('id="benchmarks"') < at('id="measured"') < at('id="benchmark-1"')


@pytest.mark.parametrize("case", ["untrained", "other revision", "none"])
def test_no_measured_ap_is_shown_for_random_weights_or_another_revision(client, detr, case):
    if case == "untrained":
        evaluation_record(card=detr, report=report(ap=0.0001, untrained=True))
    elif case == "other revision":
        evaluation_record(card=detr, report=report())
        detr.checkpoint_revision = "b" * 40
        detr.save()
        cache.clear()
    text = page_text(client.get(DETR))
    assert "Measured on Vitrine" not in text


def test_the_newest_trained_evaluation_wins(client, detr):
    evaluation_record(card=detr, report=report(ap=0.40, images=100))
    evaluation_record(card=detr, report=report(ap=0.42, images=5000))
    evaluation_record(card=detr, report=report(ap=0.0, images=9, untrained=True))
    text = page_text(client.get(DETR))
    assert "on 5000 COCO val2017 images" in text and "on 100 COCO" not in text
    assert EvaluationResult.objects.filter(card=detr).count() == 3


def test_evaluations_cost_one_query_whatever_their_number(client, detr):
    evaluation_record(card=detr, report=report())
    one = queries_for(client, DETR)
    for _ in range(20):
        evaluation_record(card=detr, report=report())
    assert queries_for(client, DETR) == one


def test_the_admin_lists_evaluations_and_flags_branch_pins(admin_client, detr):
    evaluation_record(card=detr, report=report())
    assert "COCO val2017" in admin_client.get("/admin/catalog/evaluationresult/").content.decode()
    page = admin_client.get("/admin/catalog/modelcard/").content.decode()
    assert "branch no_timm (moving)" in page
    detr.checkpoint_revision = "c" * 40
    assert detr.revision_is_commit
