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


@pytest.mark.parametrize("path", ["/v1/models", JOB, "/v1/inference/acme/nope"])
def test_an_accept_header_refusing_json_is_a_406_that_says_what_to_send(client, path):
    method = client.post if "inference" in path else client.get
    response = method(path, headers={"Accept": "application/xml"})
    assert response.status_code == 406
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("not_acceptable", "Accept")
    assert "application/json" in error["message"] and "application/xml" in error["message"]


def test_the_schema_declares_the_bounds_and_headers_the_server_holds_to(client, db):
    schema = client.get("/v1/openapi.json").json()
    paths = schema["paths"]

    def param(operation, name):
        return next(p for p in operation["parameters"] if p["name"] == name)

    job = paths["/v1/jobs/{job_id}"]["get"]
    assert param(job, "threshold")["schema"] | {} == {
        "type": "number", "format": "double", "minimum": 0, "maximum": 1
    }  # fmt: skip
    assert param(job, "job_id")["schema"] == {"type": "string", "format": "uuid"}
    listing = paths["/v1/jobs"]["get"]
    assert param(listing, "limit")["schema"] == {"type": "integer", "minimum": 1, "maximum": 100}
    inference = paths["/v1/inference/{model_id}"]["post"]
    assert param(inference, "threshold")["schema"]["maximum"] == 1
    for operation in (job, listing, inference, paths["/v1/models"]["get"]):
        assert "406" in operation["responses"]
    for headers in (
        paths["/v1/models/{model_id}"]["get"]["responses"]["200"]["headers"],
        inference["responses"]["200"]["headers"],
    ):
        assert {"Deprecation", "Sunset", "Link"} <= set(headers)
    assert "Preference-Applied" in inference["responses"]["202"]["headers"]


def test_a_model_id_with_a_trailing_slash_is_told_to_drop_it(client, db):
    response = client.get("/v1/models/acme/detr/")
    assert response.status_code == 404
    assert "end without a slash: 'acme/detr'" in response.json()["error"]["message"]
