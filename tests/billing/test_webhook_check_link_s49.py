"""The dashboard's Webhooks section leads to how a delivery's signature is checked, on this
site (session 49's outside probe: it said "see the README for the check", with no link, and
the OpenAPI schema did not name the Vitrine-Signature header)."""

from __future__ import annotations

import re

import pytest

from tests import factories

pytestmark = pytest.mark.django_db


def test_the_dashboard_links_the_signature_check_in_the_api_reference(client):
    client.force_login(factories.user())
    body = client.get("/account/").content.decode()
    section = body[body.index('<section id="webhooks">') :]
    section = section[: section.index("</section>")]
    assert "README" not in section
    (href,) = re.findall(r'<a href="([^"]+)" id="webhook-check">', section)
    path, fragment = href.split("#", 1)
    assert client.get(path).status_code == 200
    # Swagger UI's deep link (#/<tag>/<operationId>) opens an operation the schema has, whose
    # webhook parameter says how to check a delivery.
    schema = client.get("/v1/openapi.json").json()
    _, tag, operation_id = fragment.split("/")
    (operation,) = [
        op
        for methods in schema["paths"].values()
        for op in methods.values()
        if isinstance(op, dict) and op.get("operationId") == operation_id
    ]
    assert tag in operation["tags"]
    (webhook,) = [p for p in operation["parameters"] if p["name"] == "webhook"]
    text = webhook["description"]
    needed = [
        "`Vitrine-Signature`", "`t=<unix seconds>,v1=<hex>`", "HMAC-SHA256", "`<t>.<raw body>`",
        "constant time", "300 s", "`Vitrine-Webhook-Id`",
    ]  # fmt: skip
    assert [phrase for phrase in needed if phrase not in text] == []
