"""Whole-page cache for the list pages, invalidated when an operator saves anything.

Keys carry a catalogue version number; any save or delete of a catalogue row bumps it
(signals in catalog/signals.py), so every cached list page is stale at once without
having to know which pages a row appears on.
"""

from __future__ import annotations

import hashlib
from functools import wraps

from django.core.cache import cache
from django.http import HttpResponse

VERSION_KEY = "catalog:version"
PAGE_TTL = 600


def catalog_version() -> int:
    version = cache.get(VERSION_KEY)
    if version is None:
        cache.add(VERSION_KEY, 1, timeout=None)
        version = cache.get(VERSION_KEY, 1)
    return version


def bump_catalog_version() -> None:
    try:
        cache.incr(VERSION_KEY)
    except ValueError:  # not set yet (or evicted): any new value invalidates old keys
        cache.set(VERSION_KEY, catalog_version() + 1, timeout=None)


def cached_list_page(view):
    """Serve anonymous GETs of a list page from the cache, keyed by the full URL."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.method != "GET" or request.user.is_authenticated:
            return view(request, *args, **kwargs)
        digest = hashlib.sha256(request.get_full_path().encode()).hexdigest()
        key = f"catalog:page:{catalog_version()}:{digest}"
        hit = cache.get(key)
        if hit is not None:
            content, content_type, status = hit
            response = HttpResponse(content, content_type=content_type, status=status)
            response["X-Cache"] = "hit"
        else:
            response = view(request, *args, **kwargs)
            if hasattr(response, "render"):
                response = response.render()
            if response.status_code == 200:
                cache.set(key, (response.content, response["Content-Type"], 200), timeout=PAGE_TTL)
            response["X-Cache"] = "miss"
        response["Cache-Control"] = "public, max-age=60"
        return response

    return wrapper
