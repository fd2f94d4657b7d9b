"""Sign-up credit: granted once per verified mailbox, never per account.

Sign-up mails a signed link (``signing.dumps``: a timestamped HMAC with ``SECRET_KEY``);
opening it proves the address receives mail and claims ``VITRINE_SIGNUP_CREDIT`` for that
mailbox. The claim row (unique on the normalised email) and the grant are written in one
transaction, so ten accounts on one inbox (``ada+1@``, ``a.da@gmail``...) earn it once, a
link opened twice grants once, and two tabs racing on it grant once (the unique index
decides; the loser's savepoint rolls back).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string

from billing.emails import normalise_email
from billing.models import SignupCreditClaim
from billing.services.topups import credit_grant
from catalog.errors import ApplicationError

SIGNUP_CREDIT_REASON = "Sign-up credit"
VERIFY_SALT = "billing.signup-email"
VERIFY_MAX_AGE = timedelta(days=7)
LINK_INVALID = "This verification link is not valid; sign in and ask for a new one."
LINK_EXPIRED = "This verification link has expired; sign in and ask for a new one."
VERIFY_SUBJECT = "Verify your email for Vitrine"


@dataclass(frozen=True)
class Verification:
    user: object
    granted: Decimal  # 0 when this mailbox had its credit already (or there is none)


def signup_credit_amount() -> Decimal:
    return Decimal(settings.VITRINE_SIGNUP_CREDIT)


def signup_credit_pending(*, user) -> bool:
    """Would verifying this user's email grant credit now?"""
    if signup_credit_amount() <= 0 or not user.email:
        return False
    return not SignupCreditClaim.objects.filter(email=normalise_email(user.email)).exists()


def email_verification_token(*, user) -> str:
    return signing.dumps({"u": user.pk, "e": normalise_email(user.email)}, salt=VERIFY_SALT)


def email_verification_send(*, user, verify_url: str) -> None:
    """Mail the link that grants the sign-up credit (nothing to send when there is none)."""
    if not signup_credit_pending(user=user):
        return
    body = render_to_string(
        "registration/verify_email.txt",
        {"user": user, "url": verify_url, "amount": signup_credit_amount()},
    )
    send_mail(VERIFY_SUBJECT, body, None, [user.email])


def signup_credit_claim(*, user) -> Decimal:
    """Grant the sign-up credit to ``user`` unless their mailbox had it; returns the amount."""
    amount = signup_credit_amount()
    if amount <= 0:
        return Decimal(0)
    with transaction.atomic():
        try:
            with transaction.atomic():  # a savepoint: a lost race leaves the outer one usable
                claim = SignupCreditClaim.objects.create(
                    email=normalise_email(user.email), user=user
                )
        except IntegrityError:
            return Decimal(0)  # this mailbox was credited before, on this account or another
        # The user id keys the grant too: one account never gets two sign-up credits.
        posting = credit_grant(
            user=user,
            amount=amount,
            reason=SIGNUP_CREDIT_REASON,
            idempotency_key=f"signup:{user.pk}",
        )
        claim.transaction = posting.transaction
        claim.save(update_fields=["transaction"])
    return amount if posting.created else Decimal(0)


def signup_email_verify(*, token: str) -> Verification:
    """Check a verification link and claim the sign-up credit it carries."""
    try:
        data = signing.loads(token, salt=VERIFY_SALT, max_age=VERIFY_MAX_AGE)
    except signing.SignatureExpired:
        raise ApplicationError(LINK_EXPIRED, code="link_expired") from None
    except signing.BadSignature:
        raise ApplicationError(LINK_INVALID, code="link_invalid") from None
    user = get_user_model().objects.filter(pk=data.get("u")).first()
    # The address the link was sent to must still be the account's.
    if user is None or normalise_email(user.email) != data.get("e"):
        raise ApplicationError(LINK_INVALID, code="link_invalid")
    return Verification(user=user, granted=signup_credit_claim(user=user))
