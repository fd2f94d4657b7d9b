"""Per-job charges: reserve when a job is accepted, post on success, void otherwise.

The job id is the charge's unique key and every ledger movement's idempotency key, so a
retried request or a redelivered task never charges twice, and a failed job costs nothing.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from billing.models import AccountKind, ApiKey, Charge, LedgerTransaction, ProviderKey
from billing.services.ledger import ledger_post, system_account, wallet_for
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
    ApiKey.objects.select_for_update().filter(pk=api_key.pk).exists()
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
    posting = None
    if amount > 0:
        posting = ledger_post(
            kind=LedgerTransaction.Kind.RESERVE,
            idempotency_key=f"reserve:{job_id}",
            entries=[(wallet_for(user), -amount), (system_account(AccountKind.HOLDS), amount)],
            memo=f"{card.model_id} x{units}",
        )
    try:
        with transaction.atomic():
            return Charge.objects.create(
                job_id=job_id,
                user=user,
                api_key=api_key,
                card=card,
                route=route,
                price_version=version,
                unit_price=version.price,
                units=units,
                amount=amount,
                would_be_amount=would_be,
                byok=byok,
            )
    except IntegrityError:
        # The same job reserved at the same moment on another connection (a retried
        # request): that charge is the one, and our ledger_post found its reservation and
        # moved nothing. Should we have posted a hold after all, re-raise so that it rolls
        # back with this transaction rather than stay held with no charge to release it.
        existing = Charge.objects.filter(job_id=job_id).first()
        if existing is None or (posting is not None and posting.created):
            raise
        return existing


def _settle(*, job_id, to: str) -> Charge | None:
    with transaction.atomic():
        charge = (
            Charge.objects.select_for_update()
            .select_related("route", "user")
            .filter(job_id=job_id)
            .first()
        )
        if charge is None or charge.status != Charge.Status.RESERVED:
            return charge  # no charge (anonymous playground) or already settled: idempotent
        holds = system_account(AccountKind.HOLDS)
        if to == Charge.Status.POSTED:
            revenue = system_account(
                AccountKind.INFERENCE_REVENUE
                if charge.route.is_own
                else AccountKind.PROVIDER_PAYABLE
            )
            entries = [(holds, -charge.amount), (revenue, charge.amount)]
            kind, key = LedgerTransaction.Kind.POST, f"post:{job_id}"
        else:
            entries = [(holds, -charge.amount), (wallet_for(charge.user), charge.amount)]
            kind, key = LedgerTransaction.Kind.VOID, f"void:{job_id}"
        if charge.amount > 0:
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
