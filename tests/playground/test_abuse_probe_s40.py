"""Session 40's abuse probe, playground side: what a client got past the per-IP limits."""

from __future__ import annotations

import pytest
from django.test import Client

from playground.models import Job
from tests import factories
from tests.playground.test_playground_page import JSON, card, try_url, upload  # noqa: F401

pytestmark = pytest.mark.django_db


def attempt_via_proxy(card, forwarded: str):  # noqa: F811
    return Client().post(
        try_url(card), {"image": upload()}, headers=JSON, HTTP_X_FORWARDED_FOR=forwarded
    )


def test_free_tries_count_an_ipv6_clients_whole_64(
    card,  # noqa: F811
    settings,
    limits_redis,
    django_capture_on_commit_callbacks,
):
    """One IPv6 subscriber picks any address of its /64: a new address per try was a new
    client, and the free tries never ran out. Another /64 keeps its own tries."""
    settings.VITRINE_PLAYGROUND_PER_HOUR = 2
    settings.VITRINE_TRUSTED_PROXY_COUNT = 1
    with django_capture_on_commit_callbacks():
        codes = [attempt_via_proxy(card, f"2001:db8:1:2::{i:x}").status_code for i in range(1, 4)]
        elsewhere = attempt_via_proxy(card, "2001:db8:1:3::1").status_code
    assert codes == [202, 202, 429]
    assert elsewhere == 202
    assert Job.objects.count() == 3


@pytest.mark.parametrize(
    ("remote", "counted_as"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),  # an IPv4 client on a dual-stack socket
        ("unknown", "unknown"),
    ],
)
def test_the_client_network_a_per_ip_limit_counts(rf, remote, counted_as):
    from catalog.ratelimit import client_network

    assert client_network(rf.get("/", REMOTE_ADDR=remote)) == counted_as


