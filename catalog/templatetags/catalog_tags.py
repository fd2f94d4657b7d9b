from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation

from django import template
from django.template.loader_tags import BLOCK_CONTEXT_KEY
from django.utils.html import escape
from django.utils.safestring import mark_safe

from catalog.markdown import render_markdown
from catalog.pricing import format_count, format_usd
from catalog.selectors import card_prices_filled

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str, top: int | None = None):
    """``{{ text|markdown }}``; ``{{ text|markdown:3 }}`` makes its highest heading an h3
    (text inside a section whose own heading is an h2)."""
    return render_markdown(text, top=None if top is None else int(top))


@register.filter
def priced(text: str, card):
    """Operator text with its price tokens filled from ``card``'s routes:
    ``{{ entry.answer|priced:card|markdown }}`` (``catalog.pricing.fill_prices``)."""
    return card_prices_filled(text or "", card)


@register.filter
def json_value(value):
    """A value as JSON spells it, for a schema table's Default column: ``True`` -> true,
    ``False`` -> false, ``3`` -> 3, ``"x"`` -> "x"; no value (None, or a missing key) -> an
    em dash, never Python's ``None``."""
    if value is None or value == "":
        return "\u2014"
    return json.dumps(value, ensure_ascii=False)


@register.filter
def compact(number):
    """63700 -> 63.7K, 42000000 -> 42M, 6500000 -> 6.5M."""
    if number is None:
        return ""
    for size, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "K")):
        if number >= size:
            value = f"{number / size:.1f}".removesuffix(".0")
            return f"{value}{suffix}"
    return str(number)


def _decimal(value) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


@register.filter
def usd(amount):
    """Money on every page: ``{{ route.price|usd }}`` -> $0.0002, ``{{ x|usd }}`` -> $10,000.

    The same function formats the amounts views and services put in sentences, so a price
    reads the same everywhere (see ``catalog.pricing.format_usd``)."""
    value = _decimal(amount)
    return "" if value is None else format_usd(value)


@register.filter
def count(number):
    """Counts on every page, thousands separated: ``{{ 50000|count }}`` -> 50,000."""
    value = _decimal(number)
    return "" if value is None else format_count(value)


@register.filter
def per_1k(amount):
    """A unit price times 1,000, for "per 1k" figures: ``{{ route.price|per_1k|usd }}``."""
    value = _decimal(amount)
    return None if value is None else value * 1000


@register.simple_tag(takes_context=True)
def block_text(context, name: str) -> str:
    """What the template's block ``name`` renders, again: ``<meta property="og:title"
    content="{% block_text 'title' %}">`` repeats the page's ``{% block title %}`` (Django
    renders a block once; ``{{ self.title }}`` is Jinja's and renders nothing here)."""
    blocks = context.render_context.get(BLOCK_CONTEXT_KEY)
    block = blocks.get_block(name) if blocks is not None else None
    if block is None:
        return ""
    # BlockNode.render takes the block off the stack while it renders and puts it back,
    # so {{ block.super }} inside it keeps working. The output is already escaped HTML.
    return mark_safe(" ".join(block.render(context).split()))


@register.filter
def mentions(title: str, name: str) -> bool:
    """Whether ``title`` already names ``name``, whatever the order and spacing of its words
    and numbers ("COCO 2017 val" names "COCO val2017"): a heading then repeats nothing."""

    def words(text: str) -> set[str]:
        return set(re.findall(r"[a-z]+|\d+", (text or "").lower()))

    return bool(words(name)) and words(name) <= words(title)


@register.filter
def nobreak_hyphens(text: str):
    """``text`` escaped, each hyphenated word kept on one line (``ResNet-50`` never wraps
    after its hyphen): for headings of model names."""
    from django.utils.html import conditional_escape

    words = re.split(r"(\s+)", str(text))
    return mark_safe(
        "".join(
            f'<span class="nobreak">{conditional_escape(w)}</span>'
            if "-" in w.strip("-")
            else conditional_escape(w)
            for w in words
        )
    )


@register.simple_tag
def signup_credit() -> str:
    """The credit a new account's verified email brings (``VITRINE_SIGNUP_CREDIT``), as
    "$1"; empty when there is none (a page then promises none)."""
    from django.conf import settings

    amount = Decimal(settings.VITRINE_SIGNUP_CREDIT)
    return format_usd(amount) if amount > 0 else ""


@register.filter
def break_after_slashes(value) -> str:
    """An id or URL that may wrap after each "/" (a ``<wbr>``, which copies as nothing),
    not inside a word: a phone broke the endpoint's URL mid-token ("faceb/ook")."""
    return mark_safe(re.sub(r"/(?!/)", "/<wbr>", escape(str(value))))  # "://" stays whole
