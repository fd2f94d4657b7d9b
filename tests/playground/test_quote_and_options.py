"""dry_run quotes, unknown options refused, and the model lifecycle on every endpoint,
over real HTTP (the live test server); the quote's resize against the real processors."""

from __future__ import annotations

import base64
import io
import json
from decimal import Decimal

import pytest
import requests
from django.conf import settings as django_settings
from PIL import Image

from billing.models import Charge, ProviderKey
from billing.services.keys import api_key_create
from billing.services.ledger import wallet_for
from billing.services.topups import credit_grant
from catalog.models import ModelCard
from playground.models import Job
from playground.runtime.fit import (
    processor_config,
    resize_mod_size,
    resized_size,
    rule_from_config,
)
from playground.runtime.weights import CheckpointSpec
from tests import factories

PRICE = Decimal("0.0002")


def jpeg(width=320, height=240) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 90)).save(buffer, format="JPEG")
    return buffer.getvalue()


# --- the resize a quote announces is the one the processor applies ---------------------------
SIZES = [(320, 240), (240, 320), (1000, 200), (200, 1000), (224, 224), (50, 40), (641, 479),
         (4000, 3000), (333, 1001)]  # fmt: skip


@pytest.mark.parametrize("family", ["detr", "yolos_tiny", "rt_detr"])
def test_the_quoted_resize_is_what_the_loaded_processor_produces(runtime_checkpoint, family):
    from transformers import AutoImageProcessor

    directory = runtime_checkpoint(family)
    processor = AutoImageProcessor.from_pretrained(str(directory), backend="pil")
    config = processor_config(CheckpointSpec(local_dir=str(directory)))
    rule = rule_from_config(config)
    mod = resize_mod_size(config.get("image_processor_type", ""))
    for width, height in SIZES:
        image = Image.new("RGB", (width, height), (200, 10, 10))
        produced = processor(images=[image], return_tensors="pt")["pixel_values"].shape[-2:]
        assert resized_size(width, height, rule, mod_size=mod) == (produced[1], produced[0]), (
            family, width, height,
        )  # fmt: skip


# --- over real HTTP --------------------------------------------------------------------
@pytest.fixture
def live(transactional_db, live_server, settings, tmp_path, other_user, runtime_checkpoint):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    checkpoint = runtime_checkpoint("detr")
    card = factories.card(checkpoint_local_dir=str(checkpoint), checkpoint_revision="rev-9")
    factories.route(card=card, price=PRICE)
    _, key = api_key_create(user=other_user, name="live")

    class Live:
        url = live_server.url
        user = other_user
        auth = {"Authorization": f"Bearer {key}"}

        def post(self, route="inference", query="", data=None, content_type="image/jpeg", **kw):
            return requests.post(
                f"{live_server.url}/v1/{route}/{card.model_id}{query}",
                data=jpeg() if data is None else data,
                headers={**self.auth, "Content-Type": content_type, **kw.pop("headers", {})},
                timeout=60,
                **kw,
            )

    Live.card = card
    return Live()


def nothing_happened(live, balance="0"):
    assert Job.objects.count() == 0 and Charge.objects.count() == 0
    assert wallet_for(live.user).balance == Decimal(balance)
    storage = django_settings.VITRINE_JOB_STORAGE
    assert not storage.exists() or list(storage.iterdir()) == []  # no upload kept


@pytest.mark.parametrize("route", ["inference", "detections"])
def test_a_dry_run_quotes_size_resize_and_exact_cost_and_charges_nothing(live, route):
    credit_grant(user=live.user, amount=Decimal("1"), reason="test")

    response = live.post(route, "?dry_run=true", data=jpeg(641, 479))

    assert response.status_code == 200, response.text
    quote = response.json()
    assert quote["object"] == "quote" and quote["charged"] == "0"
    assert (quote["model"], quote["model_revision"], quote["route"]) == (
        live.card.model_id, "rev-9", "vitrine",
    )  # fmt: skip
    assert quote["image"] | {"sha256": None} == {
        "format": "JPEG", "bytes": len(jpeg(641, 479)), "sha256": None, "width": 641,
        "height": 479, "original_width": 641, "original_height": 479,
    }  # fmt: skip
    # The test checkpoint's processor: shortest edge 224, longest 320 -> 299x224.
    assert quote["resize"] == {
        "width": 299, "height": 224, "rule": {"shortest_edge": 224, "longest_edge": 320},
        "from_checkpoint": True,
    }  # fmt: skip
    version = live.card.routes.get().history.get()
    assert (
        quote["price_version"]["id"] == version.pk and quote["price_version"]["price"] == "0.0002"
    )
    assert (quote["cost"], quote["balance"], quote["covered"], quote["covered_by"]) == (
        "0.0002", "1", True, "wallet",
    )  # fmt: skip
    assert quote["spend_cap"] is None
    nothing_happened(live, balance="1")


