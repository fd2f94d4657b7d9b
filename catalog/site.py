"""The site's public base URL, for snippets, llms.txt, canonical and og: links."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest


def site_url(request: HttpRequest) -> str:
    """``SITE_URL`` when it is set (production, behind a proxy); otherwise the scheme and
    host this request came to, e.g. ``http://127.0.0.1:8123`` under ``PORT=8123 make run``.
    The host has passed ``ALLOWED_HOSTS`` by the time a view runs; the 400 page for one
    that did not gets no base URL (relative links), not a second DisallowedHost (a 500)."""
    if settings.SITE_URL:
        return settings.SITE_URL
    try:
        return f"{request.scheme}://{request.get_host()}"
    except DisallowedHost:
        return ""
