"""/v1/models: the OpenAI models-list shape, exact prices, filters, errors, query counts."""

from __future__ import annotations

import datetime
import json
import re
import urllib.request
from decimal import Decimal

import pytest
from django.contrib.staticfiles import finders
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.http import Http404
from django.utils import timezone
from openai import NotFoundError, OpenAI
from rest_framework import exceptions

from catalog import errors
from catalog.models import ModelCard, Organisation, PriceRoute
from tests import factories

SEEDED_IDS = [
    "facebook/detr-resnet-50",
    "microsoft/conditional-detr-resnet-50",
    "PekingU/rtdetr_r50vd",
    "hustvl/yolos-tiny",
]
ERROR_KEYS = {"message", "type", "code", "param"}


@pytest.fixture
def seeded(db):
    call_command("seed_catalog", verbosity=0)


def assert_error_shape(response, *, status: int, type: str, code: str) -> dict:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    assert set(body["error"]) >= ERROR_KEYS
    assert (body["error"]["type"], body["error"]["code"]) == (type, code)
    return body["error"]


# --- shapes and prices -------------------------------------------------------------------
def test_list_holds_every_published_seed_model_in_openai_shape(client, seeded):
    response = client.get("/v1/models")

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == SEEDED_IDS
    for model in body["data"]:
        assert model["object"] == "model"
        assert isinstance(model["created"], int)
        assert model["owned_by"] == model["id"].split("/")[0]


def test_retrieve_detr_in_full(client, seeded):
    card = ModelCard.objects.by_model_id("facebook/detr-resnet-50").get()

    response = client.get("/v1/models/facebook/detr-resnet-50")

    assert response.status_code == 200
    assert response.json() == {
        "id": "facebook/detr-resnet-50",
        "object": "model",
        "created": 1_588_291_200,  # published_on 2020-05-01 (the weights, with the paper)
        "owned_by": "facebook",
        "name": "DETR ResNet-50",
        "organisation": {"name": "Meta", "slug": "facebook", "url": "https://ai.meta.com/"},
        "task": "object-detection",
        "modalities": ["image"],
        "status": "live",
        "deprecation_date": None,
        "sunset_date": None,
        "replacement": None,
        "summary": card.summary,
        "license": "Apache-2.0",
        "open_weight": True,
        "parameters": 41_000_000,
        "pricing": [
            {
                "route": "vitrine",
                "provider": "Vitrine",
                "unit": "image",
                "price": "0.0002",
                "price_per_1k": "0.2",
                "price_with_fee": "0.00021",
                "estimated": False,
                "beta": False,
                "byok": False,
            },
            {
                "route": "cloudflare",
                "provider": "Cloudflare Workers AI",
                "unit": "request",
                "price": "0.0000075",
                "price_per_1k": "0.0075",
                "price_with_fee": None,  # BYOK: paid to Cloudflare, no fee
                "estimated": False,
                "beta": True,
                "byok": True,
            },
        ],
        "links": {
            "html": "http://testserver/models/facebook/detr-resnet-50",
            "api": "http://testserver/v1/models/facebook/detr-resnet-50",
        },
    }


@pytest.mark.parametrize(
    ("model_id", "price", "per_1k", "with_fee", "estimated"),
    [
        ("facebook/detr-resnet-50", "0.0002", "0.2", "0.00021", False),
        ("microsoft/conditional-detr-resnet-50", "0.0002", "0.2", "0.00021", True),
        ("PekingU/rtdetr_r50vd", "0.000047", "0.047", "0.00004935", True),
        ("hustvl/yolos-tiny", "0.0001", "0.1", "0.000105", False),
    ],
)
def test_own_route_prices_are_exact_strings(
    client, seeded, model_id, price, per_1k, with_fee, estimated
):
    raw = client.get(f"/v1/models/{model_id}").content.decode()
    own = json.loads(raw)["pricing"][0]

    assert (own["route"], own["unit"]) == ("vitrine", "image")
    assert (own["price"], own["price_per_1k"], own["price_with_fee"]) == (price, per_1k, with_fee)
    assert own["estimated"] is estimated
    # Strings on the wire, never JSON numbers (a float cannot hold 0.0000075).
    assert f'"price":"{price}"' in raw


@pytest.mark.parametrize(
    ("model_id", "expected"),
    [
        # published_on only: 2022-09-01 00:00 UTC
        ("microsoft/conditional-detr-resnet-50", 1_661_990_400),
        ("PekingU/rtdetr_r50vd", 1_714_521_600),  # 2024-05-01
    ],
)
def test_created_is_the_publication_date_without_a_launch_date(client, seeded, model_id, expected):
    assert client.get(f"/v1/models/{model_id}").json()["created"] == expected


