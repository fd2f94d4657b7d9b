"""Markdown to safe HTML: operators write Markdown, visitors never get their script.

Rendering is python-markdown; sanitising is nh3 (the Rust ``ammonia`` allow-list), which
drops every tag, attribute and URL scheme not listed below, so ``<script>``, ``on*=``
handlers, ``<iframe>`` and ``javascript:`` links cannot pass whatever their spelling.
"""

from __future__ import annotations

import re

import markdown as md
import nh3
from django.utils.safestring import SafeString, mark_safe

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "dl", "dt", "em", "h2", "h3",
    "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "strong", "sub", "sup",
    "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"align"},
    "th": {"align"},
}
ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}
EXTENSIONS = ["tables", "fenced_code", "sane_lists"]
# python-markdown's link and reference patterns are quadratic in unclosed brackets
# (Python-Markdown issue 798): 20,000 "[" took 68 s to render, "[a](" x 20,000 118 s, in a
# page render after every catalogue save. Past this many (a page of prose has tens), the
# brackets are written as typed, not parsed: ~0.3 s at worst.
MAX_BRACKETS = 1000


def render_markdown(text: str, *, top: int | None = None) -> SafeString:
    """``top``: the level the text's highest heading takes (its others follow, at most
    h6), so that an operator's ``## Pricing`` in a section under an h2 is that section's
    h3, not a second h2 beside it."""
    text = text or ""
    if text.count("[") > MAX_BRACKETS:
        text = text.replace("[", "\\[")
    html = md.markdown(text, extensions=EXTENSIONS, output_format="html")
    if top is not None:
        html = _headings_from(html, top)
    clean = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=ALLOWED_URL_SCHEMES,
        link_rel="nofollow noopener noreferrer",
        # A code block or a table (.prose scrolls it sideways) is a box the keyboard can
        # scroll: focusable, whatever the operator wrote.
        set_tag_attribute_values={"pre": {"tabindex": "0"}, "table": {"tabindex": "0"}},
    )
    return mark_safe(clean)


_HEADING = re.compile(r"<(/?)h([1-6])\b")


def _headings_from(html: str, top: int) -> str:
    levels = [int(level) for _, level in _HEADING.findall(html)]
    if not levels:
        return html
    shift = top - min(levels)
    return _HEADING.sub(lambda m: f"<{m[1]}h{min(int(m[2]) + shift, 6)}", html)
