"""A signed-in user changes their password or deletes their account from the dashboard.

Deleting keeps the money's history (the ledger, top-ups and charges name the user row) and
removes the person: no username, email or password left, keys and sessions dead, uploads
deleted, queued jobs cancelled with their charges released.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from billing.models import ApiKey, Charge, LedgerEntry, ProviderKey, TopUp, WebhookSecret
from billing.services.charges import charge_reserve
from billing.services.keys import api_key_create, provider_key_save
from billing.services.ledger import wallet_for
from billing.services.webhook_secrets import webhook_secret_get
from billing.views import ACCOUNT_DELETED, PASSWORD_CHANGED, WRONG_PASSWORD
from catalog.errors import ApplicationError
from catalog.models import DemandVote
from playground import services
from playground.models import Job, WebhookDelivery
from playground.storage import job_storage
from tests import factories

pytestmark = pytest.mark.django_db
DELETE = reverse("billing:account_delete")
PASSWORD = reverse("billing:password_change")


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def card(db, settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card()
    factories.route(card=card, price=Decimal("0.25"))
    return card


@pytest.fixture
def user(db):
    return factories.funded(factories.user(username="ada", email="ada@example.com"), "10")


def signed_in(client, user):
    client.force_login(user)
    return client


def paid_job(card, user, *, status) -> Job:
    job = services.job_create(card=card, image_bytes=png(), owner=user)
    charge_reserve(job_id=job.pk, user=user, card=card, route=card.routes.get())
    if status != "queued":
        fields = {"status": status, "finished_at": timezone.now()}
        if status == "succeeded":
            fields["result"] = [{"label": "cat", "score": 0.9, "box": [0, 0, 1, 1]}]
        Job.objects.filter(pk=job.pk).update(**fields)
    job.refresh_from_db()
    return job


# --- password --------------------------------------------------------------------------
def test_a_password_is_changed_with_the_current_one_and_other_sessions_end(client, user):
    elsewhere = type(client)()
    signed_in(elsewhere, user)
    assert elsewhere.get(reverse("billing:dashboard")).status_code == 200
    signed_in(client, user)

    wrong = client.post(
        PASSWORD,
        {
            "old_password": "nope",
            "new_password1": "s3cret-Horse-9",
            "new_password2": "s3cret-Horse-9",
        },
    )
    assert wrong.status_code == 200 and wrong.context["form"].errors["old_password"]
    assert "no-store" in wrong["Cache-Control"]
    user.refresh_from_db()
    assert user.check_password("pw-ada-1")

    changed = client.post(
        PASSWORD,
        {"old_password": "pw-ada-1", "new_password1": "s3cret-Horse-9",
         "new_password2": "s3cret-Horse-9"},
    )  # fmt: skip
    assert changed.status_code == 302
    assert [m.to for m in mail.outbox] == [["ada@example.com"]]
    assert mail.outbox[0].subject == "Your Vitrine password was changed"
    assert "http://testserver/accounts/password-reset/" in mail.outbox[0].body
    assert "s3cret" not in mail.outbox[0].body
    assert changed["Location"].endswith(reverse("billing:dashboard") + "#account-settings")
    user.refresh_from_db()
    assert user.check_password("s3cret-Horse-9")
    page = client.get(reverse("billing:dashboard"))
    assert page.status_code == 200  # this session stays signed in
    assert PASSWORD_CHANGED in [str(m) for m in page.context["messages"]]
    # The other session was signed in with the old password's hash: it is signed out.
    assert elsewhere.get(reverse("billing:dashboard")).status_code == 302


def test_password_attempts_from_a_session_are_limited(client, user):
    signed_in(client, user)
    bad = {
        "old_password": "nope",
        "new_password1": "x-Long-pass-1",
        "new_password2": "x-Long-pass-1",
    }
    for _ in range(5):
        assert client.post(PASSWORD, bad).status_code == 200
    # The limit is the account's, whichever form asks for the password.
    refused = client.post(DELETE, {"password": "pw-ada-1", "forfeit": "on"})
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert "Too many password attempts" in refused.content.decode()
    user.refresh_from_db()
    assert user.is_active  # the right password, refused unread: nothing happened


# --- deleting the account --------------------------------------------------------------
def test_the_page_says_what_goes_and_how_much_credit_is_lost(client, user):
    page = signed_in(client, user).get(DELETE)
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    html = page.content.decode()
    assert ">$10<" in html and "this credit is lost" in html
    assert 'name="forfeit"' in html
    assert client.get(reverse("billing:dashboard")).content.decode().count(DELETE) == 1


def test_nothing_happens_without_the_password_and_the_forfeit_ticked(client, user):
    signed_in(client, user)
    unticked = client.post(DELETE, {"password": "pw-ada-1"})
    assert unticked.status_code == 200
    assert "will be lost" in str(unticked.context["form"].errors["forfeit"])
    wrong = client.post(DELETE, {"password": "pw-ada-2", "forfeit": "on"})
    assert wrong.context["form"].errors["password"] == [WRONG_PASSWORD]
    user.refresh_from_db()
    assert user.is_active and user.username == "ada"


def test_an_empty_wallet_asks_only_for_the_password(client):
    user = factories.user(username="bob")
    page = signed_in(client, user).get(DELETE)
    assert 'name="forfeit"' not in page.content.decode()
    assert client.post(DELETE, {"password": "pw-bob-1"}).status_code == 302
    user.refresh_from_db()
    assert not user.is_active
    assert "of credit" not in mail.outbox[0].body


def test_a_mail_server_that_refuses_the_notice_does_not_undo_the_deletion(client, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2
    user = factories.user(username="cy")
    signed_in(client, user)
    assert client.post(DELETE, {"password": "pw-cy-1"}).status_code == 302
    user.refresh_from_db()
    assert not user.is_active


def test_deleting_removes_the_person_and_keeps_the_books(client, card, user):
    _, plaintext = api_key_create(user=user, name="laptop")
    provider_key_save(user=user, provider="cloudflare", secret="acct:token-1234")
    webhook_secret_get(user=user)
    DemandVote.objects.create(card=card, user=user)
    DemandVote.objects.create(card=card, email="ADA@example.com")
    kept_vote = DemandVote.objects.create(card=card, email="someone@example.com")
    done = paid_job(card, user, status="succeeded")
    Job.objects.filter(pk=done.pk).update(is_public=True)
    queued = paid_job(card, user, status="queued")
    free = services.job_create(card=card, image_bytes=png(), owner=user)
    Job.objects.filter(pk=free.pk).update(status="succeeded", finished_at=timezone.now(),
                                          result=[])  # fmt: skip
    images = [done.image_name, free.image_name]
    assert all(job_storage().exists(name) for name in images)
    assert wallet_for(user).balance == Decimal("9.50")  # two $0.25 calls held
    entries = LedgerEntry.objects.count()
    api = type(client)()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {plaintext}"}
    assert api.get("/v1/jobs", **auth).status_code == 200

    response = signed_in(client, user).post(DELETE, {"password": "pw-ada-1", "forfeit": "on"})

    assert response.status_code == 302 and response["Location"] == reverse("catalog:home")
    assert [m.to for m in mail.outbox] == [["ada@example.com"]]
    assert mail.outbox[0].subject == "Your Vitrine account was deleted"
    assert "Hello ada," in mail.outbox[0].body and "$9.75 of credit" in mail.outbox[0].body
    assert ACCOUNT_DELETED in client.get("/", follow=True).content.decode()
    assert client.get(reverse("billing:dashboard")).status_code == 302  # signed out
    user.refresh_from_db()
    assert (user.username, user.email, user.is_active) == (f"deleted-{user.pk}", "", False)
    assert not user.has_usable_password()
    assert api.get("/v1/jobs", **auth).status_code == 401
    assert ApiKey.objects.get(user=user).revoked_at is not None
    assert not ProviderKey.objects.filter(user=user).exists()
    assert not WebhookSecret.objects.filter(user=user).exists()
    assert list(DemandVote.objects.all()) == [kept_vote]
    # The queued job is cancelled and its hold given back; the run that was paid keeps its
    # row and charge, private now, without its image; the free try is gone.
    queued.refresh_from_db()
    assert queued.status == "cancelled"
    assert Charge.objects.get(job_id=queued.pk).status == Charge.Status.VOIDED
    done.refresh_from_db()
    assert (done.is_public, done.image_name) == (False, "")
    assert done.image_deleted_at is not None and done.result
    assert not Job.objects.filter(pk=free.pk).exists()
    assert not any(job_storage().exists(name) for name in images)
    # The credit left stays in the books, forfeited: no posting removed or added but the
    # queued job's release.
    assert wallet_for(user).balance == Decimal("9.75")
    assert LedgerEntry.objects.count() > entries

    # The name and the address are free again.
    client.post(
        reverse("billing:signup"),
        {"username": "ada", "email": "ada@example.com", "password1": "An0ther-horse",
         "password2": "An0ther-horse"},
    )  # fmt: skip
    assert get_user_model().objects.filter(username="ada", is_active=True).exists()


def test_a_closed_account_gets_no_more_webhooks_and_no_new_signing_secret(
    client, card, user, monkeypatch
):
    """Found from outside (session probe D): the queued jobs' cancels queued their webhooks,
    which were then POSTed to the user's address for hours after the deletion, signed with a
    webhook secret made again for the closed account."""
    from playground import webhooks

    sent = []
    monkeypatch.setattr(webhooks, "post_signed", lambda url, **kw: sent.append(url))
    monkeypatch.setattr(webhooks, "_enqueue", lambda pk, **kw: None)
    webhook_secret_get(user=user)
    queued = paid_job(card, user, status="queued")
    webhooks.webhook_register(job=queued, url="https://hooks.example/v?token=s3cret")
    failing = paid_job(card, user, status="succeeded")
    pending = webhooks.webhook_register(job=failing, url="https://hooks.example/v?token=s3cret")
    webhooks.webhook_job_finished(failing.pk)  # a delivery retrying: pending

    signed_in(client, user).post(DELETE, {"password": "pw-ada-1", "forfeit": "on"})

    deliveries = WebhookDelivery.objects.filter(job__owner=user)
    assert sorted(deliveries.values_list("status", "url")) == [("failed", "")] * 2
    # A message already queued for one (the retry above) sends nothing when it runs.
    WebhookDelivery.objects.filter(pk=pending.pk).update(status="pending")
    assert webhooks.webhook_deliver(delivery_id=pending.pk) == "failed"
    assert sent == []
    assert not WebhookSecret.objects.filter(user=user).exists()


def test_a_call_whose_key_passed_just_before_the_close_makes_no_job(
    client, card, user, monkeypatch, settings
):
    """Found from outside (probe D): a call authenticated, the account closed, and the call
    then made its job: queued after the close's cancels, it ran 17 s later and was charged,
    its upload kept. The close and the call's job now order on the user row."""
    from billing import auth
    from billing.services.accounts import account_close

    _, plaintext = api_key_create(user=user, name="laptop")
    real = auth.api_key_authenticate

    def closed_meanwhile(raw):
        key = real(raw)
        account_close(user=get_user_model().objects.get(pk=key.user_id))
        return key

    monkeypatch.setattr(auth, "api_key_authenticate", closed_meanwhile)
    balance = wallet_for(user).balance
    response = client.post(
        f"/v1/detections/{card.organisation.slug}/{card.slug}",
        png(),
        content_type="image/png",
        HTTP_AUTHORIZATION=f"Bearer {plaintext}",
        HTTP_PREFER="respond-async",
    )

    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == "invalid_api_key"  # as its next call gets
    assert not Job.objects.filter(owner=user).exists()
    assert not Charge.objects.filter(user=user).exists()
    assert wallet_for(user).balance == balance
    stored = settings.VITRINE_JOB_STORAGE  # nothing uploaded either
    assert not stored.exists() or not any(stored.rglob("*.*"))