def test_created_prefers_the_launch_date(client, db):
    card = factories.card(
        launch_date=datetime.date(2025, 1, 2), published_on=datetime.date(2020, 1, 1)
    )

    response = client.get(f"/v1/models/{card.model_id}")

    assert response.json()["created"] == 1_735_776_000  # 2025-01-02 00:00 UTC


def test_inactive_routes_are_not_offered(client, db):
    card = factories.card()
    factories.route(card=card, slug="vitrine", price=Decimal("0.0002"))
    factories.route(card=card, slug="old", provider="Old", price=Decimal("0.01"), is_active=False)

    pricing = client.get(f"/v1/models/{card.model_id}").json()["pricing"]

    assert [route["route"] for route in pricing] == ["vitrine"]


# --- retrieval by id ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    ["/v1/models/facebook/detr-resnet-50", "/v1/models/facebook%2Fdetr-resnet-50"],
)
def test_retrieve_by_raw_or_percent_encoded_id(client, seeded, path):
    response = client.get(path)

    assert response.status_code == 200
    assert response.json()["id"] == "facebook/detr-resnet-50"


@pytest.mark.parametrize(
    "hide",
    [
        {"is_published": False},
        {"published_at": timezone.now() + datetime.timedelta(days=1)},
    ],
)
def test_unpublished_cards_are_neither_listed_nor_retrievable(client, db, hide):
    shown = factories.card()
    hidden = factories.card(**hide)

    listed = [m["id"] for m in client.get("/v1/models").json()["data"]]
    response = client.get(f"/v1/models/{hidden.model_id}")

    assert listed == [shown.model_id]
    assert_error_shape(response, status=404, type="not_found", code="model_not_found")


# --- filters ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", SEEDED_IDS),
        ("?status=live", ["facebook/detr-resnet-50", "hustvl/yolos-tiny"]),
        ("?status=coming_soon", ["microsoft/conditional-detr-resnet-50", "PekingU/rtdetr_r50vd"]),
        ("?status=retired", []),
        ("?task=object-detection", SEEDED_IDS),
        ("?task=image-classification", []),
        ("?task=object-detection&status=live", ["facebook/detr-resnet-50", "hustvl/yolos-tiny"]),
    ],
)
def test_list_filters(client, seeded, query, expected):
    response = client.get(f"/v1/models{query}")

    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == expected


@pytest.mark.parametrize(
    ("query", "param"),
    [("?status=bogus", "status"), ("?task=not%20a%20slug", "task")],
)
def test_invalid_filter_is_a_400_in_the_error_shape(client, seeded, query, param):
    error = assert_error_shape(
        client.get(f"/v1/models{query}"),
        status=400,
        type="invalid_request_error",
        code="invalid_value",
    )
    assert error["param"] == param
    assert error["message"].startswith(f"Invalid value for '{param}': ")


@pytest.mark.parametrize(
    ("path", "known"),
    [("/v1/models?statsu=live", "status, task"), ("/v1/models/hustvl/yolos-tiny?expand=1", "none")],
)
def test_an_unknown_query_parameter_is_refused_not_ignored(client, seeded, path, known):
    # `?statsu=live` listed every model as though the filter had matched.
    error = assert_error_shape(
        client.get(path), status=400, type="invalid_request_error", code="unknown_parameter"
    )
    name = path.split("?")[1].split("=")[0]
    assert error["param"] == name
    assert error["message"] == f"Unknown query parameter '{name}'; known: {known}."


# --- one error shape ----------------------------------------------------------------------
def test_unknown_model_is_a_404_in_openai_error_shape(client, seeded):
    response = client.get("/v1/models/acme/nope")

    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": errors.MODEL_NOT_FOUND.format(model_id="acme/nope"),
            "type": "not_found",
            "code": "model_not_found",
            "param": None,
        }
    }


@pytest.mark.parametrize(
    ("method", "path", "status", "type", "code"),
    [
        ("get", "/v1/models/facebook%2Fnope", 404, "not_found", "model_not_found"),
        ("get", "/v1/models/facebook", 404, "not_found", "model_not_found"),
        ("get", "/v1/models/facebook/detr-resnet-50/extra", 404, "not_found", "model_not_found"),
        ("get", "/v1/models/", 404, "not_found", "endpoint_not_found"),
        ("get", "/v1/nope", 404, "not_found", "endpoint_not_found"),
        ("post", "/v1/nope", 404, "not_found", "endpoint_not_found"),
        ("post", "/v1/models", 405, "invalid_request_error", "method_not_allowed"),
        ("put", "/v1/models", 405, "invalid_request_error", "method_not_allowed"),
        (
            "delete",
            "/v1/models/facebook/detr-resnet-50",
            405,
            "invalid_request_error",
            "method_not_allowed",
        ),
    ],
)
def test_every_api_error_has_the_same_json_shape(client, seeded, method, path, status, type, code):
    response = getattr(client, method)(path)

    error = assert_error_shape(response, status=status, type=type, code=code)
    if code == "method_not_allowed":
        assert error["message"] == errors.METHOD_NOT_ALLOWED.format(
            method=method.upper(), path=path
        )
        assert response["Allow"] == "GET, HEAD, OPTIONS"
    if code == "endpoint_not_found":
        assert error["message"] == errors.ENDPOINT_NOT_FOUND.format(
            method=method.upper(), path=path
        )


