"""Per-job charges: reserve when a job is accepted, post on success, void otherwise.

The job id is the charge's unique key and every ledger movement's idempotency key, so a
retried request or a redelivered task never charges twice, and a failed job costs nothing.

Many users at once: a reservation moves money from the user's wallet to the user's own
holds account, and posting moves it from there to a revenue account whose balance is not
cached (an INSERT, no UPDATE; see ``billing.services.ledger``). So a charge locks only
rows that belong to its user (their wallet and holds, in pk order) and the charge row
itself; charges of different users never wait for each other, and every query here is
on the hot path of every API call.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from billing.models import AccountKind, ApiKey, Charge, LedgerTransaction, ProviderKey
from billing.services.ledger import ledger_accounts, ledger_post, user_accounts
from catalog.errors import ApplicationError
from catalog.models import ModelCard, PriceRoute
from catalog.pricing import format_usd, image_cost

SPEND_CAP_REACHED = (
    "This API key's monthly spend cap of {cap} is reached ({spent} spent this month, this "
    "call costs {cost}). Raise the cap or use another key."
)
MODEL_NOT_ALLOWED = "This API key may not call {model_id}; its allow-list names other models."
NO_PRICE = "{model_id} has no price on the {route} route yet."


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _check_key_limits(*, api_key: ApiKey, card: ModelCard, cost: Decimal, now: datetime) -> None:
    allowed = list(api_key.allowed_models.values_list("pk", flat=True))
    if allowed and card.pk not in allowed:
        raise ApplicationError(
            MODEL_NOT_ALLOWED.format(model_id=card.model_id),
            code="model_not_allowed",
            status=403,
        )
    if api_key.monthly_spend_cap is None:
        return
    # Lock the key for the rest of charge_reserve's transaction: concurrent calls on one key
    # then sum the month's charges one after another (each sees the charges committed before
    # it), so together they cannot overshoot the cap. Other keys are not held up.
    # NO KEY UPDATE: enough to queue callers of this key, and it does not conflict with the
    # KEY SHARE that inserting a charge referencing the key takes. Locked before the
    # accounts (the one order: own rows first, then accounts by pk).
    ApiKey.objects.select_for_update(no_key=True).filter(pk=api_key.pk).exists()
    spent = Charge.objects.filter(
        api_key=api_key,
        created_at__gte=month_start(now),
        status__in=[Charge.Status.RESERVED, Charge.Status.POSTED],
    ).aggregate(total=Sum("amount"))["total"] or Decimal(0)
    if spent + cost > api_key.monthly_spend_cap:
        raise ApplicationError(
            SPEND_CAP_REACHED.format(
                cap=format_usd(api_key.monthly_spend_cap),
                spent=format_usd(spent),
                cost=format_usd(cost),
            ),
            code="spend_cap_reached",
            status=402,
            type="insufficient_credits",
        )


def user_has_byok(*, user, route: PriceRoute) -> bool:
    return (
        route.byok_available and ProviderKey.objects.filter(user=user, provider=route.slug).exists()
    )


@transaction.atomic
def charge_reserve(
    *,
    job_id,
    user,
    card: ModelCard,
    route: PriceRoute,
    api_key: ApiKey | None = None,
    units: int = 1,
    now: datetime | None = None,
) -> Charge:
    """Hold the job's cost in the wallet before any work is queued.

    Raises InsufficientCredits (402), a spend-cap error (402) or an allow-list error (403);
    then nothing is held and nothing is recorded. Calling it again for the same job returns
    the same charge.
    """
    existing = Charge.objects.filter(job_id=job_id).first()
    if existing is not None:
        return existing
    now = now or timezone.now()
    # The price in force now, recorded on the charge: a later price change never reprices it.
    version = route.history.order_by("-effective_at", "-id").first()
    if version is None:
        raise ApplicationError(
            NO_PRICE.format(model_id=card.model_id, route=route.slug), code="no_price", status=409
        )
    byok = user_has_byok(user=user, route=route)
    would_be = image_cost(unit_price=version.price, images=units, byok=False)
    amount = image_cost(unit_price=version.price, images=units, byok=byok)
    if api_key is not None:
        _check_key_limits(api_key=api_key, card=card, cost=amount, now=now)
    fields = {
        "job_id": job_id,
        "user": user,
        "api_key": api_key,
        "card": card,
        "route": route,
        "price_version": version,
        "unit_price": version.price,
        "units": units,
        "amount": amount,
        "would_be_amount": would_be,
        "byok": byok,
    }
    if amount > 0:
        wallet, holds = user_accounts(user)
        posting = ledger_post(
            kind=LedgerTransaction.Kind.RESERVE,
            idempotency_key=f"reserve:{job_id}",
            entries=[(wallet, -amount), (holds, amount)],
            memo=f"{card.model_id} x{units}",
        )
        if not posting.created:
            # The same job was reserved by a concurrent call (a retried request) that held
            # this wallet's lock before us; its charge committed with its hold, so it is
            # visible now: that charge is the one, and we moved nothing.
            return Charge.objects.get(job_id=job_id)
        # We hold the wallet's lock: any other reservation of this job waits for it and
        # then answers from the branch above, so no savepoint is needed for this insert.
        return Charge.objects.create(**fields)
    try:
        with transaction.atomic():
            return Charge.objects.create(**fields)
    except IntegrityError:
        # Free (BYOK) and reserved at the same moment on another connection: no lock held
        # and no money moved, so the other connection's charge is simply the one.
        existing = Charge.objects.filter(job_id=job_id).first()
        if existing is None:
            raise
        return existing


def _settle(*, job_id, to: str) -> Charge | None:
    with transaction.atomic():
        # Lock the charge row only (of=self): locking the joined route too would make every
        # settlement wait for, and deadlock with, reservations that insert charges on that
        # route (each takes KEY SHARE on it). NO KEY UPDATE: we change the status, no key.
        charge = (
            Charge.objects.select_for_update(no_key=True, of=("self",))
            .select_related("route")
            .filter(job_id=job_id)
            .first()
        )
        if charge is None or charge.status != Charge.Status.RESERVED:
            return charge  # no charge (anonymous playground) or already settled: idempotent
        if charge.amount > 0:
            revenue_kind = AccountKind.PROVIDER_PAYABLE
            if charge.route.is_own:
                revenue_kind = AccountKind.INFERENCE_REVENUE
            # One query for the user's accounts and the revenue account.
            accounts = ledger_accounts(charge.user_id, revenue_kind)
            wallet, holds = accounts[AccountKind.WALLET], accounts[AccountKind.HOLDS]
            if to == Charge.Status.POSTED:
                entries = [(holds, -charge.amount), (accounts[revenue_kind], charge.amount)]
                kind, key = LedgerTransaction.Kind.POST, f"post:{job_id}"
            else:
                entries = [(holds, -charge.amount), (wallet, charge.amount)]
                kind, key = LedgerTransaction.Kind.VOID, f"void:{job_id}"
            ledger_post(kind=kind, idempotency_key=key, entries=entries, memo=f"job {job_id}")
        charge.status = to
        charge.settled_at = timezone.now()
        charge.save(update_fields=["status", "settled_at"])
    return charge


def charge_post(*, job_id) -> Charge | None:
    """The job succeeded: the held amount becomes revenue (or is owed to the provider)."""
    return _settle(job_id=job_id, to=Charge.Status.POSTED)


def charge_void(*, job_id) -> Charge | None:
    """The job failed, was cancelled or timed out: the held amount goes back to the wallet."""
    return _settle(job_id=job_id, to=Charge.Status.VOIDED)