# --- a query string over DATA_UPLOAD_MAX_NUMBER_FIELDS ----------------------------------
@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/v1/inference/{model}", "vitrine"),
        ("/v1/detections/{model}", "vitrine"),
        ("/hf/models/{model}", "hf"),
        ("/client/v4/accounts/x/ai/run/@cf/{model}", "cloudflare"),
        ("/v1/jobs", "vitrine"),
    ],
)
def test_too_many_query_parameters_are_the_apis_json_400(client, path, shape, settings):
    """1,001 query parameters: Django refuses to parse them, and the refusal read the
    query again to pick the answer's flavour, raising once more: Django's HTML 400 page on
    every API route, in no flavour's shape."""
    from tests.playground.test_inference_api import jpeg

    model = factories.card()
    factories.route(card=model)
    query = "&".join(f"p{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    response = client.post(
        f"{path.format(model=model.model_id)}?{query}",
        data=jpeg(),
        content_type="image/jpeg",
        headers={"Authorization": "Bearer vt_00000000_secret"},
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    body = response.json()
    message = "The query string has more than 1,000 parameters."
    if shape == "vitrine":
        assert body["error"]["code"] == "too_many_fields"
        assert body["error"]["message"] == message
    elif shape == "hf":
        assert body == {"error": message}
    else:
        assert body["success"] is False
        assert body["errors"][0]["message"] == message


# --- a webhook host whose name server never answers -------------------------------------
@pytest.fixture
def tarpit_dns(monkeypatch):
    """The resolver as a name server that never answers makes it (a true boundary: the
    network): lookups of ``*.tarpit.example`` hang until the test ends."""
    import socket
    import threading

    released = threading.Event()
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if str(host).endswith(".tarpit.example"):
            released.wait(30)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr("playground.webhooks.CREATION_RESOLVE_TIMEOUT", 0.3)
    yield
    released.set()


def test_a_webhook_host_that_never_resolves_does_not_hold_the_call(client, tarpit_dns):
    """The creation check's lookup ran on the call's own thread, one of the web process's
    8 API database threads, for as long as the resolver kept trying: a few such calls
    stalled every paid call of the process. Now the call is refused after a bounded wait,
    with nothing created or charged."""
    from decimal import Decimal

    from billing.models import Charge
    from billing.services.keys import api_key_create
    from billing.services.topups import credit_grant
    from tests.playground.test_inference_api import jpeg

    model = factories.card()
    factories.route(card=model)
    user = factories.user()
    credit_grant(user=user, amount=Decimal("1"), reason="test")
    _, plaintext = api_key_create(user=user, name="ci")
    response = client.post(
        f"/v1/inference/{model.model_id}?webhook=https://hooks.tarpit.example/in",
        data=jpeg(),
        content_type="image/jpeg",
        headers={"Authorization": f"Bearer {plaintext}", "Prefer": "respond-async"},
    )
    # The wait's own message (without the bound, the lookup's eventual failure said it
    # "does not resolve"): no wall-clock assert.
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_webhook", "webhook")
    assert error["message"] == (
        "The webhook host 'hooks.tarpit.example' did not resolve within 0.3 s; "
        "check its DNS and retry."
    )
    assert not Job.objects.exists()
    assert not Charge.objects.exists()


# --- tries paid from the wallet -----------------------------------------------------------
def test_tries_paid_from_the_wallet_keep_the_models_and_accounts_minute(
    client,
    card,  # noqa: F811
    other_user,
    settings,
    limits_redis,
    django_capture_on_commit_callbacks,
):
    """A run on the try page paid from the wallet spends no free try, and it was counted
    nowhere else either: the model's per-account limit (admin, "API limits") and the
    account's calls per minute held for API keys only. Refused runs make no job and no
    charge, and the API shares the count."""
    from billing.models import Charge
    from billing.services.keys import api_key_create
    from tests.playground.test_inference_api import jpeg

    card.rate_limit_per_minute = 2
    card.save()
    factories.funded(other_user, "1")
    client.force_login(other_user)
    with django_capture_on_commit_callbacks():
        responses = [
            client.post(try_url(card), {"image": upload()}, headers=JSON) for _ in range(3)
        ]
    assert [r.status_code for r in responses] == [202, 202, 429]
    refused = responses[2]
    assert 1 <= int(refused["Retry-After"]) <= 60
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert error["message"].startswith(f"Your account made 2 calls to {card.model_id}")
    assert Job.objects.count() == Charge.objects.count() == 2

    _, plaintext = api_key_create(user=other_user, name="ci")
    response = client.post(
        f"/v1/inference/{card.model_id}?dry_run=true",
        data=jpeg(),
        content_type="image/jpeg",
        headers={"Authorization": f"Bearer {plaintext}"},
    )
    assert response.status_code == 429  # the same account's minute, on either door


# --- a progressive JPEG's full-size coefficients ------------------------------------------
@pytest.mark.parametrize(("progressive", "held"), [(True, 3000 * 2000), (False, 375 * 250)])
def test_a_progressive_jpeg_holds_its_full_size_in_the_decode_budget(progressive, held):
    """The web check reads a JPEG at 1/8 scale and held 1/64 of its pixels in the decode
    budget, but libjpeg gathers a progressive JPEG's scans at full size: 8 concurrent
    checks of a 466 KB progressive 6300x6300 JPEG took a uvicorn process to 1,496 MB. A
    baseline JPEG is still counted at the scale it is read at."""
    import io

    from PIL import Image

    from playground.runtime.images import decode_budget, inspect_image

    buffer = io.BytesIO()
    Image.new("RGB", (3000, 2000), (10, 100, 200)).save(
        buffer, format="JPEG", progressive=progressive
    )
    max_pixels = 40_000_000 + 40 + int(progressive)  # a budget of this test's own
    facts = inspect_image(buffer.getvalue(), max_pixels=max_pixels)
    assert facts.original_size == (3000, 2000)
    assert decode_budget(max_pixels).peak == held