@pytest.mark.parametrize(
    ("exc", "status", "type", "code"),
    [
        (exceptions.ParseError(), 400, "invalid_request_error", "parse_error"),
        (
            exceptions.UnsupportedMediaType("text/csv"),
            415,
            "invalid_request_error",
            "unsupported_media_type",
        ),
        (exceptions.NotAuthenticated(), 401, "authentication_error", "not_authenticated"),
        (exceptions.PermissionDenied(), 403, "permission_error", "permission_denied"),
        (PermissionDenied(), 403, "permission_error", "permission_denied"),
        (Http404(), 404, "not_found", "not_found"),
        (exceptions.Throttled(wait=7), 429, "rate_limit_error", "throttled"),
        (
            errors.ApplicationError("Top up.", "insufficient_credits", 402, extra={"balance": "0"}),
            402,
            "invalid_request_error",
            "insufficient_credits",
        ),
    ],
)
def test_handler_renders_drf_and_domain_errors_in_one_shape(exc, status, type, code):
    response = errors.api_exception_handler(exc, {"request": None})

    assert response.status_code == status
    assert list(response.data) == ["error"]
    assert set(response.data["error"]) >= ERROR_KEYS
    assert (response.data["error"]["type"], response.data["error"]["code"]) == (type, code)
    if status == 429:
        assert response["Retry-After"] == "7"


def test_handler_leaves_bugs_to_django():
    assert errors.api_exception_handler(ZeroDivisionError(), {"request": None}) is None


# --- the official OpenAI client, over real HTTP -------------------------------------------
@pytest.fixture
def seeded_live(transactional_db, live_server):
    call_command("seed_catalog", verbosity=0)
    return live_server


def test_official_openai_client_lists_and_retrieves(seeded_live):
    client = OpenAI(base_url=seeded_live.url + "/v1", api_key="x", max_retries=0, timeout=10)

    listed = [model.id for model in client.models.list()]
    model = client.models.retrieve("facebook/detr-resnet-50")

    assert sorted(listed) == sorted(SEEDED_IDS)
    assert model.id == "facebook/detr-resnet-50"
    assert model.owned_by == "facebook"


def test_official_openai_client_reads_our_404(seeded_live):
    client = OpenAI(base_url=seeded_live.url + "/v1", api_key="x", max_retries=0, timeout=10)

    with pytest.raises(NotFoundError) as caught:
        client.models.retrieve("acme/nope")

    assert caught.value.code == "model_not_found"
    assert caught.value.type == "not_found"


def test_official_openai_client_reads_lifecycle_and_our_extra_fields(seeded_live):
    """What the openai package can honestly do against a detection catalogue: read each
    model's status, sunset and replacement (extra fields on its Model object) and the
    RFC 9745 / 8594 headers of a deprecated one (``with_raw_response``); other operations
    on a model answer errors it raises as its own types."""
    from openai import APIStatusError

    successor = ModelCard.objects.get(slug="yolos-tiny")
    ModelCard.objects.filter(slug="detr-resnet-50").update(
        status="deprecated", deprecation_date="2026-11-01", sunset_date="2027-01-01",
        replacement=successor,
    )  # fmt: skip
    client = OpenAI(base_url=seeded_live.url + "/v1", api_key="x", max_retries=0, timeout=10)

    raw = client.models.with_raw_response.retrieve("facebook/detr-resnet-50")
    model = raw.parse()

    assert raw.headers["Deprecation"] == "@1793491200"
    assert raw.headers["Sunset"] == "Fri, 01 Jan 2027 00:00:00 GMT"
    assert (
        f'<{seeded_live.url}/v1/models/hustvl/yolos-tiny>; rel="successor-version"'
        in (raw.headers["Link"])
    )
    assert (model.status, model.sunset_date) == ("deprecated", "2027-01-01")
    assert model.replacement["id"] == "hustvl/yolos-tiny"
    listed = {m.id: m for m in client.models.list()}
    assert listed["hustvl/yolos-tiny"].status == "live" and listed["hustvl/yolos-tiny"].pricing
    # Deleting a model is OpenAI's fine-tune operation: not ours, a 405 in the one shape.
    with pytest.raises(APIStatusError) as caught:
        client.models.delete("facebook/detr-resnet-50")
    assert caught.value.status_code == 405
    assert caught.value.code == "method_not_allowed"