def test_a_job_claimed_while_the_account_closes_is_cancelled_or_refuses_the_close(
    card, user, monkeypatch
):
    """Found from outside (probe D): the running jobs were counted before the queued ones
    were cancelled, so a worker's claim in between ran a job, and charged it, after the
    account was closed. Now the cancels come first, in the close's transaction."""
    from billing.services import accounts

    queued = paid_job(card, user, status="queued")
    real = accounts.account_close_refusal

    def then_claimed(*, user, **flags):
        answer = real(user=user, **flags)
        # A worker's claim, a compare-and-set on the queued status, lands just after.
        Job.objects.filter(pk=queued.pk, status="queued").update(status="running")
        return answer

    monkeypatch.setattr(accounts, "account_close_refusal", then_claimed)
    accounts.account_close(user=user)

    queued.refresh_from_db()
    assert queued.status == "cancelled"
    assert Charge.objects.get(job_id=queued.pk).status == Charge.Status.VOIDED
    assert not job_storage().exists(queued.image_name or "x")


def test_deleting_twice_from_two_tabs_is_one_deletion(client, user):
    signed_in(client, user)
    assert client.post(DELETE, {"password": "pw-ada-1", "forfeit": "on"}).status_code == 302
    again = client.post(DELETE, {"password": "pw-ada-1", "forfeit": "on"})
    assert again.status_code == 302 and reverse("billing:login") in again["Location"]


