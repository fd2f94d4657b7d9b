from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing.models import ApiKey
from billing.services.keys import REVOKED_KEY, api_key_authenticate, api_key_create
from catalog.errors import ApplicationError
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_new_key_is_shown_once_and_only_its_hash_is_stored(owner_client, caplog):
    caplog.set_level(logging.DEBUG)
    with CaptureQueriesContext(connection) as queries:
        response = owner_client.post(reverse("billing:api_key_create"), {"name": "laptop"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    plaintext = response.context["new_key"]["plaintext"]
    assert plaintext.startswith("vt_")
    html = response.content.decode()
    assert html.count(plaintext) == 1
    assert "it is shown this once" in html

    key = ApiKey.objects.get()
    assert key.name == "laptop"
    for field in ApiKey._meta.concrete_fields:
        assert plaintext not in str(getattr(key, field.attname))
    assert all(plaintext not in q["sql"] for q in queries.captured_queries)
    assert plaintext not in caplog.text
    assert plaintext not in str(dict(owner_client.session.items()))
    assert list(response.context["messages"]) == []
    # The stored hash verifies the secret: the key works.
    assert api_key_authenticate(plaintext) == key

    later = owner_client.get(reverse("billing:dashboard")).content.decode()
    assert plaintext not in later
    assert f"vt_{key.prefix}…" in later


def test_cap_and_allow_list_are_saved(owner_client):
    allowed = factories.card()
    factories.card()
    response = owner_client.post(
        reverse("billing:api_key_create"),
        {"name": "ci", "monthly_spend_cap": "12.50", "allowed_models": [allowed.pk]},
    )
    assert response.status_code == 200
    key = ApiKey.objects.get()
    assert key.monthly_spend_cap == Decimal("12.50")
    assert list(key.allowed_models.all()) == [allowed]
    page = owner_client.get(reverse("billing:dashboard")).content.decode()
    assert "$12.50" in page
    assert allowed.model_id in page


def test_unpublished_models_and_negative_caps_are_refused(owner_client):
    hidden = factories.card(is_published=False)
    response = owner_client.post(
        reverse("billing:api_key_create"),
        {"name": "ci", "monthly_spend_cap": "-1", "allowed_models": [hidden.pk]},
    )
    assert response.status_code == 200
    assert response.context["new_key"] is None
    assert set(response.context["key_form"].errors) == {"monthly_spend_cap", "allowed_models"}
    assert not ApiKey.objects.exists()


def test_revoke(owner_client, owner):
    key, plaintext = api_key_create(user=owner, name="old")
    assert owner_client.get(reverse("billing:api_key_revoke", args=[key.pk])).status_code == 405
    response = owner_client.post(reverse("billing:api_key_revoke", args=[key.pk]))
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    with pytest.raises(ApplicationError) as error:
        api_key_authenticate(plaintext)
    assert error.value.message == REVOKED_KEY
    page = owner_client.get(reverse("billing:dashboard")).content.decode()
    assert "The key “old” is revoked" in page
    assert 'class="revoked"' in page


def test_another_users_key_is_404(owner_client, other_user):
    key, _ = api_key_create(user=other_user, name="theirs")
    response = owner_client.post(reverse("billing:api_key_revoke", args=[key.pk]))
    assert response.status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None
    assert "theirs" not in owner_client.get(reverse("billing:dashboard")).content.decode()


def test_the_account_pages_need_a_login(client):
    for name in ("billing:dashboard", "billing:usage_csv"):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("billing:login"))
    response = client.post(reverse("billing:api_key_create"), {"name": "x"})
    assert response.status_code == 302
    assert not ApiKey.objects.exists()
