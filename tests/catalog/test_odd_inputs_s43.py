"""Odd characters in addresses (session 43's outside probe).

A NUL (``%00``) in a model id, an organisation slug or a ``models=`` list reached a query,
and PostgreSQL refuses a NUL in any text it is sent: ``DataError``, a 500 on the model
pages, the comparison pages, ``GET /v1/models/<id>``, ``POST /v1/inference/<id>`` and
``GET /v1/jobs?model=``. No id, name or search term holds one: the address is refused
first, a 400 in the API's one JSON shape on the API and the site's 400 page elsewhere,
on every database.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.services.keys import api_key_create
from tests import factories

pytestmark = pytest.mark.django_db

PAGES = [
    "/models/%00/detr-resnet-50",
    "/models/facebook/a%00b",
    "/models/facebook/a%00b/try",
    "/models/facebook/a%00b/notify",
    "/compare?models=%00,%00b",
    "/compare?models=facebook/detr-resnet-50,a%00b",
    "/compare/run?models=%00,%00b",
    "/models?q=%00",
]
API = [
    ("get", "/v1/models/%00"),
    ("get", "/v1/models/facebook/a%00b"),
    ("head", "/v1/models/facebook/a%00b"),
    ("get", "/v1/jobs?model=%00"),
    ("post", "/v1/inference/%00/x"),
    ("post", "/v1/detections/facebook/a%00b"),
]


@pytest.fixture
def card():
    return factories.card(
        slug="detr-resnet-50", organisation=factories.organisation(slug="facebook")
    )


@pytest.mark.parametrize("path", PAGES)
def test_a_nul_in_a_page_address_is_the_400_page(client, card, path):
    response = client.get(path)
    assert response.status_code == 400
    assert b"Bad request" in response.content


@pytest.mark.parametrize(("method", "path"), API)
def test_a_nul_in_an_api_address_is_a_400_in_the_one_shape(client, card, method, path):
    user = factories.user()
    _key, secret = api_key_create(user=user, name="k")
    response = getattr(client, method)(path, HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 400
    if method != "head":
        error = response.json()["error"]
        assert error["code"] == "invalid_characters"
        assert error["type"] == "invalid_request_error"
        assert "%00" in error["message"]


def test_the_try_page_script_gets_json(client, card):
    response = client.get("/models/facebook/a%00b/try", HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_characters"


def test_addresses_without_a_nul_are_untouched(client, card):
    assert client.get("/models/facebook/detr-resnet-50").status_code == 200
    assert client.get("/models/facebook/nope").status_code == 404
    assert client.get("/models?q=%C3%A9%F0%9F%99%82").status_code == 200


# --- a price in the admin's box ------------------------------------------------------------
# Django's NumberInput shows str(Decimal): a saved price of $0.0000000005 came back in the
# route's box as "5E-10", and 0.0000001 as "1.000E-7" (Chromium shows it as typed).
@pytest.mark.parametrize(
    ("price", "shown"),
    [("5e-10", "0.0000000005"), ("0.0000001", "0.0000001"), ("1E+2", "100"), ("0", "0")],
)
def test_a_price_is_in_its_admin_box_as_written(staff_client, price, shown):
    route = factories.route(price=Decimal(price))
    for url in (
        reverse("admin:catalog_priceroute_change", args=[route.pk]),
        reverse("admin:catalog_modelcard_change", args=[route.card_id]),
    ):
        page = staff_client.get(url).content.decode()
        boxes = re.findall(r'<input type="number" name="[\w-]*price"[^>]*>', page)
        boxes = [box for box in boxes if "__prefix__" not in box]  # the "add another" form
        assert boxes
        assert all(f'value="{shown}"' in box for box in boxes), boxes
