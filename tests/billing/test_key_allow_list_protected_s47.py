"""Session 47's operator probe: deleting the only card an API key's allow-list named made
the key unrestricted (an empty allow-list means every model), so a key capped to one model
ran and paid for any. The card is now PROTECTed by the allow-list (billing.ApiKeyModel)."""

from __future__ import annotations

import pytest
from django.db.models import ProtectedError
from django.urls import reverse

from billing.services.charges import key_allow_list_check
from billing.services.keys import api_key_create
from catalog.errors import ApplicationError
from catalog.models import ModelCard
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def narrow_key(other_user):
    only = factories.card(slug="only-this-one")
    key, _ = api_key_create(user=other_user, name="narrow", allowed_models=[only])
    return key, only


def test_a_card_an_allow_list_names_cannot_be_deleted(narrow_key):
    key, only = narrow_key
    with pytest.raises(ProtectedError):
        only.delete()
    assert list(key.allowed_models.all()) == [only]
    with pytest.raises(ApplicationError) as refused:
        key_allow_list_check(api_key=key, card=factories.card(slug="another"))
    assert refused.value.code == "model_not_allowed"


def test_the_admin_names_the_keys_in_the_way_and_deletes_nothing(client, narrow_key):
    key, only = narrow_key
    client.force_login(factories.user(username="op", is_staff=True, is_superuser=True))
    url = reverse("admin:catalog_modelcard_delete", args=[only.pk])

    page = client.get(url)
    assert page.status_code == 200
    assert "protected related objects" in page.content.decode()
    assert f"API key “{key.name}”" in page.content.decode()

    client.post(url, {"post": "yes"})
    assert ModelCard.objects.filter(pk=only.pk).exists()
    bulk = client.post(
        reverse("admin:catalog_modelcard_changelist"),
        {"action": "delete_selected", "_selected_action": [only.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    assert ModelCard.objects.filter(pk=only.pk).exists()


def test_once_no_key_names_it_the_card_can_be_deleted(narrow_key):
    key, only = narrow_key
    key.allowed_models.clear()
    only.delete()
    assert not ModelCard.objects.filter(pk=only.pk).exists()


def test_deleting_a_key_or_its_owner_still_takes_its_allow_list(narrow_key, other_user):
    key, only = narrow_key
    other_user.delete()
    assert not key.allowed_models.through.objects.exists()
    only.delete()  # nothing names it any more
