"""Per-job charges: reserve when a job is accepted, post on success, void otherwise.

The job id is the charge's unique key and every ledger movement's idempotency key, so a
retried request or a redelivered task never charges twice, and a failed job costs nothing.

Many users at once: a reservation moves money from the user's wallet to the user's own
holds account, and posting moves it from there to a revenue account; only the wallet
caches a balance (the others are INSERTed into, never updated; see ``billing.models``). So
a reservation locks one row of its user's (the wallet) besides its own charge row, a post
locks only its charge row, and a void its charge row and then the wallet. Charges of
different users never wait for each other, and one user's posts do not wait for their
reservations. Every query here is on the hot path of every API call.

Two implementations, one behaviour. On PostgreSQL a reservation and a settlement are each
one round trip: a PL/pgSQL function (``billing/0006_charge_functions_pg``, replaced by 0008) does
what the ORM path does, with the same statements, locks and lock order, next to the data.
Called outside a transaction (autocommit) it is its own transaction: no BEGIN/COMMIT round
trips; inside one (a job's creation or completion) it joins it. On two cores, Python and
the server parsing ~21 ORM statements per charge capped charges/s, not the locks. The two
calls are prepared statements (``catalog.db.prepared_row``). SQLite
(single-user, embedded) keeps the ORM path. A rare case the function leaves to Python (a
user's first charge, whose accounts do not exist yet) answers ``fallback`` having written
nothing, and the ORM path runs. tests/billing/test_charge_paths_pg.py checks that both
paths leave identical ledgers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from billing.models import AccountKind, ApiKey, Charge, LedgerTransaction, ProviderKey
from billing.services.ledger import (
    InsufficientCredits,
    ledger_accounts,
    ledger_post,
    user_accounts,
)
from catalog.db import prepared_row
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


def key_allow_list_check(api_key: ApiKey | None, card: ModelCard) -> None:
    """403 ``model_not_allowed`` when ``api_key``'s allow-list names other models. The
    reservation checks it with its charge; a quote, an Idempotency-Key's replay and a cached
    answer charge nothing and check it here."""
    if api_key is None:
        return
    allowed = list(api_key.allowed_models.values_list("pk", flat=True))
    if allowed and card.pk not in allowed:
        raise _model_not_allowed(card)


def _check_key_limits(*, api_key: ApiKey, card: ModelCard, cost: Decimal, now: datetime) -> None:
    key_allow_list_check(api_key, card)
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
        raise _spend_cap_reached(cap=api_key.monthly_spend_cap, spent=spent, cost=cost)


def user_has_byok(*, user, route: PriceRoute) -> bool:
    return (
        route.byok_available and ProviderKey.objects.filter(user=user, provider=route.slug).exists()
    )


# Charge's concrete fields in model order: the columns the PostgreSQL functions return
# after (outcome, detail1, detail2). A test checks they still match the model.
CHARGE_FIELDS = (
    "id",
    "job_id",
    "user_id",
    "api_key_id",
    "card_id",
    "route_id",
    "price_version_id",
    "unit_price",
    "units",
    "amount",
    "would_be_amount",
    "byok",
    "status",
    "created_at",
    "settled_at",
)
# Every parameter typed: the statements are prepared (see catalog.db.prepared_row), and a prepared
# statement's parameter types are fixed when it is parsed.
_RESERVE_SQL = (
    "SELECT * FROM vitrine_charge_reserve(%s::uuid, %s::integer, %s::bigint, %s::bigint,"
    " %s::boolean, %s::text, %s::bigint, %s::numeric, %s::timestamptz, %s::integer, %s::text,"
    " %s::text)"
)
_SETTLE_ARGS = "(%s::uuid, %s::text, %s::text, %s::text, %s::text)"
_SETTLE_SQL = f"SELECT * FROM vitrine_charge_settle{_SETTLE_ARGS}"
# The settlement as an expression inside the statement that finishes its job (one
# statement committed alone): raises SQLSTATE SETTLE_NEEDS_ORM where vitrine_charge_settle
# answers "fallback", which undoes the whole statement (billing migration 0009).
SETTLE_IN_FINISH_CALL = f"vitrine_charge_settle_in_finish{_SETTLE_ARGS}"
SETTLE_NEEDS_ORM = "VT001"
_FALLBACK = object()  # the function left this case to the ORM path


def _use_sql_functions() -> bool:
    return connection.vendor == "postgresql"


def _charge_from_row(row) -> Charge:
    return Charge.from_db(connection.alias, CHARGE_FIELDS, row[3:])


def _no_price(card: ModelCard, route: PriceRoute) -> ApplicationError:
    return ApplicationError(
        NO_PRICE.format(model_id=card.model_id, route=route.slug), code="no_price", status=409
    )


def _model_not_allowed(card: ModelCard) -> ApplicationError:
    return ApplicationError(
        MODEL_NOT_ALLOWED.format(model_id=card.model_id), code="model_not_allowed", status=403
    )


def _spend_cap_reached(*, cap: Decimal, spent: Decimal, cost: Decimal) -> ApplicationError:
    return ApplicationError(
        SPEND_CAP_REACHED.format(
            cap=format_usd(cap), spent=format_usd(spent), cost=format_usd(cost)
        ),
        code="spend_cap_reached",
        status=402,
        type="insufficient_credits",
    )


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
    reservation = Reservation(
        job_id=job_id, user=user, card=card, route=route, api_key=api_key, units=units,
        now=now or timezone.now(),
    )  # fmt: skip
    statement = reservation.statement()
    return reservation.answer(prepared_row(*statement) if statement is not None else None)


@dataclass(frozen=True)
class Reservation:
    """``charge_reserve``'s work, for a caller that sends its one statement (PostgreSQL) with
    its own in one round trip (``catalog.db.prepared_pipeline``) and reads the answer later
    in the same transaction."""

    job_id: Any
    user: Any
    card: ModelCard
    route: PriceRoute
    api_key: ApiKey | None = None
    units: int = 1
    now: datetime = field(default_factory=timezone.now)

    def statement(self) -> tuple[str, list] | None:
        """vitrine_charge_reserve's call and parameters; None where there is none (SQLite)."""
        if not _use_sql_functions():
            return None
        job_id, units, cap = self.job_id, self.units, None
        if self.api_key is not None:
            cap = self.api_key.monthly_spend_cap
        params = [
            job_id,
            self.user.pk,
            self.card.pk,
            self.route.pk,
            self.route.byok_available,
            self.route.slug,
            self.api_key.pk if self.api_key is not None else None,
            cap,
            month_start(self.now) if cap is not None else None,
            units,
            f"reserve:{job_id}",
            f"{self.card.model_id} x{units}"[:300],
        ]
        return _RESERVE_SQL, params

    def answer(self, row) -> Charge:
        """What ``charge_reserve`` returns or raises, from the row ``statement`` answered
        (None: no statement was sent; the ORM path reserves now)."""
        if row is not None:
            charge = _reserve_outcome(
                row, user=self.user, card=self.card, route=self.route, api_key=self.api_key
            )
            if charge is not _FALLBACK:
                return charge
        return _reserve_orm(
            job_id=self.job_id, user=self.user, card=self.card, route=self.route,
            api_key=self.api_key, units=self.units, now=self.now,
        )  # fmt: skip