def test_a_dry_run_says_when_the_wallet_does_not_cover_it(live):
    quote = live.post(query="?dry_run=1").json()
    assert (quote["cost"], quote["balance"], quote["covered"], quote["covered_by"]) == (
        "0.0002", "0", False, None,
    )  # fmt: skip
    # The real call then answers 402, as the quote said.
    assert live.post().status_code == 402
    nothing_happened(live)


def test_a_dry_run_checks_the_keys_allow_list_and_spend_cap(live):
    from billing.models import ApiKey

    credit_grant(user=live.user, amount=Decimal("1"), reason="test")
    key = ApiKey.objects.get(user=live.user)
    ApiKey.objects.filter(pk=key.pk).update(monthly_spend_cap=Decimal("0.0001"))
    quote = live.post(query="?dry_run=true").json()
    assert quote["spend_cap"] == {"cap": "0.0001", "spent": "0", "within": False}
    assert (quote["covered"], quote["covered_by"]) == (False, None)
    assert live.post().status_code == 402  # as the quote said
    key.allowed_models.add(factories.card())
    response = live.post(query="?dry_run=true")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "model_not_allowed"
    nothing_happened(live, balance="1")


def test_a_dry_run_on_a_byok_route_is_covered_by_the_key(live):
    factories.route(
        card=live.card, slug="cloudflare", provider="Cloudflare Workers AI", is_own=False,
        byok_available=True, price=Decimal("0.0000075"), provider_model_id="@cf/x/y",
    )  # fmt: skip
    ProviderKey.objects.create(user=live.user, provider="cloudflare", ciphertext="x", last4="abcd")
    quote = live.post(query="?dry_run=true&route=cloudflare").json()
    assert (quote["cost"], quote["would_be_cost"], quote["byok"], quote["covered_by"]) == (
        "0", "0.0000075", True, "byok",
    )  # fmt: skip
    assert quote["resize"] is None and quote["model_revision"] == "@cf/x/y"
    nothing_happened(live)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"not an image", "image/jpeg", 415, "unsupported_format"),
        (jpeg(10000, 10), "image/jpeg", 400, "image_aspect_unsupported"),
        (b"", "image/jpeg", 400, "missing_image"),
    ],
)
def test_a_dry_run_refuses_what_the_call_would_refuse(live, body, content_type, status, code):
    response = live.post(query="?dry_run=true", data=body, content_type=content_type)
    assert response.status_code == status and response.json()["error"]["code"] == code
    nothing_happened(live)


@pytest.mark.parametrize(
    ("route", "query", "body", "content_type", "param"),
    [
        ("inference", "?treshold=0.9", None, "image/jpeg", "treshold"),
        ("inference", "?box_format=float", None, "image/jpeg", "box_format"),
        ("detections", "?box_format=float&top_k=3", None, "image/jpeg", "top_k"),
        ("inference", "", json.dumps({"inputs": "aGk=", "parameter": {}}), "application/json",
         "parameter"),
        ("detections", "", json.dumps({"inputs": "aGk=", "parameters": {"threshold": 0.5,
         "top_k": 2}}), "application/json", "parameters.top_k"),
    ],
)  # fmt: skip
def test_unknown_options_are_refused_naming_them(live, route, query, body, content_type, param):
    credit_grant(user=live.user, amount=Decimal("1"), reason="test")
    response = live.post(route, query, data=body, content_type=content_type)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("unknown_parameter", param)
    assert f"'{param}'" in error["message"]
    nothing_happened(live, balance="1")


@pytest.mark.parametrize("parameters", [[0.9], "threshold=0.9", 0.9, True])
@pytest.mark.parametrize("route", ["inference", "detections"])
def test_parameters_that_are_not_an_object_are_refused(live, route, parameters):
    """Not ignored: the call would run, and be charged, at the default threshold."""
    credit_grant(user=live.user, amount=Decimal("1"), reason="test")
    body = json.dumps({"inputs": base64.b64encode(jpeg()).decode(), "parameters": parameters})
    response = live.post(route, "", data=body, content_type="application/json")
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_value", "parameters")
    assert error["message"] == """'parameters' must be a JSON object, e.g. {"threshold": 0.5}."""
    nothing_happened(live, balance="1")
    # null is no parameters, as absent.
    body = json.dumps({"inputs": base64.b64encode(jpeg()).decode(), "parameters": None})
    quote = live.post(route, "?dry_run=true", data=body, content_type="application/json")
    assert quote.status_code == 200, quote.text