@pytest.mark.parametrize("case", ["staff", "open payment", "running job"])
def test_deleting_is_refused_with_its_reason(client, card, user, case):
    if case == "staff":
        get_user_model().objects.filter(pk=user.pk).update(is_staff=True)
        expected = "Staff accounts"
    elif case == "open payment":
        TopUp.objects.create(user=user, credit=10, fee=Decimal("0.50"), total=Decimal("10.50"),
                             provider="stripe")  # fmt: skip
        expected = "is still open at the payment provider"
    else:
        paid_job(card, user, status="running")
        expected = "1 of your runs is running"
    user.refresh_from_db()
    signed_in(client, user)
    assert expected in client.get(DELETE).content.decode()
    refused = client.post(DELETE, {"password": "pw-ada-1", "forfeit": "on"})
    assert refused.status_code == 409
    assert expected in refused.content.decode()
    user.refresh_from_db()
    assert user.is_active and user.username == "ada"


def test_a_payment_started_more_than_a_day_ago_no_longer_holds_it_up(client, user):
    top_up = TopUp.objects.create(user=user, credit=10, fee=Decimal("0.50"),
                                  total=Decimal("10.50"), provider="stripe")  # fmt: skip
    TopUp.objects.filter(pk=top_up.pk).update(created_at=timezone.now() - timedelta(hours=25))
    signed_in(client, user)
    assert client.post(DELETE, {"password": "pw-ada-1", "forfeit": "on"}).status_code == 302


