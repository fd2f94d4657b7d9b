"""A try page of a model that cannot run names ones that can (session 49).

An outside review found the coming-soon try page a dead end: "it cannot be tried yet" and
nothing else. It now links the model's page and up to three models of its task that can be
tried now, live first.
"""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command

from catalog.models import ModelCard

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded():
    call_command("seed_catalog", stdout=io.StringIO())


def tried(body: str) -> list[str]:
    section = body.split('id="try-instead"')[1].split("</section>")[0]
    return re.findall(r'href="/models/([^"]+)/try"', section)


def test_a_coming_soon_try_page_names_models_to_try_now(client, seeded):
    response = client.get("/models/PekingU/rtdetr_r50vd/try")
    body = response.content.decode()
    assert response.status_code == 200
    assert "cannot be tried yet" in body
    assert 'href="/models/PekingU/rtdetr_r50vd"' in body  # its page, to be told when live
    # The live ones of its task (DETR, YOLOS), never itself or another coming-soon one.
    assert tried(body) == ["facebook/detr-resnet-50", "hustvl/yolos-tiny"]


def test_a_model_switched_to_coming_soon_leaves_the_list(client, seeded):
    ModelCard.objects.filter(slug="yolos-tiny").update(status="coming_soon")
    body = client.get("/models/PekingU/rtdetr_r50vd/try").content.decode()
    assert tried(body) == ["facebook/detr-resnet-50"]


def test_a_live_try_page_lists_none(client, seeded):
    assert 'id="try-instead"' not in client.get("/models/hustvl/yolos-tiny/try").content.decode()
