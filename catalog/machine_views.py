"""Files for machines that read the site: ``/llms.txt``, ``/robots.txt``, ``/sitemap.xml``."""

from __future__ import annotations

import re
import unicodedata
from functools import cache

from django.contrib.sitemaps.views import sitemap as sitemap_view
from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from catalog import lifecycle, pricing, selectors
from catalog.models import ModelCard, PriceRoute
from catalog.paths import PRICING_PATH, card_path
from catalog.site import site_url
from catalog.sitemaps import SITEMAPS

TEXT_PLAIN = "text/plain; charset=utf-8"
LLMS_SUMMARY = (
    "Vitrine is a catalogue of vision models (object detection first: DETR and its family) "
    "with exact per-image prices and an HTTP inference API: browse a model, try it in the "
    "browser, then call it with an API key and a prepaid wallet."
)
EXAMPLE_MODEL_ID = "facebook/detr-resnet-50"


def route_price_text(route: PriceRoute) -> str:
    """A route's price in words, e.g. ``$0.0002 per image ($0.2 per 1k images)`` or
    ``$0.0000075 per request (...) via Cloudflare Workers AI [beta, bring your own key]``."""
    approx = "~" if route.is_estimate else ""
    text = f"{approx}{pricing.format_usd(route.price)} per {route.unit}"
    per_1k = pricing.format_usd(pricing.per_thousand(route.price))
    text += f" ({approx}{per_1k} per 1k {route.unit}s)"
    if not route.is_own:
        text += f" via {route.provider}"
    notes = []
    if route.is_estimate:
        notes.append("estimated, set at launch")
    if route.is_beta:
        notes.append("beta")
    if route.byok_available:
        notes.append("bring your own key")
    if notes:
        text += f" [{', '.join(notes)}]"
    return text


# Bidi embeddings, overrides and isolates: they reorder the text after them as a reader
# sees it.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def plain_line(text: str) -> str:
    """Operator text (a card's name, its summary) as one line of plain text: whitespace of
    any kind is one space (a newline in a summary broke the list), other control characters
    and bidi controls are dropped (an ESC in a summary went verbatim to a terminal that
    ``curl``-ed llms.txt: session 43's outside probe)."""
    text = _BIDI_CONTROLS.sub("", text)
    text = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) != "Cc")
    return " ".join(text.split())


# What Markdown reads as syntax inside a line: escapes, code, emphasis, link and image
# brackets. Backslash-escaped, which CommonMark and python-markdown both undo on rendering.
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]()])")
# A block marker (heading, list item) where the text would begin a line.
_MARKDOWN_LEADING = re.compile(r"^([#+-])")


def markdown_text(text: str) -> str:
    """Operator text as one line of literal Markdown text: ``plain_line``, then its syntax
    escaped. A name ``YOLOS tiny](https://evil.example/phish) [x`` closed our link early
    and made the entry's first link point off-site, and ``<script>`` or ``<img onerror>``
    in a summary went out as HTML to whatever renders llms.txt (session 47's outside
    probe). ``<`` and ``>`` become entities, not ``\\<``: python-markdown reads ``\\<``
    as a backslash before raw HTML. Normal names still read as typed, e.g. ``DETR
    ResNet-50``; ``RT-DETR (R50)`` gets a backslash before each parenthesis."""
    text = _MARKDOWN_PUNCTUATION.sub(r"\\\1", plain_line(text))
    text = text.replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_LEADING.sub(r"\\\1", text)


def card_line(card: ModelCard, site_url: str) -> str:
    """One model's entry. A retired model (or a deprecated one past its sunset, whose calls
    answer 410) is listed as retired with no price, as /pricing lists it: a price told a
    reader it could still be bought."""
    if card.is_past_sunset:
        prices = "no longer callable (HTTP 410 `model_retired`)"
        if card.replacement_id:
            prices += f", use `{card.replacement.model_id}` instead"
    else:
        routes = card.routes.all()
        prices = "; ".join(route_price_text(route) for route in routes) or "no price yet"
    return (
        f"- [{markdown_text(card.display_name)}]({site_url}{card_path(card)}): "
        f"`{card.model_id}`, status {lifecycle.card_status(card)}, {prices}. "
        f"{markdown_text(card.summary)}"
    )


