"""``{% demo card %}``: the inline demo on a model page.

A tag of the playground app, so catalog's templates can show the demo while catalog's code
imports nothing from playground (the apps' arrows: playground -> billing -> catalog).
"""

from __future__ import annotations

from django import template

from playground.demo import DEMO_STATUSES, demo_context

register = template.Library()


@register.inclusion_tag("playground/_demo.html", takes_context=True)
def demo(context, card):
    # Django copies the page's csrf_token into an inclusion tag's context.
    return demo_context(context["request"], card)


@register.filter
def has_demo(card) -> bool:
    """Whether ``card``'s page carries the demo: live and beta models."""
    return card.status in DEMO_STATUSES
