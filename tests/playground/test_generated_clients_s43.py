"""What the API really answers is typed in /v1/openapi.json down to every nested object, so a
generated client (openapi-python-client, openapi-typescript) gets fields, not a bag.

Session 43's outside probe generated clients from the published schema: the quote's
``image``, ``resize``, ``price_version`` and ``spend_cap`` were declared as free-form objects
(``additionalProperties: {}``), so openapi-typescript typed ``quote.image.width`` as
``unknown`` (``tsc --strict`` refused ``const w: number = quote.image.width``) and
openapi-python-client kept every field in ``additional_properties``."""

from __future__ import annotations

import datetime
import io
from decimal import Decimal

import jsonschema
import pytest
import requests
from PIL import Image

from billing.services.keys import api_key_create
from billing.services.topups import credit_grant
from tests import factories


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (10, 200, 90)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _resolve(schema: dict, document: dict) -> dict:
    while "$ref" in schema:
        node = document
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    if "allOf" in schema and len(schema["allOf"]) == 1:  # a nullable $ref
        return _resolve(schema["allOf"][0], document)
    return schema


def _untyped(value, schema: dict, document: dict, where: str) -> list[str]:
    """Every place in ``value`` whose schema does not name its fields or their type."""
    schema = _resolve(schema, document)
    found = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        if not properties and extra in (None, True, {}):
            return [f"{where}: an object of unnamed, untyped fields {sorted(value)}"]
        for name, item in value.items():
            if name in properties:
                found += _untyped(item, properties[name], document, f"{where}.{name}")
            elif isinstance(extra, dict) and extra:
                found += _untyped(item, extra, document, f"{where}.{name}")
            else:
                found.append(f"{where}.{name}: not declared")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += _untyped(item, schema["items"], document, f"{where}[{index}]")
    return found


