"""Payment providers behind one small interface.

``start(top_up, request) -> redirect URL``. Stripe Checkout: credit is granted only by the
signed ``checkout.session.completed`` webhook, never by the browser coming back. The
development provider completes at once; it exists only with DEBUG or an explicit setting.
"""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse

from billing.models import TopUp
from billing.services.topups import top_up_complete
from catalog.pricing import TOP_UP_FEE_RATE, format_usd


def product_name(top_up: TopUp) -> str:
    """The line Stripe's checkout page and receipt show: the site's money format ($1,000,
    $10.50) and the fee rate the quote used."""
    fee = f"{(TOP_UP_FEE_RATE * 100).normalize():f}%"
    return f"Vitrine credit {format_usd(top_up.credit)} + {fee} platform fee"


class PaymentProvider:
    slug = ""
    label = ""

    def available(self) -> bool:
        raise NotImplementedError

    def start(self, *, top_up: TopUp, request) -> str:
        raise NotImplementedError


class DevelopmentProvider(PaymentProvider):
    slug = "dev"
    label = "Development (no card; DEBUG only)"

    def available(self) -> bool:
        return settings.VITRINE_DEV_PAYMENTS

    def start(self, *, top_up: TopUp, request) -> str:
        top_up_complete(top_up=top_up)
        return reverse("billing:dashboard") + "?top_up=done"


def _cents(amount) -> int:
    """Stripe takes integer cents; a top-up's total is whole cents (top_up_quote)."""
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise ValueError(f"{amount} is not whole cents")
    return int(cents)


class StripeCheckoutProvider(PaymentProvider):
    slug = "stripe"
    label = "Card (Stripe Checkout)"

    def available(self) -> bool:
        return bool(settings.STRIPE_SECRET_KEY and settings.STRIPE_WEBHOOK_SECRET)

    def start(self, *, top_up: TopUp, request) -> str:
        import stripe

        session = stripe.checkout.Session.create(
            api_key=settings.STRIPE_SECRET_KEY,
            mode="payment",
            client_reference_id=str(top_up.pk),
            metadata={"top_up": str(top_up.pk)},
            line_items=[
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": _cents(top_up.total),
                        "product_data": {"name": product_name(top_up)},
                    },
                }
            ],
            success_url=request.build_absolute_uri(reverse("billing:dashboard"))
            + "?top_up=pending",
            cancel_url=request.build_absolute_uri(reverse("billing:dashboard")),
        )
        TopUp.objects.filter(pk=top_up.pk).update(provider_session_id=session.id)
        return session.url


PROVIDERS = {p.slug: p for p in (StripeCheckoutProvider(), DevelopmentProvider())}


def available_providers() -> list[PaymentProvider]:
    return [p for p in PROVIDERS.values() if p.available()]
