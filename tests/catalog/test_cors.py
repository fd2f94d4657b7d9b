"""The HTTP API answers browsers on other origins; the pages do not."""

from __future__ import annotations

import pytest

from catalog.cors import ALLOW_HEADERS

pytestmark = pytest.mark.django_db

ORIGIN = {"HTTP_ORIGIN": "https://app.example"}


def test_a_preflight_to_the_api_is_answered(client):
    response = client.options(
        "/v1/inference/facebook/detr-resnet-50",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
        **ORIGIN,
    )
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert response["Access-Control-Allow-Headers"] == "authorization, content-type"
    assert "Access-Control-Allow-Credentials" not in response
    # Asked for nothing (or for something that is not a list of header names): the API's own.
    for asked in ({}, {"HTTP_ACCESS_CONTROL_REQUEST_HEADERS": "x-a\r\nSet-Cookie: 1"}):
        response = client.options(
            "/v1/inference/facebook/detr-resnet-50",
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST", **asked, **ORIGIN,
        )  # fmt: skip
        assert "Authorization" in ALLOW_HEADERS
        assert response["Access-Control-Allow-Headers"] == ALLOW_HEADERS


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        # huggingface.js's, and the Cloudflare SDK's own headers beside the key.
        ("/hf/models/facebook/detr-resnet-50", "authorization, content-type, x-wait-for-model"),
        ("/client/v4/accounts/acct/ai/run/@cf/facebook/detr-resnet-50",
         "authorization, content-type, x-stainless-lang, x-stainless-retry-count"),
    ],
)  # fmt: skip
def test_the_drop_in_routes_answer_browsers_on_other_origins(client, url, headers):
    preflight = client.options(
        url, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS=headers, **ORIGIN,
    )  # fmt: skip
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "*"
    assert preflight["Access-Control-Allow-Headers"] == headers
    call = client.post(url, b"x", content_type="image/jpeg", **ORIGIN)
    assert call.status_code == 401 and call["Access-Control-Allow-Origin"] == "*"
    assert "X-Vitrine-Error-Code" in call["Access-Control-Expose-Headers"]


@pytest.mark.parametrize(
    ("url", "status"),
    [("/v1/models", 200), ("/v1/models/acme/nope", 404), ("/v1/nowhere", 404)],
)
def test_api_answers_errors_included_are_readable_cross_origin(client, url, status):
    response = client.get(url, **ORIGIN)
    assert response.status_code == status
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "X-Vitrine-Cost" in response["Access-Control-Expose-Headers"]


@pytest.mark.parametrize("url", ["/v1", "/hf", "/client/v4"])
def test_an_api_prefix_without_its_slash_is_readable_cross_origin(client, url):
    """The API's own JSON 404 answers these: a script that mistyped the base URL reads it
    (before, the browser hid it as a network error)."""
    response = client.get(url, **ORIGIN)
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response["Access-Control-Allow-Origin"] == "*"
    preflight = client.options(url, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET", **ORIGIN)
    assert preflight.status_code == 204 and preflight["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("url", ["/v1foo", "/hfx", "/client/v4x", "/client"])
def test_a_page_that_only_begins_like_an_api_prefix_sends_no_cors_headers(client, url):
    response = client.get(url, **ORIGIN)
    assert "Access-Control-Allow-Origin" not in response


def test_every_header_the_api_documents_is_readable_cross_origin():
    """X-Vitrine-Weights (untrained weights drew the boxes) was sent on every paid call
    and left out, so a browser script could not read it."""
    from catalog.cors import EXPOSE_HEADERS
    from playground.openapi import COST_HEADERS, RATE_LIMIT_HEADERS, RETRY_AFTER

    exposed = {h.strip().lower() for h in EXPOSE_HEADERS.split(",")}
    documented = {h.lower() for h in (*COST_HEADERS, *RATE_LIMIT_HEADERS, *RETRY_AFTER)}
    assert documented - exposed == set()


def test_a_browser_script_can_read_a_deprecated_models_lifecycle(client):
    from catalog.models import ModelCard
    from tests import factories

    card = factories.card()
    ModelCard.objects.filter(pk=card.pk).update(status="deprecated", sunset_date="2027-01-01")
    response = client.get(f"/v1/models/{card.model_id}", **ORIGIN)
    assert response["Sunset"] == "Fri, 01 Jan 2027 00:00:00 GMT"
    exposed = {h.strip() for h in response["Access-Control-Expose-Headers"].split(",")}
    assert {"Deprecation", "Sunset", "Link"} <= exposed


def test_an_unauthenticated_call_is_readable_cross_origin(client):
    response = client.post(
        "/v1/inference/facebook/detr-resnet-50", b"x", content_type="image/jpeg", **ORIGIN
    )
    assert response.status_code == 401
    assert response["Access-Control-Allow-Origin"] == "*"


def test_pages_send_no_cors_headers(client):
    response = client.get("/models", **ORIGIN)
    assert "Access-Control-Allow-Origin" not in response
    response = client.options("/models", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST", **ORIGIN)
    assert "Access-Control-Allow-Origin" not in response