# --- an operator closes an account (a deletion asked for by email) ------------------------
USERS = reverse("admin:auth_user_changelist")


def actions_offered(page) -> list[str]:
    form = page.context["action_form"]
    return [name for name, _ in form.fields["action"].choices if name] if form else []


def test_an_operator_closes_an_account_as_its_owner_would(client, staff, user, other_user):
    from django.contrib.auth.models import Permission

    viewer = factories.user(username="support", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_user"))
    client.force_login(viewer)
    assert "close_selected" not in actions_offered(client.get(USERS))
    client.post(USERS, {"action": "close_selected", "_selected_action": [user.pk]})
    user.refresh_from_db()
    assert user.is_active  # may only look: nothing closed

    client.force_login(staff)
    assert "close_selected" in actions_offered(client.get(USERS))
    response = client.post(
        USERS, {"action": "close_selected", "_selected_action": [user.pk, staff.pk, viewer.pk]}
    )
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "Closed 1 account(s)." in page
    assert "You cannot close your own account here." in page
    assert "upport: Staff accounts are not deleted" in page  # the admin capitalises it
    user.refresh_from_db()
    assert (user.username, user.is_active) == (f"deleted-{user.pk}", False)
    staff.refresh_from_db()
    viewer.refresh_from_db()
    assert staff.is_active and viewer.is_active
    # The notice says who closed it (probe D: it said "as asked from its dashboard").
    [notice] = [m for m in mail.outbox if m.to == ["ada@example.com"]]
    assert "by Vitrine's staff" in notice.body and "dashboard" not in notice.body


def test_an_operator_closes_a_deactivated_account_too(client, staff, user):
    """Found from outside (probe D): the action skipped inactive users without a word, so an
    account an operator had deactivated kept its email, keys and uploads for good."""
    api_key_create(user=user, name="laptop")
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    client.force_login(staff)

    response = client.post(USERS, {"action": "close_selected", "_selected_action": [user.pk]})

    assert "Closed 1 account(s)." in client.get(response["Location"]).content.decode()
    user.refresh_from_db()
    assert (user.username, user.email) == (f"deleted-{user.pk}", "")
    assert ApiKey.objects.get(user=user).revoked_at is not None
    again = client.post(USERS, {"action": "close_selected", "_selected_action": [user.pk]})
    assert f"eleted-{user.pk} is closed already." in client.get(again["Location"]).content.decode()


def test_a_refused_deletion_does_not_use_up_the_password_attempts(client, card, user):
    """Found from outside (probe D): each try refused for a running run counted as one of
    the five password attempts, so the page that says "try again in a minute" was locked
    for 15 minutes after the fifth try."""
    running = paid_job(card, user, status="running")
    signed_in(client, user)
    for _ in range(6):
        response = client.post(DELETE, {"password": "pw-ada-1", "forfeit": "on"})
        assert response.status_code == 409
        assert "1 of your runs is running" in response.content.decode()
    Job.objects.filter(pk=running.pk).update(status="failed", finished_at=timezone.now())

    response = client.post(DELETE, {"password": "pw-ada-1", "forfeit": "on"})

    assert response.status_code == 302
    user.refresh_from_db()
    assert not user.is_active


def test_no_payment_starts_for_an_account_closed_meanwhile(user):
    """Found from outside (probe D): a top-up request that loaded its user before the close
    committed still started a payment, whose credit would land in the closed wallet."""
    from billing.services.accounts import account_close
    from billing.services.topups import ACCOUNT_CLOSED, top_up_create

    loaded_before = get_user_model().objects.get(pk=user.pk)
    account_close(user=user)

    with pytest.raises(ApplicationError) as refused:
        top_up_create(user=loaded_before, credit=Decimal("10"), provider="dev")

    assert (refused.value.message, refused.value.status) == (ACCOUNT_CLOSED, 409)
    assert not TopUp.objects.filter(user=user).exists()


@pytest.mark.parametrize("how", ["delete image", "close account"])
def test_the_cached_upright_copy_goes_with_the_image(client, card, user, how):
    """Found from outside (probe D): the image view keeps an upright copy of a turned upload
    in the shared cache for an hour; "Delete image" and closing the account left it there."""
    from django.core.cache import cache

    from playground.services import UPRIGHT_CACHE_KEY

    job = paid_job(card, user, status="succeeded")
    key = UPRIGHT_CACHE_KEY.format(job.image_sha256)
    cache.set(key, ("image/jpeg", b"the picture, upright"), 3600)

    if how == "delete image":
        assert services.job_image_delete(job=job)
    else:
        signed_in(client, user).post(DELETE, {"password": "pw-ada-1", "forfeit": "on"})

    assert cache.get(key) is None
    job.refresh_from_db()
    assert job.image_name == ""


def test_the_closed_account_no_longer_names_its_mailbox_in_the_sign_up_claim(client, user):
    from billing.models import SignupCreditClaim

    claim = SignupCreditClaim.objects.create(email="ada@example.com", user=user)
    signed_in(client, user).post(DELETE, {"password": "pw-ada-1", "forfeit": "on"})
    claim.refresh_from_db()
    assert claim.user_id is None  # the mailbox's credit stays claimed, by no one now


def test_a_job_queued_again_after_the_cancels_refuses_the_close(card, user):
    """A worker gives a running job back to the queue (a retry) between the close's cancels
    and its count: counted with the running ones, it refuses the close."""
    from billing.services.accounts import account_close_refusal

    paid_job(card, user, status="queued")
    assert account_close_refusal(user=user) is None  # the page: queued ones get cancelled
    assert "1 of your runs is running" in account_close_refusal(user=user, queued_too=True)


def test_a_call_waiting_for_a_job_the_close_cancelled_is_told_why(card, user, rf):
    """Each flavour's waiting call whose job the deletion cancelled answers 401 "the account
    was closed", not "busy, retry" (the retry would only meet a 401)."""
    from billing.services.accounts import account_close
    from playground import api, pipeline
    from playground.failures import ACCOUNT_CLOSED
    from playground.flavours import waiting
    from playground.flavours.cloudflare import cloudflare_answer
    from playground.flavours.hf import hf_answer

    queued = paid_job(card, user, status="queued")
    account_close(user=user)
    queued.refresh_from_db()
    assert (queued.status, queued.error_code) == ("cancelled", "account_closed")
    request = rf.post("/v1/inference/x")
    submitted = pipeline.Submitted(queued)

    own = api.job_response_from(request, queued, 0.5)
    hf = hf_answer(request, submitted, 0.5, waiting.FINAL, queued)
    cloudflare = cloudflare_answer(request, submitted, 0.5, waiting.FINAL, queued)

    assert (own.status_code, hf.status_code, cloudflare.status_code) == (401, 401, 401)
    assert json.loads(own.content)["error"]["code"] == "account_closed"
    assert json.loads(own.content)["error"]["message"] == ACCOUNT_CLOSED
    assert json.loads(hf.content) == {"error": ACCOUNT_CLOSED}
    body = json.loads(cloudflare.content)
    assert body["success"] is False and body["errors"][0]["message"] == ACCOUNT_CLOSED
    assert Charge.objects.get(job_id=queued.pk).status == Charge.Status.VOIDED
