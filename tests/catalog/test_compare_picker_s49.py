"""/compare's picker (session 49): a first visit is a list of models to tick, not an error.

An outside review found the nav's Compare link opening on a red "Pick 2 to 4 models to
compare." and a free-text box of comma-separated ids. The picker is checkboxes now (as
/compare/run's); they send ?models=a&models=b, which reads as a shared link's ?models=a,b.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from catalog.views import COMPARE_PICK

pytestmark = pytest.mark.django_db

DETR, YOLOS = "facebook/detr-resnet-50", "hustvl/yolos-tiny"


@pytest.fixture
def seeded():
    call_command("seed_catalog", stdout=io.StringIO())


def test_first_visit_is_a_picker_without_an_error(client, seeded):
    response = client.get("/compare")
    body = response.content.decode()
    assert response.status_code == 200
    assert COMPARE_PICK not in body
    assert 'class="error"' not in body
    # Every listed model is a checkbox named by its display name.
    for model_id, name in ((DETR, "DETR ResNet-50"), (YOLOS, "YOLOS")):
        assert f'type="checkbox" name="models" value="{model_id}"' in body
        assert name in body
    assert 'type="text" name="models"' not in body


def test_ticked_boxes_compare_as_a_shared_link_does(client, seeded):
    ticked = client.get("/compare", {"models": [DETR, YOLOS]})
    shared = client.get("/compare", {"models": f"{DETR},{YOLOS}"})
    assert ticked.status_code == shared.status_code == 200
    for response in (ticked, shared):
        body = response.content.decode()
        assert 'id="compare-table"' in body
        # The picker stays, folded, with the compared models ticked.
        assert "Change the models" in body
        assert f'value="{DETR}" checked' in body and f'value="{YOLOS}" checked' in body


def test_one_ticked_box_is_still_refused(client, seeded):
    response = client.get("/compare", {"models": [DETR]})
    assert response.status_code == 400
    assert COMPARE_PICK in response.content.decode()


def test_submitting_nothing_ticked_says_what_to_do(client, seeded):
    # A form sent with no box ticked has no models parameter at all: the picker again; an
    # explicit empty ?models= says what is missing.
    assert COMPARE_PICK in client.get("/compare", {"models": ""}).content.decode()
