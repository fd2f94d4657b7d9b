"""The inline demo: one partial (``templates/playground/_demo.html``) and one script
(``static/playground/playground.js``) on every live model page, the try page and /playground.

Model pages are cached whole for anonymous visitors (catalog/cache.py), so nothing about
the visitor is baked into the demo's HTML: the script asks ``try_state`` (this module) what a
run would cost this visitor, or how many free tries they have left, before Run.

Who pays: a signed-in visitor whose wallet holds the run's price pays it, through the API's
own pipeline (``pipeline.job_submit``: price reserved, posted on success, voided on
failure), so the demo is an honest preview of an API call; everyone else runs on the free
tries (``VITRINE_PLAYGROUND_PER_HOUR`` per IP and per user).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

from billing.services.ledger import wallet_for
from catalog import ratelimit
from catalog.models import ModelCard, PriceRoute
from catalog.pricing import format_usd, image_cost
from catalog.site import site_url
from playground.serializers import DEFAULT_THRESHOLD, money

# Cards whose model page carries the demo, and that /playground offers.
DEMO_STATUSES = (ModelCard.Status.LIVE, ModelCard.Status.BETA)
# The export formats the result panel links to once ``playground:job_export`` exists.
EXPORT_FORMATS = ("json", "coco", "csv", "png")
_ZERO = uuid.UUID(int=0)


@dataclass(frozen=True)
class Example:
    file: str  # under static/playground/examples/
    title: str


# Drawn by ``manage.py make_demo_examples`` (Pillow, no downloads); committed as JPEGs.
EXAMPLES = (
    Example("street.jpg", "A street with cars and people"),
    Example("kitchen.jpg", "A kitchen table"),
    Example("park.jpg", "A park with a dog"),
)


def own_route(card: ModelCard) -> PriceRoute | None:
    return card.routes.filter(is_own=True, is_active=True).first()


def run_price(route: PriceRoute | None) -> Decimal | None:
    """What one image costs on ``route`` now (the price version in force); None: no price."""
    if route is None:
        return None
    version = route.history.order_by("-effective_at", "-id").first()
    if version is None:
        return None
    return image_cost(unit_price=version.price, images=1, byok=False)


def wallet_pays(request, route: PriceRoute | None) -> bool:
    """True when this visitor's run is charged to their wallet (see the module docstring)."""
    if not request.user.is_authenticated:
        return False
    price = run_price(route)
    return price is not None and wallet_for(request.user).balance >= price


def try_buckets(request) -> list[ratelimit.Bucket]:
    """Free tries are counted per client IP and per signed-in user, never per cookie:
    a visitor who drops the session cookie is still the same IP."""
    limit, hour = settings.VITRINE_PLAYGROUND_PER_HOUR, 3600
    buckets = [ratelimit.Bucket("try-ip", ratelimit.client_network(request), limit, hour)]
    if request.user.is_authenticated:
        buckets.append(ratelimit.Bucket("try-user", str(request.user.pk), limit, hour))
    return buckets


def _demo_card(org: str, name: str) -> ModelCard:
    card = (
        ModelCard.objects.published()
        .select_related("organisation")
        .filter(organisation__slug=org, slug=name)
        .first()
    )
    if card is None:
        raise Http404("No such model.")
    return card


@require_safe
def try_state(request, org: str, name: str):
    """What Run will cost this visitor, read before they press it; counts nothing.

    ``{"pays": "wallet", "cost", "balance"}`` for a signed-in visitor whose wallet covers
    the run, else ``{"pays": "free", "free": {"limit", "remaining", "reset"}}``."""
    card = _demo_card(org, name)
    route = own_route(card)
    body: dict = {"model": card.model_id, "signed_in": request.user.is_authenticated}
    if wallet_pays(request, route):
        cost = run_price(route)
        body |= {
            "pays": "wallet",
            "cost": money(cost),
            "cost_display": format_usd(cost),
            "balance": money(wallet_for(request.user).balance),
            "balance_display": format_usd(wallet_for(request.user).balance),
        }
    else:
        decision = ratelimit.peek(*try_buckets(request))
        remaining = decision.remaining if decision.allowed else 0
        body |= {
            "pays": "free",
            "free": {"limit": decision.limit, "remaining": remaining, "reset": decision.reset},
        }
    response = JsonResponse(body)
    response["Cache-Control"] = "private, no-store"
    return response


def _export_urls() -> str:
    """``fmt=url`` pairs for ``playground:job_export`` with a zero job id the script
    replaces, once that view exists (another branch adds it); empty until then."""
    urls = []
    for fmt in EXPORT_FORMATS:
        try:
            urls.append(
                f"{fmt}={reverse('playground:job_export', kwargs={'job_id': _ZERO, 'fmt': fmt})}"
            )
        except NoReverseMatch:
            return ""
    return " ".join(urls)


def demo_context(request, card: ModelCard) -> dict:
    """What ``playground/_demo.html`` needs for ``card``; nothing per visitor (cached pages)."""
    base = site_url(request)
    return {
        "card": card,
        "examples": EXAMPLES,
        "limit": settings.VITRINE_PLAYGROUND_PER_HOUR,
        "max_bytes": settings.VITRINE_MAX_UPLOAD_BYTES,
        "default_threshold": DEFAULT_THRESHOLD,
        "floor": settings.VITRINE_DETECTION_FLOOR,
        "inference_url": f"{base}/v1/inference/{card.model_id}",
        "zero_id": str(_ZERO),
        "export_urls": _export_urls(),
    }


# A form with this visitor's CSRF token, and their own free tries left: theirs alone.
@cache_control(private=True, max_age=0)
@require_safe
def playground_index(request):
    """/playground: pick any live (or beta) model, then the same demo as its page."""
    cards = list(
        ModelCard.objects.published()
        .filter(status__in=DEMO_STATUSES)
        .select_related("organisation")
        .order_by("display_name")
    )
    wanted = request.GET.get("model", "")
    chosen = next((c for c in cards if c.model_id == wanted), None)
    if chosen is None and cards:
        chosen = cards[0]
    unknown = bool(wanted) and (chosen is None or chosen.model_id != wanted)
    return render(
        request, "playground/index.html", {"cards": cards, "chosen": chosen, "unknown": unknown}
    )
