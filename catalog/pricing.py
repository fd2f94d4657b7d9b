"""Pure price arithmetic, shared by the model pages and billing. No ORM, no floats.

The platform's fee is taken when credit is topped up, never per call: to receive C of
credit a user pays C x (1 + TOP_UP_FEE_RATE). A call costs the route's pass-through unit
price. Calls made with the user's own provider key (BYOK) cost the wallet nothing and
carry no fee.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

TOP_UP_FEE_RATE = Decimal("0.05")
# Money is carried to 10 decimal places (1e-10 USD), enough for $0.0000075 x 1.05.
USD_PLACES = Decimal("0.0000000001")
EXAMPLE_TOP_UP = Decimal("10")


def round_usd(amount: Decimal) -> Decimal:
    """The one rounding rule: half up to 1e-10 USD."""
    return amount.quantize(USD_PLACES, rounding=ROUND_HALF_UP)


def per_thousand(unit_price: Decimal) -> Decimal:
    return unit_price * 1000


def price_with_fee(unit_price: Decimal) -> Decimal:
    """What one unit effectively costs once the top-up fee paid for its credit is counted."""
    return round_usd(unit_price * (1 + TOP_UP_FEE_RATE))


def top_up_total(credit: Decimal) -> Decimal:
    """What a user pays to receive ``credit``: the credit plus the platform fee."""
    return round_usd(credit * (1 + TOP_UP_FEE_RATE))


def units_per_credit(*, credit: Decimal, unit_price: Decimal) -> int | None:
    """How many calls ``credit`` runs at ``unit_price``; None for a free route."""
    if unit_price <= 0:
        return None
    return int((credit / unit_price).to_integral_value(rounding=ROUND_FLOOR))


def image_cost(*, unit_price: Decimal, images: int, byok: bool) -> Decimal:
    """What a call costs the wallet: nothing with the user's own key, else price x images."""
    if byok:
        return Decimal("0")
    return round_usd(unit_price * images)


def format_usd(amount: Decimal) -> str:
    """The site's one money format: exact, at least two decimals once there is a fraction,
    thousands separated. $0.0002, $0.0000075, $0.047, $0.20, $10, $10.50, $10,000."""
    normal = Decimal(amount).normalize()
    text = f"{normal:,f}"
    if "." in text:
        whole, frac = text.split(".")
        if len(frac) < 2:
            text = f"{whole}.{frac.ljust(2, '0')}"
    sign = "-" if text.startswith("-") else ""
    return f"{sign}${text.removeprefix('-')}"


def format_count(value: int | Decimal | None) -> str:
    """The site's one count format: thousands separated, exact. 50000 -> "50,000"."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value.normalize():,f}"
    return f"{int(value):,}"


# A price named in operator-written text (a card's description, an FAQ answer): ``{price}``
# is the card's own route's, ``{price:cloudflare}`` a route's by its slug, and
# ``{price_per_1k}`` / ``{price_per_1k:<slug>}`` the same prices per 1,000 units ("~$0.047
# per 1k images"). Filled in when the text is shown, so a price change shows everywhere at
# once (a number typed into the prose would go stale). An unknown slug is left as written,
# for the admin's preview to show.
PRICE_TOKEN = re.compile(r"\{price(?P<per_1k>_per_1k)?(?::(?P<slug>[a-z0-9_-]+))?\}")


def fill_prices(text: str, prices: Mapping[str, Decimal], *, default: str | None) -> str:
    """``text`` with each price token replaced by that route's price (``$0.0002``, or
    ``$0.20`` for ``{price_per_1k}``); ``prices`` maps route slugs to unit prices,
    ``default`` is the slug ``{price}`` means."""

    def price(match: re.Match) -> str:
        slug = match.group("slug") or default
        if slug not in prices:
            return match.group(0)
        unit_price = prices[slug]
        return format_usd(per_thousand(unit_price) if match.group("per_1k") else unit_price)

    return PRICE_TOKEN.sub(price, text) if "{price" in text else text
