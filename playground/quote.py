"""A quote (``dry_run=true``): what a call would do and cost, with nothing run or charged.

The image is decoded exactly as a real call decodes it (so a dry run refuses what the call
would refuse, with the same 4xx) and the answer gives its size, the size the model's image
processor resizes it to (the runtime's own arithmetic, ``playground/runtime/fit.py``, from
the checkpoint's processor config, or the one its repository publishes when the checkpoint
is not on this machine: no model load), the price in force (its version), the
exact cost, whether your own provider key (BYOK) or the wallet covers it, and ``charged:
"0"``. No job, no reservation, no stored upload.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from billing.models import Charge
from billing.services.charges import key_allow_list_check, month_start, user_has_byok
from billing.services.ledger import wallet_for
from catalog import errors
from catalog.models import ModelCard, PriceRoute
from catalog.pricing import image_cost
from playground.runtime import inspect_image
from playground.runtime.fit import (
    check_model_fit,
    config_processor_type,
    local_processor_config,
    published_processor_config,
    resize_mod_size,
    resized_size,
    rule_from_config,
)
from playground.serializers import money

NO_PRICE = "{model_id} has no price on the {route} route yet."


def _key_spend(api_key, cost: Decimal) -> dict | None:
    """The key's monthly cap as a real call checks it (``charge_reserve``), read only."""
    if api_key is None or api_key.monthly_spend_cap is None:
        return None
    spent = Charge.objects.filter(
        api_key=api_key,
        created_at__gte=month_start(timezone.now()),
        status__in=[Charge.Status.RESERVED, Charge.Status.POSTED],
    ).aggregate(total=Sum("amount"))["total"] or Decimal(0)
    return {
        "cap": money(api_key.monthly_spend_cap),
        "spent": money(spent),
        "within": spent + cost <= api_key.monthly_spend_cap,
    }


def quote_build(
    *,
    card: ModelCard,
    route: PriceRoute,
    user,
    image_bytes: bytes,
    threshold: float,
    api_key=None,
):
    """The quote for one image on ``route``; raises ``ImageError`` like ``job_create``, and
    the key's allow-list 403 like ``charge_reserve``."""
    key_allow_list_check(api_key, card)
    from playground.services import card_spec

    decoded = inspect_image(image_bytes, max_pixels=settings.VITRINE_MAX_IMAGE_PIXELS)
    width, height = decoded.oriented_size
    resize = None
    if route.is_own:  # a provider route resizes with the provider's own processor
        spec = card_spec(card)
        # The checkpoint's own file when it is here; else what its repository publishes
        # (fit.PUBLISHED_PROCESSORS), else DETR's 800/1333: from_checkpoint says which.
        local = local_processor_config(spec)
        config = local or published_processor_config(spec)
        rule = rule_from_config(config)
        check_model_fit(width, height, rule)
        mod = resize_mod_size(config_processor_type(config))
        size = resized_size(width, height, rule, mod_size=mod)
        resize = {
            "width": size[0] if size else None,
            "height": size[1] if size else None,
            "rule": {**rule, **({"mod_size": mod} if mod else {})},
            "from_checkpoint": local is not None,
        }
    version = route.history.order_by("-effective_at", "-id").first()
    if version is None:
        raise errors.ApplicationError(
            NO_PRICE.format(model_id=card.model_id, route=route.slug), code="no_price", status=409
        )
    byok = user_has_byok(user=user, route=route)
    cost = image_cost(unit_price=version.price, images=1, byok=byok)
    would_be = image_cost(unit_price=version.price, images=1, byok=False)
    balance = wallet_for(user).balance
    spend_cap = _key_spend(api_key, cost)
    within_cap = spend_cap is None or spend_cap["within"]
    covered_by = "byok" if byok else ("wallet" if balance >= cost else None)
    return {
        "object": "quote",
        "model": card.model_id,
        "model_revision": (route.provider_model_id if not route.is_own else "")
        or card.checkpoint_revision
        or None,
        "route": route.slug,
        "image": {
            "format": decoded.format,
            "bytes": len(image_bytes),
            "sha256": decoded.sha256,
            "width": width,
            "height": height,
            "original_width": decoded.original_size[0],
            "original_height": decoded.original_size[1],
        },
        "resize": resize,
        "threshold": threshold,
        "price_version": {
            "id": version.pk,
            "price": money(version.price),
            "unit": version.unit,
            "effective_at": int(version.effective_at.timestamp()),
        },
        "cost": money(cost),
        "would_be_cost": money(would_be),
        "byok": byok,
        "balance": money(balance),
        # What pays: your provider key, else the wallet if it holds the cost; and whether
        # this API key's monthly spend cap (null: none) lets the call through.
        "covered_by": covered_by if within_cap else None,
        "covered": covered_by is not None and within_cap,
        "spend_cap": spend_cap,
        "charged": "0",
    }