def test_an_unknown_multipart_field_is_refused(live):
    credit_grant(user=live.user, amount=Decimal("1"), reason="test")
    response = requests.post(
        f"{live.url}/v1/detections/{live.card.model_id}",
        files={"image": ("a.jpg", jpeg(), "image/jpeg")},
        data={"threshold": "0.5", "treshold": "0.9"},
        headers=live.auth,
        timeout=60,
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "treshold"
    nothing_happened(live, balance="1")


@pytest.mark.parametrize("query", ["?box_format=svg", "?dry_run=maybe"])
def test_bad_option_values_are_400(live, query):
    response = live.post("detections", query)
    assert response.status_code == 400 and response.json()["error"]["param"] in query


# --- lifecycle ----------------------------------------------------------------------------
def test_a_deprecated_model_carries_deprecation_sunset_and_successor(live):
    successor = factories.card(slug="detr-next")
    ModelCard.objects.filter(pk=live.card.pk).update(
        status="deprecated", deprecation_date="2026-11-01", sunset_date="2027-01-01",
        replacement=successor,
    )  # fmt: skip
    credit_grant(user=live.user, amount=Decimal("1"), reason="test")
    for route in ("inference", "detections"):
        response = live.post(route, "?dry_run=true")
        assert response.status_code == 200
        assert response.headers["Deprecation"] == "@1793491200"
        assert response.headers["Sunset"] == "Fri, 01 Jan 2027 00:00:00 GMT"
        links = response.headers["Link"]
        assert f'<{live.url}/v1/{route}/{successor.model_id}>; rel="successor-version"' in links
        assert f'<{live.url}/models/{live.card.model_id}>; rel="deprecation"' in links
    model = requests.get(f"{live.url}/v1/models/{live.card.model_id}", timeout=30)
    assert model.headers["Sunset"] == "Fri, 01 Jan 2027 00:00:00 GMT"
    assert (
        f'<{live.url}/v1/models/{successor.model_id}>; rel="successor-version"'
        in (model.headers["Link"])
    )
    body = model.json()
    assert (body["status"], body["deprecation_date"], body["sunset_date"]) == (
        "deprecated", "2026-11-01", "2027-01-01",
    )  # fmt: skip
    assert body["replacement"] == {
        "id": successor.model_id, "url": f"{live.url}/v1/models/{successor.model_id}",
    }  # fmt: skip
    listed = requests.get(f"{live.url}/v1/models", timeout=30).json()["data"]
    entry = next(m for m in listed if m["id"] == live.card.model_id)
    assert entry["replacement"]["id"] == successor.model_id and entry["sunset_date"] == "2027-01-01"
    page = requests.get(f"{live.url}/models/{live.card.model_id}/try", timeout=30)
    assert page.status_code == 200 and page.headers["Deprecation"] == "@1793491200"
    # A live model says nothing of the kind.
    live_model = requests.get(f"{live.url}/v1/models/{successor.model_id}", timeout=30)
    assert "Deprecation" not in live_model.headers and "Sunset" not in live_model.headers


def test_a_retired_model_is_410_naming_the_replacement_everywhere(live):
    successor = factories.card(slug="detr-next")
    ModelCard.objects.filter(pk=live.card.pk).update(
        status="retired", sunset_date="2026-10-01", replacement=successor
    )
    credit_grant(user=live.user, amount=Decimal("1"), reason="test")
    message = f"{live.card.model_id} was retired on 2026-10-01; use {successor.model_id}."
    for route in ("inference", "detections"):
        for query in ("", "?dry_run=true"):
            response = live.post(route, query)
            assert response.status_code == 410
            error = response.json()["error"]
            assert (error["code"], error["message"], error["replacement"]) == (
                "model_retired", message, successor.model_id,
            )  # fmt: skip
            assert successor.model_id in response.headers["Link"]
    try_url = f"{live.url}/models/{live.card.model_id}/try"
    page = requests.get(try_url, timeout=30)
    assert page.status_code == 410 and message in page.text
    session = requests.Session()  # a CSRF cookie from a page that has the form
    session.get(f"{live.url}/models/{successor.model_id}/try", timeout=30)
    posted = session.post(
        try_url,
        files={"image": ("a.jpg", jpeg(), "image/jpeg")},
        headers={"Accept": "application/json", "X-CSRFToken": session.cookies.get("csrftoken", ""),
                 "Referer": try_url},
        timeout=30,
    )  # fmt: skip
    assert posted.status_code == 410, posted.text
    assert posted.json()["error"]["code"] == "model_retired"
    assert posted.json()["error"]["message"] == message
    # The catalogue keeps the record (200, status retired).
    assert (
        requests.get(f"{live.url}/v1/models/{live.card.model_id}", timeout=30).json()["status"]
        == "retired"
    )
    nothing_happened(live, balance="1")


def test_coming_soon_is_409_on_the_api_and_the_try_page(live):
    ModelCard.objects.filter(pk=live.card.pk).update(status="coming_soon")
    for route in ("inference", "detections"):
        response = live.post(route)
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "model_not_available"