def _reserve_outcome(row, *, user, card, route, api_key):
    """The charge vitrine_charge_reserve's row stands for, its error raised, or _FALLBACK."""
    outcome = row[0]
    if outcome == "created":
        charge = _charge_from_row(row)
        # As the ORM path returns it: the objects it was made from, no query to reach them.
        charge.user, charge.card, charge.route, charge.api_key = user, card, route, api_key
        return charge
    if outcome == "existing":
        return _charge_from_row(row)
    if outcome == "insufficient":
        raise InsufficientCredits(balance=row[1], cost=row[2])
    if outcome == "no_price":
        raise _no_price(card, route)
    if outcome == "model_not_allowed":
        raise _model_not_allowed(card)
    if outcome == "spend_cap_reached":
        raise _spend_cap_reached(cap=api_key.monthly_spend_cap, spent=row[1], cost=row[2])
    if outcome == "fallback":
        return _FALLBACK
    raise RuntimeError(f"vitrine_charge_reserve answered {outcome!r}")


@transaction.atomic
def _reserve_orm(*, job_id, user, card, route, api_key, units, now) -> Charge:
    """charge_reserve with the ORM: SQLite, and PostgreSQL's rare cases (see above)."""
    existing = Charge.objects.filter(job_id=job_id).first()
    if existing is not None:
        return existing
    # The price in force now, recorded on the charge: a later price change never reprices it.
    version = route.history.order_by("-effective_at", "-id").first()
    if version is None:
        raise _no_price(card, route)
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


def settle_params(*, job_id, job_succeeded: bool) -> list:
    """The parameters of a job's settlement function (``_SETTLE_ARGS``): posted when the
    job succeeded, voided otherwise, under the ledger key that makes it happen once."""
    if job_succeeded:
        to, kind, key = Charge.Status.POSTED, LedgerTransaction.Kind.POST, f"post:{job_id}"
    else:
        to, kind, key = Charge.Status.VOIDED, LedgerTransaction.Kind.VOID, f"void:{job_id}"
    return [job_id, to, kind, key, f"job {job_id}"[:300]]


def _settle(*, job_id, to: str) -> Charge | None:
    if _use_sql_functions():
        params = settle_params(job_id=job_id, job_succeeded=to == Charge.Status.POSTED)
        row = prepared_row(_SETTLE_SQL, params)
        outcome = row[0]
        if outcome == "none":
            return None
        if outcome in ("settled", "unchanged"):
            return _charge_from_row(row)
        if outcome != "fallback":
            raise RuntimeError(f"vitrine_charge_settle answered {outcome!r}")
    return _settle_orm(job_id=job_id, to=to)


def _settle_orm(*, job_id, to: str) -> Charge | None:
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
