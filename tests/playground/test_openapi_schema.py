"""/v1/openapi.json is a valid OpenAPI 3 document that declares what a client generator
needs: every body the inference calls accept, every status they answer, and the headers
carrying cost, limits and retry hints."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from drf_spectacular.validation import validate_schema

from playground.failures import FAILURES
from playground.options import FORM_FIELDS, JSON_FIELDS

INFERENCE_STATUSES = {"200", "202", "400", "401", "402", "403", "404", "409", "410", "413"}
INFERENCE_STATUSES |= {"415", "422", "429", "500", "502", "503"}
ERROR = {"$ref": "#/components/schemas/Error"}


@pytest.fixture
def schema(client):
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_the_schema_is_valid_openapi(schema, tmp_path):
    validate_schema(schema)  # raises on any violation of the OpenAPI 3 meta-schema
    # Generated with no warning either: a warning is a view drf-spectacular had to guess.
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml")
    )


@pytest.mark.parametrize("route", ["inference", "detections"])
def test_inference_calls_declare_bodies_statuses_headers_and_parameters(schema, route):
    operation = schema["paths"][f"/v1/{route}/{{model_id}}"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {
        "application/json",
        "multipart/form-data",
        "image/*",
        "application/octet-stream",
    }
    json_body = schema["components"]["schemas"]["InferenceRequest"]
    assert json_body["properties"]["inputs"] == {
        "type": "string",
        "format": "byte",
        "description": json_body["properties"]["inputs"]["description"],
    }
    upload = schema["components"]["schemas"]["InferenceUpload"]
    assert upload["properties"]["image"]["format"] == "binary"
    # Every field the parsers take (an unknown one is a 400): a generated client can send it.
    assert set(json_body["properties"]) == JSON_FIELDS
    assert set(upload["properties"]) == FORM_FIELDS
    assert content["image/*"]["schema"] == {"type": "string", "format": "binary"}

    responses = operation["responses"]
    assert set(responses) >= INFERENCE_STATUSES
    # A sync call answers a failed job's status (playground/failures.py): each is declared.
    assert {str(failure.status) for failure in FAILURES.values()} <= set(responses)
    for status in INFERENCE_STATUSES - {"200", "202"}:
        assert responses[status]["content"]["application/json"]["schema"] == ERROR, status
    assert responses["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DetectionJob"
    }
    assert {"X-Vitrine-Job-Id", "X-Vitrine-Cost", "X-Vitrine-Balance", "RateLimit-Remaining"} <= (
        set(responses["200"]["headers"])
    )
    assert "Location" in responses["202"]["headers"]
    assert "Retry-After" in responses["429"]["headers"]
    assert "Retry-After" in responses["503"]["headers"]
    query = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
    assert {"threshold", "route", "dry_run", "webhook"} <= query
    assert ("box_format" in query) == (route == "detections")


def test_inference_200_is_the_bare_hugging_face_list_or_a_quote(schema):
    components = schema["components"]["schemas"]
    one_of = components["InferenceResult"]["oneOf"]
    assert {"type": "array", "items": {"$ref": "#/components/schemas/HfDetection"}} in one_of
    assert {"$ref": "#/components/schemas/Quote"} in one_of
    assert set(components["HfDetection"]["required"]) == {"label", "score", "box"}
    box = components["HfBox"]["properties"]
    assert {name: field["type"] for name, field in box.items()} == dict.fromkeys(
        ["xmin", "ymin", "xmax", "ymax"], "integer"
    )


def test_jobs_declare_their_statuses_and_box_format(schema):
    retrieve = schema["paths"]["/v1/jobs/{job_id}"]["get"]
    assert {"200", "400", "401", "404", "429"} <= set(retrieve["responses"])
    assert "box_format" in {p["name"] for p in retrieve["parameters"]}
    cancel = schema["paths"]["/v1/jobs/{job_id}"]["delete"]
    assert {"200", "401", "404", "409"} <= set(cancel["responses"])


def test_the_schema_is_built_once_and_again_after_a_settings_change(client, settings, monkeypatch):
    """Built per request it cost ~60 ms of CPU and 115 KB for any anonymous client."""
    from catalog.api_docs import SchemaView

    SchemaView._built.clear()
    generator = SchemaView.generator_class
    built = []
    get_schema = generator.get_schema
    monkeypatch.setattr(
        generator, "get_schema", lambda self, **kw: built.append(1) or get_schema(self, **kw)
    )
    first, second = client.get("/v1/openapi.json"), client.get("/v1/openapi.json")
    assert first.content == second.content and len(built) == 1
    # Descriptions may quote settings (limits, waits): a change builds it anew.
    settings.VITRINE_HF_WAIT = settings.VITRINE_HF_WAIT + 1
    assert client.get("/v1/openapi.json").content == first.content and len(built) == 2


def test_the_inference_bodies_are_closed_as_the_server_refuses_other_fields(schema):
    """Each body lists exactly the fields the server takes and says no other is allowed:
    the server answers any other 400 unknown_parameter, and the schema said nothing of it
    (schemathesis's ST202 in session 46's probe)."""
    from playground.options import JSON_PARAMETERS

    components = schema["components"]["schemas"]
    for name, fields in [
        ("InferenceRequest", JSON_FIELDS),
        ("InferenceParameters", JSON_PARAMETERS),
        ("InferenceUpload", FORM_FIELDS),
    ]:
        assert components[name]["additionalProperties"] is False, name
        assert set(components[name]["properties"]) == fields, name
