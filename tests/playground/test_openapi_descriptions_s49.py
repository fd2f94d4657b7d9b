"""What /v1/openapi.json (and /docs/api, which renders it) tells API users about each
operation: a description written for them, never a mixin's or a module's docstring, and no
internal file path in any description (session 49's probe: four operations read "Adds the
admitted call's `RateLimit-*` headers to its response, whatever it is.")."""

from __future__ import annotations

import inspect
import re

import pytest

from playground import limits

# An internal module path or file ("playground/quote.py", "catalog/") or reStructuredText's
# double backticks, which only the code's docstrings use.
INTERNAL = re.compile(r"\.py\b|\b(?:playground|catalog|billing|config)/|``")
METHODS = {"get", "post", "put", "patch", "delete"}


# Components whose descriptions come from serializers outside this change
# (playground/openapi.py's QuoteSerializer, playground/serializers.py's JobSerializer).
def _mixin_docs() -> set[str]:
    docs = set()
    for _, obj in inspect.getmembers(limits, inspect.isclass):
        if obj.__name__.endswith("Mixin") and obj.__doc__:
            docs.add(inspect.cleandoc(obj.__doc__).strip())
    return docs


@pytest.fixture
def schema(client):
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200
    return response.json()


def _operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield f"{method.upper()} {path}", operation


def test_every_operation_is_described_for_api_users(schema):
    mixin_docs = _mixin_docs()
    assert mixin_docs  # RateLimitHeadersMixin's, which the probe found in four operations
    operations = dict(_operations(schema))
    assert {"POST /v1/inference/{model_id}", "DELETE /v1/jobs/{job_id}"} <= set(operations)
    for name, operation in operations.items():
        description = operation.get("description", "").strip()
        assert description, name
        assert operation.get("summary", "").strip(), name
        assert description not in mixin_docs, name
        assert "RateLimit-*` headers to its response" not in description, name
        assert not INTERNAL.search(description), (name, description)


def test_component_descriptions_name_no_internal_path(schema):
    for name, component in schema["components"]["schemas"].items():
        assert not INTERNAL.search(component.get("description", "")), name
