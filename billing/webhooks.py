"""Stripe's webhook: the only way card payments turn into credit.

Credit is granted by the signed ``checkout.session.completed`` event, never by the browser
coming back from Checkout (a user can forge a redirect, not Stripe's signature). The
handler is idempotent: Stripe delivers at least once and retries anything that is not 2xx
for days, so a replayed event, or a second event for a top-up already credited, answers 200
and changes nothing (djangoproject.com ``fundraising/views.py``). Only a request we cannot
trust (bad signature, unreadable payload) gets a 4xx.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import stripe
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing.models import TopUp
from billing.payments import _cents
from billing.services.topups import top_up_complete
from catalog.errors import ApplicationError

logger = logging.getLogger(__name__)

BAD_SIGNATURE = "The Stripe-Signature header is missing or does not match this payload."
BAD_PAYLOAD = "The webhook payload is not a Stripe event."
NOTE_IGNORED = "Event type {type} is not handled; ignored."
NOTE_NOT_PAID = "The session is not paid yet; nothing credited."
NOTE_UNKNOWN_TOP_UP = "No top-up {ref!r} here; nothing credited."
NOTE_DUPLICATE = "Top-up {top_up} was already settled; nothing more credited."
# The same for a top-up an earlier event marked failed (expired, or an amount that did not
# match): it said "already settled" (session 46's probe), though nothing was ever credited.
NOTE_ALREADY_FAILED = "Top-up {top_up} was already marked failed; nothing credited."
NOTE_AMOUNT_MISMATCH = (
    "The session's amount ({amount} {currency}) does not match top-up {top_up} "
    "({expected} usd); nothing credited, the top-up is marked failed."
)
NOTE_CREDITED = "Top-up {top_up} credited."
NOTE_UNPAID = "Top-up {top_up} was not paid; marked failed, nothing credited."

# A Checkout session is paid either at once (cards) or later (bank debits); both events
# carry the same session object.
PAID_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
# A session that will never be paid: abandoned until it expired, or its bank debit failed.
# Its top-up is marked failed, else the dashboard would list it as pending forever.
UNPAID_EVENTS = ("checkout.session.expired", "checkout.session.async_payment_failed")


def _error(message: str, code: str, status: int = 400) -> JsonResponse:
    return JsonResponse(
        ApplicationError(message, code=code, status=status).as_dict(), status=status
    )


def _ok(note: str) -> JsonResponse:
    return JsonResponse({"received": True, "note": note})


def _field(obj: Any, key: str, default: Any = None) -> Any:
    """obj[key] for a StripeObject (not a dict in stripe>=15) or a plain dict."""
    try:
        return obj[key] if obj is not None and key in obj else default
    except (KeyError, TypeError):
        return default


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    """Verify Stripe's signature, then credit a paid top-up once."""
    payload = request.body
    try:
        event = stripe.Webhook.construct_event(
            payload, request.headers.get("Stripe-Signature"), settings.STRIPE_WEBHOOK_SECRET
        )
    except stripe.SignatureVerificationError as exc:
        # Also what an unset STRIPE_WEBHOOK_SECRET gives: nothing is trusted without one.
        # Stripe's reason is logged: "Timestamp outside the tolerance zone" (300 s) is this
        # machine's clock, not the secret (every top-up refused until it is right; session 43).
        logger.warning("Stripe webhook with a bad signature refused: %s", exc)
        return _error(BAD_SIGNATURE, code="invalid_signature")
    except (ValueError, TypeError, AttributeError):
        # JSON and UTF-8 errors are ValueErrors; stripe assumes the JSON is an object and
        # fails with AttributeError on a signed array. Only a leaked secret gets this far.
        logger.warning("Stripe webhook with an unreadable payload refused")
        return _error(BAD_PAYLOAD, code="invalid_payload")
    if _field(event, "object") != "event":
        logger.warning("Stripe webhook with a payload that is not an event refused")
        return _error(BAD_PAYLOAD, code="invalid_payload")

    event_id = str(_field(event, "id", ""))
    event_type = str(_field(event, "type", ""))
    session = _field(_field(event, "data"), "object")
    if event_type in UNPAID_EVENTS:
        return _fail_session(event_id=event_id, session=session)
    if event_type not in PAID_EVENTS:
        return _ok(NOTE_IGNORED.format(type=event_type))
    if _field(session, "payment_status") != "paid":
        return _ok(NOTE_NOT_PAID)
    return _credit_session(event_id=event_id, session=session)


