"""An account an operator suspended (unticked "active" in the admin, not closed): its jobs
accepted before still run and are charged, so their webhooks still go out. They were failed
as "The account was closed", their address erased, and nothing went out once the account
was active again (session 47's operator probe). A real receiver on loopback."""

from __future__ import annotations

import pytest

from billing.services.accounts import account_close
from billing.services.webhook_secrets import webhook_secret_get
from playground import webhooks
from playground.models import WebhookDelivery
from tests.billing.test_account_close import card, paid_job, user  # noqa: F401  (fixtures)
from tests.playground.test_webhook_guard import receiver  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


def pending_delivery(job, receiver) -> WebhookDelivery:  # noqa: F811
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    delivery = webhooks.webhook_register(job=job, url=url)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=WebhookDelivery.Status.PENDING)
    return delivery


def test_a_suspended_accounts_charged_job_is_still_delivered(card, user, receiver):  # noqa: F811
    webhook_secret_get(user=user)
    delivery = pending_delivery(paid_job(card, user, status="succeeded"), receiver)
    user.is_active = False
    user.save()

    assert webhooks.webhook_deliver(delivery_id=delivery.pk) == WebhookDelivery.Status.DELIVERED
    assert [path for path, *_ in receiver.hits] == ["/hook"]


def test_a_closed_accounts_job_is_not(card, user, receiver):  # noqa: F811
    delivery = pending_delivery(paid_job(card, user, status="succeeded"), receiver)
    account_close(user=user)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=WebhookDelivery.Status.PENDING)

    assert webhooks.webhook_deliver(delivery_id=delivery.pk) == WebhookDelivery.Status.FAILED
    assert receiver.hits == []
    delivery.refresh_from_db()
    assert (delivery.url, delivery.last_error) == ("", webhooks.ACCOUNT_CLOSED)
