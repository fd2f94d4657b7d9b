"""What Swagger UI's "Try it out" (/docs/api) sends for the inference calls, as offered, is
a call the API takes (session 49's outside probe).

"Try it out" fills each multipart field with its schema's ``example``, else its ``default``,
else a value it makes up: "string" for a string, 1 for the threshold (0..1). It offered
``webhook=string`` (400 invalid_webhook) and ``threshold=1`` (no box kept). A JSON body is
offered as the media type's example, else one made up from the schema the same way. Seen
with the Swagger UI 5 bundle the site serves (drf-spectacular-sidecar), in Chromium.
"""

from __future__ import annotations

import base64
import io
import json
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from billing.services.keys import api_key_create
from billing.services.topups import credit_grant
from playground.models import Job
from tests import factories

pytestmark = pytest.mark.django_db
MADE_UP = {"string": "string", "number": 1, "integer": 0, "boolean": True}


def offered(schema: dict):
    """The value "Try it out" puts in a field of this schema."""
    for key in ("example", "default"):
        if key in schema:
            return schema[key]
    return MADE_UP[schema["type"]]


def resolve(schema: dict, components: dict) -> dict:
    if "$ref" in schema:
        return components[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (200, 40, 120)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def api(client, settings, tmp_path, other_user):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_SYNC_WAIT = 0  # no worker here: the call answers 202 with its job
    card = factories.card()
    factories.route(card=card, price=Decimal("0.0002"))
    credit_grant(user=other_user, amount=Decimal("1"), reason="test")
    _, key = api_key_create(user=other_user, name="swagger")
    schema = client.get("/v1/openapi.json").json()
    return card, {"Authorization": f"Bearer {key}"}, schema


@pytest.mark.parametrize("route", ["inference", "detections"])
def test_the_offered_multipart_form_is_a_call_the_api_takes(client, api, route):
    card, auth, schema = api
    body = schema["paths"][f"/v1/{route}/{{model_id}}"]["post"]["requestBody"]["content"]
    form = resolve(body["multipart/form-data"]["schema"], schema["components"]["schemas"])
    fields = {
        name: offered(prop)
        for name, prop in form["properties"].items()
        if prop.get("format") != "binary"
    }
    assert fields == {"threshold": 0.5, "webhook": ""}
    # As Swagger UI sends them: every field, the empty one too, and the picked file.
    data = {name: str(value) for name, value in fields.items()}
    data["image"] = SimpleUploadedFile("photo.jpg", jpeg(), content_type="image/jpeg")
    answer = client.post(f"/v1/{route}/{card.model_id}", data=data, headers=auth)
    assert answer.status_code == 202, answer.content
    job = Job.objects.get(pk=answer.json()["id"])
    assert job.parameters["threshold"] == 0.5
    assert answer.json()["webhook"] is None


@pytest.mark.parametrize("route", ["inference", "detections"])
def test_the_offered_json_body_is_a_call_the_api_takes(client, api, route):
    card, auth, schema = api
    body = schema["paths"][f"/v1/{route}/{{model_id}}"]["post"]["requestBody"]["content"]
    (example,) = body["application/json"]["examples"].values()
    sent = example["value"]
    assert "webhook" not in sent
    Image.open(io.BytesIO(base64.b64decode(sent["inputs"]))).verify()  # a real image
    answer = client.post(
        f"/v1/{route}/{card.model_id}",
        data=json.dumps(sent),
        content_type="application/json",
        headers=auth,
    )
    assert answer.status_code == 202, answer.content
    assert answer.json()["threshold"] == 0.5