def _top_up_id(session: Any) -> uuid.UUID | None:
    ref = _field(session, "client_reference_id") or _field(_field(session, "metadata"), "top_up")
    try:
        return uuid.UUID(str(ref))
    except (TypeError, ValueError):
        return None


def _fail_session(*, event_id: str, session: Any) -> JsonResponse:
    """Mark a still-pending top-up failed; one already credited (or failed) is left as it is."""
    top_up_id = _top_up_id(session)
    with transaction.atomic():
        top_up = (
            TopUp.objects.select_for_update().filter(pk=top_up_id).first() if top_up_id else None
        )
        if top_up is None:
            return _ok(NOTE_UNKNOWN_TOP_UP.format(ref=_field(session, "client_reference_id")))
        if top_up.status != TopUp.Status.PENDING or top_up.provider_event_id:
            return _ok(_settled_note(top_up))
        top_up.status = TopUp.Status.FAILED
        top_up.save(update_fields=["status"])
    logger.info("Stripe event %s: top-up %s was not paid", event_id, top_up.pk)
    return _ok(NOTE_UNPAID.format(top_up=top_up.pk))


def _settled_note(top_up: TopUp) -> str:
    note = NOTE_ALREADY_FAILED if top_up.status == TopUp.Status.FAILED else NOTE_DUPLICATE
    return note.format(top_up=top_up.pk)


def _credit_session(*, event_id: str, session: Any) -> JsonResponse:
    top_up_id = _top_up_id(session)
    with transaction.atomic():
        # The row lock serialises concurrent deliveries of the same event (Stripe may send
        # a retry while the first attempt is still running): the second waits, then sees
        # the top-up settled.
        top_up = (
            TopUp.objects.select_for_update().filter(pk=top_up_id).first() if top_up_id else None
        )
        if top_up is None:
            ref = _field(session, "client_reference_id")
            # 200, not 404: Stripe would retry a non-2xx for days, and retrying cannot help.
            logger.warning("Stripe event %s names no known top-up (%r)", event_id, ref)
            return _ok(NOTE_UNKNOWN_TOP_UP.format(ref=ref))
        if top_up.status != TopUp.Status.PENDING or top_up.provider_event_id:
            # A replayed event, or another event for a top-up already credited or failed.
            return _ok(_settled_note(top_up))
        if TopUp.objects.filter(provider_event_id=event_id).exists():
            # The same event id already settled a different top-up: never credit it twice.
            logger.warning("Stripe event %s already settled another top-up", event_id)
            return _ok(NOTE_DUPLICATE.format(top_up=top_up.pk))

        amount = _field(session, "amount_total")
        currency = str(_field(session, "currency", "")).lower()
        expected = _cents(top_up.total)
        top_up.provider_event_id = event_id
        if amount != expected or currency != "usd":
            # Money arrived that does not match what was quoted: a person must look at it.
            logger.error(
                "Stripe event %s: amount %s %s does not match top-up %s (%s usd)",
                event_id, amount, currency, top_up.pk, expected,
            )  # fmt: skip
            top_up.status = TopUp.Status.FAILED
            top_up.save(update_fields=["provider_event_id", "status"])
            return _ok(
                NOTE_AMOUNT_MISMATCH.format(
                    amount=amount, currency=currency, top_up=top_up.pk, expected=expected
                )
            )
        update = ["provider_event_id"]
        if not top_up.provider_session_id and _field(session, "id"):
            top_up.provider_session_id = str(_field(session, "id"))
            update.append("provider_session_id")
        top_up.save(update_fields=update)
        top_up_complete(top_up=top_up)
    logger.info("Stripe event %s credited top-up %s", event_id, top_up.pk)
    return _ok(NOTE_CREDITED.format(top_up=top_up.pk))
