from __future__ import annotations

from django import template

from catalog.markdown import render_markdown

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str):
    return render_markdown(text)


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
