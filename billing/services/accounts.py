"""Closing an account, from its dashboard, as Hugging Face, Replicate and OpenRouter allow.

The user row is kept but is no longer anyone: the ledger, top-ups and charges refer to it
(PROTECT: a statement of account outlives the customer), so it is emptied instead of
deleted. Username ``deleted-<id>``, no email, no usable password, inactive: its sessions
and API keys stop at once (both check ``is_active``), its username and email are free for a
new sign-up (the sign-up credit is not: its claim is kept by mailbox). What identifies the
person or acts for them goes: API keys revoked, provider keys and the webhook secret
deleted, notify-me votes, idempotency records and cached answers deleted, queued jobs
cancelled (their charges released), runs made private, uploads deleted now (free tries
wholly, paid jobs' images; their rows and detections stay with the charges).

Money: the wallet's remaining credit is not paid out (as on OpenRouter); the page says how
much before the user confirms. The ledger is untouched, so the books still balance.
Refused, with the reason, while a payment the user started may still complete (its
credit would land in a closed wallet) or one of their jobs is running (it would leave an
image behind); both end on their own within minutes to a day.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from billing.models import ApiKey, ProviderKey, SignupCreditClaim, TopUp, WebhookSecret
from billing.services.ledger import wallet_for
from catalog.errors import ApplicationError
from catalog.models import DemandVote
from catalog.pricing import format_usd
from playground import services as jobs
from playground.failures import ACCOUNT_CLOSED_CODE, closed_username
from playground.models import CachedCall, IdempotencyRecord, Job
from playground.retention import uploads_purge_owner
from playground.webhooks import webhooks_close_owner

logger = logging.getLogger(__name__)

# Stripe Checkout's default expiry: a payment started earlier than this can no longer
# complete (its expiry event marks it failed; billing/webhooks.py).
OPEN_PAYMENT_WINDOW = timedelta(hours=24)
STAFF_ACCOUNT = (
    "Staff accounts are not deleted from the dashboard: another administrator removes "
    "your staff rights first."
)
PAYMENT_OPEN = (
    "A payment you started on {started} is still open at the payment provider: if it "
    "completes, its credit goes to your wallet. Your account can be deleted once it has "
    "completed or expired (at the latest 24 hours after it started)."
)
JOBS_RUNNING = (
    "{count} of your runs {verb} running; deleting your account now would leave {pronoun} "
    "behind. Try again in a minute, once {pronoun} {end}."
)


PASSWORD_CHANGED_SUBJECT = "Your Vitrine password was changed"
ACCOUNT_DELETED_SUBJECT = "Your Vitrine account was deleted"


def notice_send(*, to: str, subject: str, template: str, context: dict) -> bool:
    """Mail a security notice (a password changed, an account deleted) to ``to``. What it
    tells of is done already: a mail server that refuses it is logged, never an error."""
    if not to:
        return False
    context = {"when": timezone.now().strftime("%Y-%m-%d %H:%M UTC"), **context}
    try:
        send_mail(subject, render_to_string(template, context), None, [to])
    except Exception:
        logger.warning("the notice %r to a user could not be sent", subject, exc_info=True)
        return False
    return True


@dataclass(frozen=True)
class ClosedAccount:
    forfeited: Decimal  # the wallet's credit left, not paid out
    keys_revoked: int
    jobs_cancelled: int
    tries_deleted: int
    images_deleted: int
    images_left: int  # a storage outage: deleted at the usual retention's end


def account_close_refusal(*, user, queued_too: bool = False) -> str | None:
    """Why ``user``'s account cannot be closed now, or None. ``queued_too``: queued jobs
    count as running (the close, after cancelling its queued jobs: one queued since was
    given back by its worker for a retry, or made meanwhile)."""
    if user.is_staff or user.is_superuser:
        return STAFF_ACCOUNT
    open_payment = (
        TopUp.objects.filter(
            user=user,
            status=TopUp.Status.PENDING,
            created_at__gte=timezone.now() - OPEN_PAYMENT_WINDOW,
        )
        .order_by("-created_at")
        .first()
    )
    if open_payment is not None:
        started = timezone.localtime(open_payment.created_at).strftime("%Y-%m-%d %H:%M %Z")
        return PAYMENT_OPEN.format(started=started)
    busy = [Job.Status.RUNNING, *([Job.Status.QUEUED] if queued_too else [])]
    running = Job.objects.filter(owner=user, status__in=busy).count()
    if running:
        one = running == 1
        return JOBS_RUNNING.format(
            count=running,
            verb="is" if one else "are",
            pronoun="it" if one else "them",
            end="has finished" if one else "have finished",
        )
    return None


def account_close(*, user, by_operator: bool = False) -> ClosedAccount:
    """Close ``user``'s account (see the module); an ``account_not_closable`` 409 when
    ``account_close_refusal`` has a reason. ``by_operator``: closed from the admin (the
    notice says so, not that it was asked from the dashboard)."""
    now = timezone.now()
    with transaction.atomic():
        # The row lock orders this against a second close of the same account, and against
        # a paid call's transaction creating a job, which locks the same row first
        # (limits.inflight_jobs_check): a call that locked it first has committed its job
        # before the queued ones are read below; one that locks it after finds the account
        # closed (services.job_create) and creates nothing.
        person = get_user_model().objects.select_for_update().get(pk=user.pk)
        # Queued jobs are cancelled before the running ones are counted, in this
        # transaction: a worker's claim (a compare-and-set on status='queued') either
        # committed before (the job is running: refused below, the cancels undone) or
        # waits for this commit and finds the job cancelled. Counted first and cancelled
        # after the commit, a job claimed in between ran and was charged after the account
        # was closed, its upload left behind (found from outside, probe D).
        queued = Job.objects.filter(owner_id=person.pk, status=Job.Status.QUEUED)
        cancelled = sum(
            jobs.job_cancel(job=job, error_code=ACCOUNT_CLOSED_CODE) for job in queued.only("pk")
        )
        # Queued and running counted in one statement: a job a worker gave back to the
        # queue (a retry) after the cancels above is counted too (review, session 41).
        refusal = account_close_refusal(user=person, queued_too=True)
        if refusal:
            raise ApplicationError(refusal, code="account_not_closable", status=409)
        email, username = person.email, person.get_username()
        keys_revoked = ApiKey.objects.filter(user=person, revoked_at__isnull=True).update(
            revoked_at=now
        )
        ProviderKey.objects.filter(user=person).delete()
        WebhookSecret.objects.filter(user=person).delete()
        IdempotencyRecord.objects.filter(user=person).delete()
        CachedCall.objects.filter(owner=person).delete()
        DemandVote.objects.filter(user=person).delete()
        # The mailbox's claim stays (its sign-up credit is given once, ever) but no longer
        # names this account: SET_NULL fires only when a row is deleted, and this one is
        # kept, so the claim tied the closed account to the address.
        SignupCreditClaim.objects.filter(user=person).update(user=None)
        if email:
            DemandVote.objects.filter(email__iexact=email).delete()
        person.username = closed_username(person.pk)
        person.email = ""
        person.first_name = person.last_name = ""
        person.is_active = False
        person.set_unusable_password()
        person.save()
    Job.objects.filter(owner_id=person.pk, is_public=True).update(is_public=False)
    # After the cancels: each queued its job's webhook, which must not go out now (nor make
    # a signing secret again for a closed account; webhook_deliver checks it too).
    webhooks_close_owner(owner_id=person.pk)
    purged = uploads_purge_owner(owner_id=person.pk)
    closed = ClosedAccount(
        forfeited=Decimal(wallet_for(person).balance),
        keys_revoked=keys_revoked,
        jobs_cancelled=cancelled,
        **purged,
    )
    logger.info("account %s closed: %s", person.pk, closed)
    notice_send(
        to=email,
        subject=ACCOUNT_DELETED_SUBJECT,
        template="registration/account_deleted_email.txt",
        context={
            "username": username,
            "forfeited": format_usd(closed.forfeited) if closed.forfeited > 0 else "",
            "by_operator": by_operator,
        },
    )
    return closed
