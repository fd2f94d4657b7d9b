"""What the API answers before it asks for a key: a method it does not allow is a 405 with
Allow (with or without a key), OPTIONS is the Allow header and no body (DRF's default
described the view by its class name and docstring), and ``?format=`` is an unknown
parameter like any other (DRF's override took it as a renderer and answered 404)."""

from __future__ import annotations

import uuid

import pytest

JOB = f"/v1/jobs/{uuid.uuid4()}"


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/v1/models", "GET, HEAD, OPTIONS"),
        ("/v1/jobs", "GET, HEAD, OPTIONS"),
        (JOB, "GET, DELETE, HEAD, OPTIONS"),
        ("/v1/inference/acme/nope", "POST, OPTIONS"),
    ],
)
def test_options_is_the_allow_header_and_no_body_without_a_key(client, path, allow):
    response = client.options(path)
    assert response.status_code == 200
    assert response["Allow"] == allow
    assert response.content == b""


@pytest.mark.parametrize("method", ["patch", "put"])
def test_a_method_not_allowed_is_405_before_the_key_is_asked_for(client, method):
    response = getattr(client, method)(JOB)
    assert response.status_code == 405
    assert response["Allow"] == "GET, DELETE, HEAD, OPTIONS"
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("query", ["format=xml", "format=api", "format=json"])
def test_format_is_an_unknown_parameter(client, query):
    response = client.get(f"/v1/models?{query}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("unknown_parameter", "format")