def llms_text(*, cards: list[ModelCard], site_url: str) -> str:
    """The llms.txt document (llmstxt.org): title, summary, then linked sections."""
    fee_percent = f"{(pricing.TOP_UP_FEE_RATE * 100).normalize():f}%"
    live = [card for card in cards if card.status == ModelCard.Status.LIVE]
    example_id = live[0].model_id if live else EXAMPLE_MODEL_ID
    api = f"{site_url}/v1"
    lines = [
        "# Vitrine",
        "",
        f"> {LLMS_SUMMARY}",
        "",
        "Model ids are `<organisation>/<name>`, the organisation being its Hugging Face "
        "namespace. Prices are USD, exact, per image unless marked per request. Models with "
        "status `coming_soon` cannot be called yet; those with status `retired` no longer answer "
        "(HTTP 410 `model_retired`).",
        "",
        "## Models",
        "",
        *(card_line(card, site_url) for card in cards),
        "",
        "## API",
        "",
        f"- Base URL: `{api}`",
        "- Authentication: send `Authorization: Bearer <key>` with every call.",
        f"- Inference: `POST {api}/inference/<org>/<name>`, "
        f"e.g. `POST {api}/inference/{example_id}`.",
        "- Request body: the raw image bytes (e.g. `Content-Type: image/jpeg`), or JSON "
        '`{"inputs": "<base64 image>", "parameters": {"threshold": 0.5}}`.',
        "- Answer: a JSON array, one object per detected box: "
        '`[{"label": "cat", "score": 0.998, "box": {"xmin": 12, "ymin": 54, "xmax": 320, '
        '"ymax": 470}}]`; box coordinates are integer pixels in the input image.',
        '- Errors: `{"error": {"message", "type", "code", "param"}}`, e.g. HTTP 404 with '
        "code `model_not_found`.",
        "",
        "```sh",
        f'curl -X POST "{api}/inference/{example_id}" \\',
        '  -H "Authorization: Bearer $VITRINE_API_KEY" \\',
        '  -H "Content-Type: image/jpeg" \\',
        "  --data-binary @image.jpg",
        "```",
        "",
        "## Pricing",
        "",
        "- Each model has a per-image pass-through price (listed above): a call costs that "
        "price times the number of images.",
        f"- The platform fee is {fee_percent}, charged when you top up credit (credit C costs "
        f"C x {1 + pricing.TOP_UP_FEE_RATE}), never per call.",
        "- Calls made with your own provider key (BYOK) are not charged to your wallet and "
        "carry no fee.",
        "- A call with an empty wallet gets HTTP 402 with error code `insufficient_credits`.",
        "",
        "## Docs",
        "",
        f"- [Pricing]({site_url}{PRICING_PATH}): every model's price on every route, per "
        "image and per 1,000, and how the wallet, the top-up fee and BYOK work",
        f"- [Models list]({api}/models): every published model as JSON, in the shape of "
        "OpenAI's models API, prices as exact decimal strings",
        f"- [OpenAPI schema]({api}/openapi.json): the whole HTTP API, OpenAPI 3",
        f"- [API reference]({site_url}/docs/api): the schema, browsable",
        "",
    ]
    return "\n".join(lines)


@require_safe
def llms_txt(request: HttpRequest) -> HttpResponse:
    cards = list(selectors.card_list())
    return HttpResponse(llms_text(cards=cards, site_url=site_url(request)), TEXT_PLAIN)


@require_safe
def robots_txt(request: HttpRequest) -> HttpResponse:
    lines = [
        "User-agent: *",
        "Allow: /",
        "Disallow: /admin/",
        "",
        f"Sitemap: {request.build_absolute_uri('/sitemap.xml')}",
        "",
    ]
    return HttpResponse("\n".join(lines), TEXT_PLAIN)


@require_safe
def sitemap_xml(request: HttpRequest) -> HttpResponse:
    return sitemap_view(request, sitemaps=SITEMAPS)


@cache
def _favicon_bytes() -> bytes:
    with open(finders.find("catalog/img/favicon.ico"), "rb") as f:
        return f.read()


@require_safe
def favicon_ico(request: HttpRequest) -> HttpResponse:
    """``/favicon.ico``: browsers and crawlers ask for it whatever the page links to."""
    response = HttpResponse(_favicon_bytes(), "image/x-icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response
