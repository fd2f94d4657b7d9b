from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from billing.key_formats import CLOUDFLARE_KEY_FORMAT
from billing.models import ProviderKey
from billing.services.charges import charge_post, charge_reserve, charge_void
from billing.services.keys import provider_key_reveal, provider_key_save
from tests import factories

pytestmark = pytest.mark.django_db

SECRET = "cf-Secret-abcdefgh-1234"


@pytest.fixture
def byok_route():
    return factories.byok_route()


def test_a_saved_key_is_encrypted_and_only_its_last_4_are_shown(owner_client, owner, byok_route):
    response = owner_client.post(
        reverse("billing:provider_key_save"), {"provider": "cloudflare", "secret": SECRET}
    )
    assert response.status_code == 302
    key = ProviderKey.objects.get(user=owner)
    assert key.provider == "cloudflare"
    assert key.last4 == "1234"
    assert SECRET not in key.ciphertext
    assert "abcdefgh" not in key.ciphertext
    assert provider_key_reveal(key=key) == SECRET  # the worker can still use it

    page = owner_client.get(reverse("billing:dashboard")).content.decode()
    assert "…1234" in page
    assert "abcdefgh" not in page
    assert "Your cloudflare key ending in 1234 is saved." in page


def test_only_routes_that_accept_own_keys_are_offered(owner_client, byok_route):
    factories.route(slug="vitrine")  # our own workers: no BYOK
    factories.byok_route(slug="retired-provider", is_active=False)
    page = owner_client.get(reverse("billing:dashboard"))
    assert page.context["provider_key_form"].fields["provider"].choices == [
        ("cloudflare", "Cloudflare Workers AI")
    ]
    response = owner_client.post(
        reverse("billing:provider_key_save"), {"provider": "vitrine", "secret": SECRET}
    )
    assert response.status_code == 200
    assert "provider" in response.context["provider_key_form"].errors
    assert not ProviderKey.objects.exists()


def test_a_too_short_key_is_refused_and_not_echoed(owner_client, byok_route):
    response = owner_client.post(
        reverse("billing:provider_key_save"), {"provider": "cloudflare", "secret": "abc12"}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "That provider key is too short." in html
    assert "abc12" not in html
    assert not ProviderKey.objects.exists()


def test_delete(owner_client, owner, byok_route):
    key = provider_key_save(user=owner, provider="cloudflare", secret=SECRET)
    url = reverse("billing:provider_key_delete", args=[key.pk])
    assert owner_client.get(url).status_code == 405
    response = owner_client.post(url)
    assert response.status_code == 302
    assert not ProviderKey.objects.exists()
    page = owner_client.get(reverse("billing:dashboard")).content.decode()
    assert "…1234" not in page.replace("ending in 1234 is deleted", "")


def test_another_users_key_is_404(owner_client, other_user, byok_route):
    key = provider_key_save(user=other_user, provider="cloudflare", secret=SECRET)
    response = owner_client.post(reverse("billing:provider_key_delete", args=[key.pk]))
    assert response.status_code == 404
    assert ProviderKey.objects.filter(pk=key.pk).exists()


def test_the_dashboard_shows_what_byok_saved(owner_client, owner, byok_route):
    provider_key_save(user=owner, provider="cloudflare", secret=SECRET)
    for units in (3, 4):
        job_id = uuid.uuid4()
        charge = charge_reserve(
            job_id=job_id, user=owner, card=byok_route.card, route=byok_route, units=units
        )
        assert charge.byok and charge.amount == 0
        charge_post(job_id=job_id)
    # A failed job saved nothing.
    failed = uuid.uuid4()
    charge_reserve(job_id=failed, user=owner, card=byok_route.card, route=byok_route, units=5)
    charge_void(job_id=failed)

    page = owner_client.get(reverse("billing:dashboard"))
    assert page.context["byok_saved"] == "$0.0007"  # 7 images x $0.0001
    assert page.context["byok_calls"] == 2
    assert "$0.0007" in page.content.decode()


# --- BYOK keys checked when saved -------------------------------------------------------
@pytest.fixture
def cloudflare_route():
    return factories.byok_route(schema_flavour="cloudflare-workers-ai")


@pytest.mark.parametrize(
    "secret",
    [
        "cf-Secret-abcdefgh-1234",
        "acct123:token",
        "0123456789abcdef0123456789abcdef:",
        "0123456789abcdef0123456789abcdef:tok en",
        ":token-only-here",
    ],
)
def test_a_malformed_cloudflare_key_is_refused_at_save(owner_client, cloudflare_route, secret):

    response = owner_client.post(
        reverse("billing:provider_key_save"), {"provider": "cloudflare", "secret": secret}
    )
    assert response.status_code == 200
    assert response.context["provider_key_form"].errors["secret"] == [CLOUDFLARE_KEY_FORMAT]
    assert not ProviderKey.objects.exists()


def test_a_well_formed_cloudflare_key_is_saved(owner_client, owner, cloudflare_route):

    secret = "0123456789abcdef0123456789ABCDEF:Abc-123_token"
    response = owner_client.post(
        reverse("billing:provider_key_save"), {"provider": "cloudflare", "secret": secret}
    )
    assert response.status_code == 302
    assert ProviderKey.objects.get(user=owner).last4 == "oken"