def _nullable(schema):
    """OpenAPI 3.0's ``nullable`` as JSON Schema, for jsonschema."""
    if isinstance(schema, list):
        return [_nullable(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: _nullable(value) for key, value in schema.items()}
    if schema.pop("nullable", False):
        return {"anyOf": [schema, {"type": "null"}]}
    return schema


@pytest.mark.parametrize("route", ["inference", "detections"])
def test_a_quote_is_typed_to_its_last_field_in_the_published_schema(
    transactional_db, live_server, settings, tmp_path, other_user, runtime_checkpoint, route
):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card(checkpoint_local_dir=str(runtime_checkpoint("detr")))
    factories.route(card=card, price=Decimal("0.0002"))
    credit_grant(user=other_user, amount=Decimal("1"), reason="test")
    # A key with a monthly cap, so the quote's spend_cap is an object, not null.
    _, key = api_key_create(user=other_user, name="capped", monthly_spend_cap=Decimal("5"))
    document = requests.get(f"{live_server.url}/v1/openapi.json", timeout=30).json()

    response = requests.post(
        f"{live_server.url}/v1/{route}/{card.model_id}?dry_run=true",
        data=_jpeg(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg"},
        timeout=60,
    )

    assert response.status_code == 200, response.text
    quote = response.json()
    assert quote["object"] == "quote"
    assert quote["resize"] is not None and quote["spend_cap"] is not None
    schema = {"$ref": "#/components/schemas/Quote"}
    assert _untyped(quote, schema, document, "quote") == []
    jsonschema.validate(
        quote,
        {
            **_nullable(document["components"]["schemas"]["Quote"]),
            "components": _nullable(document["components"]),
        },
    )


@pytest.mark.parametrize("route", ["inference", "detections"])
def test_the_fields_an_error_carries_are_declared_on_error_body(
    transactional_db, live_server, other_user, route
):
    """402's ``balance`` and ``cost`` (and 400 invalid_value's ``details``) were sent but not
    in ``ErrorBody``: openapi-typescript closed the type without them, so reading
    ``error.balance`` did not compile without a cast."""
    card = factories.card()
    factories.route(card=card, price=Decimal("0.0002"))
    _, key = api_key_create(user=other_user, name="empty wallet")
    document = requests.get(f"{live_server.url}/v1/openapi.json", timeout=30).json()
    error = {"$ref": "#/components/schemas/Error"}

    paid = requests.post(
        f"{live_server.url}/v1/{route}/{card.model_id}",
        data=_jpeg(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg"},
        timeout=60,
    )
    listed = requests.get(f"{live_server.url}/v1/models?status=bogus", timeout=30)

    assert paid.status_code == 402, paid.text
    assert {"balance", "cost"} <= set(paid.json()["error"])
    assert _untyped(paid.json(), error, document, "402") == []
    assert listed.status_code == 400 and "details" in listed.json()["error"]
    # details is DRF's validation detail, per field: declared, its shape left open.
    assert "details" in document["components"]["schemas"]["ErrorBody"]["properties"]


def _undeclared_headers(document: dict, path: str, method: str, response) -> list[str]:
    declared = document["paths"][path][method]["responses"][str(response.status_code)]
    names = {name.lower() for name in declared.get("headers", {})}
    sent = [name.lower() for name in response.headers]
    watched = ("ratelimit-", "deprecation", "sunset", "link", "retry-after", "x-vitrine-")
    return [name for name in sent if name.startswith(watched) and name not in names]


def test_the_headers_a_refusal_carries_are_declared_for_its_status(
    transactional_db, live_server, other_user
):
    """A refused call is counted against the key's limits and says so (RateLimit-*), and a
    deprecated model's refusal carries its lifecycle headers; the schema declared them on
    200/202/429 only."""
    replacement = factories.card()
    card = factories.card(
        status="deprecated", sunset_date=datetime.date(2099, 1, 1), replacement=replacement
    )
    factories.route(card=card, price=Decimal("0.0002"))
    _, key = api_key_create(user=other_user, name="empty wallet")
    auth = {"Authorization": f"Bearer {key}"}
    document = requests.get(f"{live_server.url}/v1/openapi.json", timeout=30).json()

    paid = requests.post(
        f"{live_server.url}/v1/detections/{card.model_id}",
        data=_jpeg(),
        headers={**auth, "Content-Type": "image/jpeg"},
        timeout=60,
    )
    missing = requests.get(
        f"{live_server.url}/v1/jobs/00000000-0000-0000-0000-000000000000", headers=auth, timeout=30
    )

    assert paid.status_code == 402, paid.text
    assert "RateLimit-Remaining" in paid.headers and "Deprecation" in paid.headers
    assert _undeclared_headers(document, "/v1/detections/{model_id}", "post", paid) == []
    assert missing.status_code == 404 and "RateLimit-Remaining" in missing.headers
    assert _undeclared_headers(document, "/v1/jobs/{job_id}", "get", missing) == []


def _enum(document: dict, component: str, field: str) -> list | None:
    schema = document["components"]["schemas"][component]["properties"][field]
    for option in [schema, *schema.get("allOf", []), *schema.get("oneOf", [])]:
        values = _resolve(option, document).get("enum")
        if values and values != [None]:
            return values
    return None


def test_the_job_and_quote_states_a_client_switches_on_are_enums(
    transactional_db, live_server, settings, tmp_path, other_user
):
    """webhook.status, charge_status and the quote's covered_by were plain strings with their
    values in prose: a generated client typed them ``str``, not the four, three or two values
    the server sends."""
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    from playground.models import WebhookDelivery

    _, key = api_key_create(user=other_user, name="reader")
    job = factories.finished_run(
        card=factories.card(), image_bytes=_jpeg(), result=[], owner=other_user
    )
    WebhookDelivery.objects.create(
        job=job, url="https://example.com/hook", status=WebhookDelivery.Status.DELIVERED
    )
    document = requests.get(f"{live_server.url}/v1/openapi.json", timeout=30).json()

    resource = requests.get(
        f"{live_server.url}/v1/jobs/{job.pk}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ).json()

    assert _enum(document, "WebhookDelivery", "status") == [
        "waiting", "pending", "delivered", "failed",
    ]  # fmt: skip
    assert _enum(document, "DetectionJob", "charge_status") == ["reserved", "posted", "voided"]
    assert _enum(document, "Quote", "covered_by") == ["byok", "wallet"]
    assert resource["webhook"]["status"] == "delivered"
    jsonschema.validate(
        resource,
        {
            **_nullable(document["components"]["schemas"]["DetectionJob"]),
            "components": _nullable(document["components"]),
        },
    )
