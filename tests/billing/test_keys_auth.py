"""API keys: shown once, stored hashed; missing, malformed, unknown and revoked keys, and
the keys of a deactivated account, get 401."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.utils import timezone
from PIL import Image

from billing.models import ApiKey, Charge, ProviderKey
from billing.services.keys import (
    INACTIVE_KEY,
    INVALID_KEY,
    KEY_PREFIX,
    LAST_USED_PRECISION,
    MALFORMED_KEY,
    MISSING_KEY,
    REVOKED_KEY,
    api_key_authenticate,
    api_key_create,
    api_key_revoke,
    provider_key_reveal,
    provider_key_save,
)
from billing.services.ledger import wallet_for
from billing.services.topups import credit_grant
from catalog.errors import ApplicationError
from playground.models import Job
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("owner", "owner@example.com", "pw-owner-1")


def stored_values(obj) -> list[str]:
    """Every column of the row as the database holds it."""
    row = type(obj).objects.filter(pk=obj.pk).values().get()
    return [str(value) for value in row.values()]


def test_the_database_holds_no_plaintext(user):
    key, plaintext = api_key_create(user=user, name="laptop")
    secret = plaintext.split("_", 2)[2]  # vt_<prefix>_<secret>

    assert plaintext.startswith(KEY_PREFIX)
    assert len(secret) >= 40
    columns = stored_values(key)
    assert len(columns) == len(ApiKey._meta.concrete_fields)
    for value in columns:
        assert plaintext not in value
        assert secret not in value
        assert secret[:16] not in value
    assert api_key_authenticate(plaintext) == key


def test_each_key_is_different(user):
    plaintexts = {api_key_create(user=user, name=f"k{n}")[1] for n in range(5)}
    assert len(plaintexts) == 5
    assert len(set(ApiKey.objects.values_list("secret_hash", flat=True))) == 5


def test_a_good_key_authenticates_and_records_its_use(user):
    key, plaintext = api_key_create(user=user, name="laptop")
    assert key.last_used_at is None
    assert api_key_authenticate(plaintext).user == user
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_last_use_is_kept_to_the_minute(user):
    # Each call writing it would cost every inference call a commit of its own.
    key, plaintext = api_key_create(user=user, name="laptop")
    api_key_authenticate(plaintext)
    key.refresh_from_db()
    first = key.last_used_at
    api_key_authenticate(plaintext)
    key.refresh_from_db()
    assert key.last_used_at == first  # within the minute: not written again

    stale = timezone.now() - LAST_USED_PRECISION
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=stale)
    api_key_authenticate(plaintext)
    key.refresh_from_db()
    assert key.last_used_at > stale


def _mangle_secret(plaintext: str) -> str:
    last = plaintext[-1]
    return plaintext[:-1] + ("A" if last != "A" else "B")


@pytest.mark.parametrize(
    ("presented", "message"),
    [
        (lambda key: None, MISSING_KEY),
        (lambda key: "", MISSING_KEY),
        (lambda key: "sk-not-ours", MALFORMED_KEY),
        (lambda key: "vt_nounderscore", MALFORMED_KEY),
        (lambda key: key.replace("vt_", "xx_", 1), MALFORMED_KEY),
        (_mangle_secret, INVALID_KEY),  # the right prefix, a wrong secret
        (lambda key: "vt_00000000_" + key.split("_", 2)[2], INVALID_KEY),  # unknown prefix
        (lambda key: "vt_deadbeef_nothing-like-a-key", INVALID_KEY),
    ],
)
def test_bad_keys_get_401(user, presented, message):
    _, plaintext = api_key_create(user=user, name="laptop")
    with pytest.raises(ApplicationError) as raised:
        api_key_authenticate(presented(plaintext))
    error = raised.value
    assert (error.status, error.type, error.code) == (
        401,
        "authentication_error",
        "invalid_api_key",
    )
    assert error.message == message
    assert error.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_key_gets_401(user):
    key, plaintext = api_key_create(user=user, name="leaked")
    other, other_plaintext = api_key_create(user=user, name="kept")

    api_key_revoke(key=key)

    with pytest.raises(ApplicationError) as raised:
        api_key_authenticate(plaintext)
    assert (raised.value.status, raised.value.type) == (401, "authentication_error")
    assert raised.value.message == REVOKED_KEY
    key.refresh_from_db()
    assert key.is_active is False
    # Revoking again keeps the first revocation time; the other key still works.
    revoked_at = key.revoked_at
    api_key_revoke(key=key)
    key.refresh_from_db()
    assert key.revoked_at == revoked_at
    assert api_key_authenticate(other_plaintext) == other


def test_a_deactivated_users_keys_get_401(user):
    key, plaintext = api_key_create(user=user, name="laptop")
    assert api_key_authenticate(plaintext) == key
    user.is_active = False  # Django admin's usual ban
    user.save(update_fields=["is_active"])

    with pytest.raises(ApplicationError) as raised:
        api_key_authenticate(plaintext)
    error = raised.value
    assert (error.status, error.type, error.code) == (
        401,
        "authentication_error",
        "invalid_api_key",
    )
    assert error.message == INACTIVE_KEY
    assert error.headers["WWW-Authenticate"].startswith("Bearer")

    user.is_active = True  # lifting the ban brings the key back: it was never revoked
    user.save(update_fields=["is_active"])
    assert api_key_authenticate(plaintext) == key


@pytest.mark.parametrize("active", [True, False])
def test_authenticating_a_key_is_one_query(user, active, django_assert_num_queries):
    # The key's read carries its user (is_active included): the ban costs no extra query.
    _, plaintext = api_key_create(user=user, name="laptop")
    api_key_authenticate(plaintext)  # records the last use: not written again this minute
    type(user).objects.filter(pk=user.pk).update(is_active=active)
    with django_assert_num_queries(1):
        try:
            api_key_authenticate(plaintext)
        except ApplicationError as error:
            assert not active and error.message == INACTIVE_KEY


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 90)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/v1/inference/{model}"),
        ("post", "/v1/detections/{model}"),
        ("post", "/hf/models/{model}"),
        ("post", "/client/v4/accounts/acct123/ai/run/@cf/{model}"),
        ("get", "/v1/jobs"),
    ],
)
def test_a_deactivated_users_key_is_refused_and_never_charged_on_every_route(
    client, user, settings, tmp_path, method, path
):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card()
    factories.route(card=card, price=Decimal("0.0002"))
    credit_grant(user=user, amount=Decimal("1.00"), reason="test")
    _, plaintext = api_key_create(user=user, name="ci")
    user.is_active = False
    user.save(update_fields=["is_active"])

    send = getattr(client, method)
    kwargs = {"data": _jpeg(), "content_type": "image/jpeg"} if method == "post" else {}
    response = send(
        path.format(model=card.model_id),
        headers={"Authorization": f"Bearer {plaintext}"},
        **kwargs,
    )

    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"].startswith("Bearer")
    if path.startswith("/v1/"):  # Vitrine's own error shape
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key")
        assert error["message"] == INACTIVE_KEY
    else:  # the drop-in's own shape, Vitrine's code in a header
        assert response["X-Vitrine-Error-Code"] == "invalid_api_key"
        assert INACTIVE_KEY in response.content.decode()
    assert Job.objects.count() == 0 and Charge.objects.count() == 0
    assert wallet_for(user).balance == Decimal("1.00")


def test_a_provider_key_is_encrypted_at_rest(user):
    secret = "cf-live-secret-value-98765"
    saved = provider_key_save(user=user, provider="cloudflare", secret=f"  {secret}\n")
    for value in stored_values(saved):
        assert secret not in value
        assert secret[:8] not in value
    assert saved.last4 == "8765"
    assert provider_key_reveal(key=ProviderKey.objects.get(pk=saved.pk)) == secret
    # Saving again replaces it: one key per provider.
    provider_key_save(user=user, provider="cloudflare", secret="cf-rotated-secret-0001")
    assert ProviderKey.objects.filter(user=user).count() == 1
    assert provider_key_reveal(key=ProviderKey.objects.get(user=user)) == "cf-rotated-secret-0001"