@pytest.mark.parametrize("model_path", ["facebook/detr-resnet-50", "facebook%2Fdetr-resnet-50"])
def test_percent_encoded_slash_over_real_http(seeded_live, model_path):
    with urllib.request.urlopen(f"{seeded_live.url}/v1/models/{model_path}", timeout=10) as resp:
        body = json.load(resp)

    assert body["id"] == "facebook/detr-resnet-50"


# --- constant number of queries -----------------------------------------------------------
LIST_QUERIES = 2  # cards joined to organisation and task; their active routes
DETAIL_QUERIES = 2


def make_cards(count: int) -> list[ModelCard]:
    orgs = Organisation.objects.bulk_create(
        Organisation(name=f"Org {i}", slug=f"bulk-org-{i}") for i in range(5)
    )
    task = factories.task()
    cards = ModelCard.objects.bulk_create(
        ModelCard(
            organisation=orgs[i % len(orgs)],
            slug=f"model-{i}",
            display_name=f"Model {i}",
            task=task,
            summary="A detector.",
            status=ModelCard.Status.LIVE,
            modalities=["image"],
        )
        for i in range(count)
    )
    PriceRoute.objects.bulk_create(
        PriceRoute(card=card, slug=slug, provider=slug, price=Decimal("0.0002"))
        for card in cards
        for slug in ("vitrine", "other")
    )
    return cards


@pytest.mark.parametrize("count", [5, 1000])
def test_list_query_count_does_not_grow_with_cards(client, db, django_assert_num_queries, count):
    make_cards(count)

    with django_assert_num_queries(LIST_QUERIES):
        response = client.get("/v1/models")

    data = response.json()["data"]
    assert len(data) == count
    assert all(len(model["pricing"]) == 2 for model in data)


@pytest.mark.parametrize("count", [5, 1000])
def test_detail_query_count(client, db, django_assert_num_queries, count):
    make_cards(count)

    with django_assert_num_queries(DETAIL_QUERIES):
        response = client.get("/v1/models/bulk-org-3/model-3")

    assert response.json()["owned_by"] == "bulk-org-3"
    assert len(response.json()["pricing"]) == 2


# --- OpenAPI schema and docs --------------------------------------------------------------
def test_openapi_schema_is_json_and_names_the_responses(client, db):
    response = client.get("/v1/openapi.json")

    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Vitrine API"
    assert {"/v1/models", "/v1/models/{model_id}"} <= set(schema["paths"])
    retrieve = schema["paths"]["/v1/models/{model_id}"]["get"]["responses"]
    ok_ref = retrieve["200"]["content"]["application/json"]["schema"]["$ref"]
    error_ref = retrieve["404"]["content"]["application/json"]["schema"]["$ref"]
    assert (ok_ref, error_ref) == ("#/components/schemas/Model", "#/components/schemas/Error")
    route = schema["components"]["schemas"]["ModelPriceRoute"]["properties"]
    assert route["price"]["type"] == "string"


def test_docs_page_uses_only_local_assets(client, db):
    response = client.get("/docs/api")

    assert response.status_code == 200
    html = response.content.decode()
    # What the page loads (scripts, styles, icons, fonts), not the site nav's links.
    assets = re.findall(r'<(?:script|link)\b[^>]*\b(?:src|href)="([^"]+)"', html)
    assert assets, html
    assert not [url for url in assets if re.match(r"(https?:)?//", url)]
    assert "cdn." not in html
    for url in assets:
        if url == "/favicon.ico":  # served by a view, from the same static file
            assert client.get(url).status_code == 200
            continue
        if url == "/docs/api?script=":  # Swagger UI's start-up script, a file the view serves
            script = client.get(url)
            assert script.status_code == 200
            assert "javascript" in script["Content-Type"], script["Content-Type"]
            continue
        assert url.startswith("/static/")
        assert finders.find(url.removeprefix("/static/")), url
    assert "/v1/openapi.json" in html


@pytest.mark.parametrize(
    ("query", "param"), [("?task=", "task"), ("?status=live&status=beta", "status")]
)
def test_an_empty_or_repeated_filter_is_a_400(client, seeded, query, param):
    error = assert_error_shape(
        client.get(f"/v1/models{query}"), status=400, type="invalid_request_error",
        code="invalid_value",
    )  # fmt: skip
    assert error["param"] == param
