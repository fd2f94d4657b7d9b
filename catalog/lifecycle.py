"""A model's lifecycle as callers see it: may it run, and what to tell them when it is ending.

One check (``card_callable_check``) decides whether a card may run a job, for every API
flavour and for the try page, so they cannot disagree: coming soon answers 409
``model_not_available``, retired answers 410 ``model_retired`` naming the replacement;
beta, live and deprecated run, until a deprecated model's sunset date: from that day it
answers as retired (``ModelCard.is_past_sunset``).

A deprecated (or retired) model's responses carry (``lifecycle_headers``), on every flavour
(``/v1/inference``, ``/v1/detections``, the Hugging Face and Cloudflare drop-ins, whose
bodies keep their own shapes) and on the try page, whatever the answer (success, refusal,
503, the 410 itself):

- ``Deprecation: @<unix seconds>`` (RFC 9745, a structured-field date): when the model was
  deprecated (the card's deprecation date, at 00:00 UTC);
- ``Sunset: <HTTP-date>`` (RFC 8594): when it stops answering (the card's sunset date);
- ``Link: <successor>; rel="successor-version"``: the same resource for the replacement
  model. ``successor-version`` (RFC 5829) names the newer version that supersedes this one,
  which is what a replacement model is; ``alternate`` would claim the target is another
  representation of *this* resource, which it is not (other boxes, another price).
  Plus ``<model page>; rel="deprecation"; type="text/html"`` (RFC 9745 section 3): where a
  person reads about the deprecation.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import date

from django.db.models import Q
from django.utils import timezone
from django.utils.http import http_date

from catalog.errors import ApplicationError
from catalog.models import ModelCard, Status

NOT_AVAILABLE = "{model} is {status}; it cannot be called yet."
RETIRED = "{model} was retired on {date}; use {replacement}."
RETIRED_NO_DATE = "{model} is retired; use {replacement}."
NO_REPLACEMENT = "another model"

CALLABLE = (Status.BETA, Status.LIVE, Status.DEPRECATED)


def _midnight_utc(day: date) -> int:
    return calendar.timegm(day.timetuple())


def card_callable_check(card: ModelCard) -> None:
    """Raise the one error for a card that may not run a job now (409 or 410); the
    retired error names the replacement in its text and in ``replacement``."""
    if card.is_past_sunset:
        replacement = card.replacement.model_id if card.replacement_id else None
        template = RETIRED if card.sunset_date else RETIRED_NO_DATE
        raise ApplicationError(
            template.format(
                model=card.model_id,
                date=card.sunset_date,
                replacement=replacement or NO_REPLACEMENT,
            ),
            code="model_retired",
            status=410,
            extra={"replacement": replacement},
        )
    if card.status not in CALLABLE:
        raise ApplicationError(
            NOT_AVAILABLE.format(model=card.model_id, status=card.get_status_display().lower()),
            code="model_not_available",
            status=409,
        )


def card_status(card: ModelCard) -> str:
    """The status callers are told (``/v1/models``, llms.txt): ``retired`` from a deprecated
    model's sunset day on, when its calls answer 410 (``card_callable_check``) and /pricing
    lists it as retired, without waiting for an operator to set the status; else the card's
    own. A model must not read as deprecated and callable where its calls are refused."""
    return Status.RETIRED if card.is_past_sunset else card.status


def status_filter(status: str, *, today: date | None = None) -> Q:
    """The cards ``card_status`` calls ``status`` (on ``today``, default the site's today),
    as a query: ``ModelCard.is_past_sunset`` in SQL, so ``?status=retired`` finds a
    deprecated model past its sunset and ``?status=deprecated`` no longer lists it. Read
    from the clock at each request, so the list changes on the sunset day with no save."""
    today = today or timezone.localdate()
    past_sunset = Q(status=Status.DEPRECATED, sunset_date__lte=today)
    if status == Status.RETIRED:
        return Q(status=Status.RETIRED) | past_sunset
    if status == Status.DEPRECATED:
        return Q(status=Status.DEPRECATED) & (
            Q(sunset_date__isnull=True) | Q(sunset_date__gt=today)
        )
    return Q(status=status)


# The headers a deprecated or retired model's answers carry, as the OpenAPI schema declares
# them (catalog/api.py, playground/openapi.py): name -> description.
LIFECYCLE_HEADERS = {
    "Deprecation": "RFC 9745: @<Unix seconds> of the day the model was deprecated; only on "
    "a deprecated or retired model's answers.",
    "Sunset": "RFC 8594: the HTTP-date its calls stop answering (410 from then on).",
    "Link": 'The replacement (rel="successor-version") and the model\'s page (rel="deprecation").',
}


def deprecation_header(card: ModelCard) -> str | None:
    """RFC 9745's ``Deprecation`` value, ``@<seconds>``; None unless deprecated or retired.
    The card's save records the deprecation date when its status changes
    (``ModelCard._date_deprecation``); a card changed without a save (a queryset update)
    falls back to its last save, never after its sunset: a deprecated model always says so."""
    if card.status not in (Status.DEPRECATED, Status.RETIRED):
        return None
    day = card.deprecation_date
    if day is None:
        day = card.updated_at.date()
        day = min(day, card.sunset_date) if card.sunset_date else day
    return f"@{_midnight_utc(day)}"


def sunset_header(card: ModelCard) -> str | None:
    """RFC 8594's ``Sunset`` value, an HTTP-date; None without a sunset date."""
    if card.sunset_date is None or card.status not in (Status.DEPRECATED, Status.RETIRED):
        return None
    return http_date(_midnight_utc(card.sunset_date))


def lifecycle_headers(
    card: ModelCard,
    *,
    successor_url: Callable[[ModelCard], str] | None = None,
    page_url: str | None = None,
) -> dict[str, str]:
    """The ``Deprecation``, ``Sunset`` and ``Link`` headers of a response about ``card``.

    ``successor_url(replacement)`` is the absolute URL of the same resource for the
    replacement (e.g. its ``/v1/inference/...``); ``page_url`` the card's HTML page.
    """
    deprecation = deprecation_header(card)
    if deprecation is None:
        return {}
    headers = {"Deprecation": deprecation}
    sunset = sunset_header(card)
    if sunset:
        headers["Sunset"] = sunset
    links = []
    if card.replacement_id and successor_url is not None:
        links.append(f'<{successor_url(card.replacement)}>; rel="successor-version"')
    if page_url:
        links.append(f'<{page_url}>; rel="deprecation"; type="text/html"')
    if links:
        headers["Link"] = ", ".join(links)
    return headers


LIFECYCLE_ATTR = "vitrine_lifecycle_headers"


def lifecycle_remember(
    request, card: ModelCard, *, successor_path: Callable[[ModelCard], str] | None = None
) -> None:
    """Note ``card``'s lifecycle headers on the request (Django's or DRF's), for
    ``lifecycle_apply`` to add to whatever response the request ends with (a success, a
    202, an error, a 410). The successor is this same route (the URL name the request
    resolved to) for the replacement model; a route whose URL does not take a
    ``model_id`` (Cloudflare's ``.../ai/run/@cf/<org>/<name>``) gives ``successor_path``,
    the path of its own URL for the replacement."""
    from django.urls import NoReverseMatch, reverse

    django_request = getattr(request, "_request", request)
    match = getattr(django_request, "resolver_match", None)

    def successor(replacement: ModelCard) -> str:
        path = None
        if successor_path is not None:
            path = successor_path(replacement)
        elif match is not None and "model_id" in match.kwargs:
            try:
                path = reverse(match.view_name, kwargs={"model_id": replacement.model_id})
            except NoReverseMatch:
                path = None
        if path is None:
            path = reverse("catalog_api:model-detail", kwargs={"model_id": replacement.model_id})
        return django_request.build_absolute_uri(path)

    from catalog.paths import card_path

    headers = lifecycle_headers(
        card, successor_url=successor, page_url=django_request.build_absolute_uri(card_path(card))
    )
    setattr(django_request, LIFECYCLE_ATTR, headers)


def lifecycle_apply(request, response):
    """Add the headers ``lifecycle_remember`` noted to ``response``; returns it."""
    django_request = getattr(request, "_request", request)
    for name, value in getattr(django_request, LIFECYCLE_ATTR, {}).items():
        if name not in response:
            response[name] = value
    return response
