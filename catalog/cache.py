"""Whole-page cache, invalidated when an operator saves anything.

Keys carry a catalogue version number; any save or delete of a catalogue row bumps it
(signals in catalog/signals.py), so every cached page is stale at once without having to
know which pages a row appears on. The number lives where every process reads it: in the
page cache when that is shared (``CACHE_URL``), else in the Redis every process shares
(``VITRINE_REDIS_URL``; the embedded broker under ``make run``), so a save by another
process (``seed_catalog --update`` in a shell, a worker's new latency figures) reaches a
web process's memory-cached pages at once, not after their ``PAGE_TTL``. The version's
first value is random: a Redis that restarted empty never gives back a number that old
pages were stored under. When that Redis cannot be reached, pages are rendered and not
cached. What the clock alone changes (a scheduled publication, a sunset day) is kept no
longer than until then (``seconds_to_next_change``).

Model pages carry forms (notify me, the inline demo), so a cached page cannot hold the
CSRF token of the visitor it was rendered for: the token is cut out when the page is
stored and this visitor's own token (``get_token``, which also makes the middleware set
their cookie) is put in when it is served. Rendering a model page costs ~23 ms of CPU;
serving it from the cache about a tenth of that.

Signed-in visitors are served from the cache too, from a copy of their own kind: these
pages depend on the visitor only through whether they are signed in (the header's
Account / Sign in links, the notify form's email field) and the CSRF token, so every
member shares one copy and every anonymous visitor another (tests hold two members'
pages equal). Anything more personal on a cached page (a name, a balance) must come from
the browser (an API call), never from the template.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
import time
from datetime import datetime
from functools import cache as once
from functools import wraps

from django.conf import settings
from django.contrib.messages import get_messages
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.cache import cache
from django.db.models import Min, Q
from django.http import HttpResponse
from django.middleware.csrf import get_token
from django.utils import timezone
from django.utils.cache import get_conditional_response
from django.utils.http import quote_etag

VERSION_KEY = "catalog:version"
PAGE_TTL = 600


_version_stores: dict = {}  # Redis URL -> its cache (catalog/redis_cache.py: outage = miss)
_MISSING = object()


def _version_store():
    """The cache holding the version: ``VITRINE_CATALOG_VERSION_URL``'s Redis, or the page
    cache itself when that is empty (a shared page cache, or one process alone). None for
    a Redis on a unix socket that is not there: no server runs (``make run`` migrates and
    seeds before it starts the embedded one), so no page was cached under it."""
    url = settings.VITRINE_CATALOG_VERSION_URL
    if not url:
        return cache
    if url.startswith("unix://") and not os.path.exists(url.removeprefix("unix://").split("?")[0]):
        return None
    store = _version_stores.get(url)
    if store is None:
        from catalog.redis_cache import SharedPoolRedisCache

        store = _version_stores[url] = SharedPoolRedisCache(url, {})
    return store


def catalog_version() -> int | None:
    """The catalogue's version; None when its store cannot be reached (serve uncached)."""
    store = _version_store()
    if store is None:
        return None
    version = store.get(VERSION_KEY, _MISSING)
    if version is _MISSING:
        store.add(VERSION_KEY, secrets.randbits(48), timeout=None)
        version = store.get(VERSION_KEY, _MISSING)
    return None if version is _MISSING else version


def bump_catalog_version() -> None:
    store = _version_store()
    if store is None:
        return
    try:
        store.incr(VERSION_KEY)
    except ValueError:  # not set yet, evicted, or unreachable: a new value, if it can be set
        version = catalog_version()
        if version is not None:
            store.set(VERSION_KEY, version + 1, timeout=None)


# (catalogue version, the next moment the clock alone changes the catalogue) of this process.
_next_change: tuple[int | None, float | None] = (None, None)


def seconds_to_next_change(version: int | None) -> int:
    """How long a page may be kept: ``PAGE_TTL``, or less when the clock alone changes the
    catalogue sooner, with no save to bump the version: a card's ``published_at`` comes (it
    appears), or a deprecated card's sunset day (it answers as retired). Read from the
    database once per catalogue version in each process, and again once that moment has
    passed, not on every render."""
    global _next_change
    from catalog.models import ModelCard, Status

    now = time.time()
    known_version, moment = _next_change
    if known_version != version or (moment is not None and moment <= now):
        today = timezone.localdate()
        due = ModelCard.objects.aggregate(
            published=Min(
                "published_at", filter=Q(is_published=True, published_at__gt=timezone.now())
            ),
            sunset=Min("sunset_date", filter=Q(status=Status.DEPRECATED, sunset_date__gt=today)),
        )
        moments = []
        if due["published"] is not None:
            moments.append(due["published"].timestamp())
        if due["sunset"] is not None:  # the start of that day, in the site's time zone
            start = datetime.combine(due["sunset"], datetime.min.time())
            moments.append(timezone.make_aware(start).timestamp())
        moment = min(moments, default=None)
        _next_change = (version, moment)
    if moment is None:
        return PAGE_TTL
    return max(1, min(PAGE_TTL, math.ceil(moment - now)))


# What Django's {% csrf_token %} renders; the value is cut out before the page is stored.
CSRF_INPUT = re.compile(rb'(name="csrfmiddlewaretoken" value=")[^"]*(")')
CSRF_SLOT = b"\\1__vitrine_csrf__\\2"
CSRF_PLACEHOLDER = b"__vitrine_csrf__"


@once
def static_release() -> str:
    """The static files this process serves, as their manifest's hash (``collectstatic``
    writes it; empty without a manifest, in development): part of each cached page's key.
    A page names its scripts and styles by their hashed names, so a copy cached before a
    deploy would keep every visitor on the previous release's modules for its 10 minutes,
    or on a 404 where the deploy's static folder was built afresh (session 48's probe). A
    process of the new release reads the new hash at its start."""
    return getattr(staticfiles_storage, "manifest_hash", "") or ""


def cached_page(view):
    """Serve GETs of a page from the cache, keyed by the full URL (host too) and by whether
    the visitor is signed in. A request that asks for a fresh copy (``Cache-Control:
    no-cache``, as a browser's hard reload sends) is rendered and its copy replaced."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if (
            request.method not in ("GET", "HEAD")  # HEAD: GET's answer and headers, no body
            # A message waits for this visitor ("thanks, we'll tell you"): their own page.
            # len() does not mark the messages read.
            or len(get_messages(request))
        ):
            return view(request, *args, **kwargs)
        member = request.user.is_authenticated
        # The whole address, host and scheme included: pages print links and snippets
        # with the address they were asked on (catalog.site.site_url).
        digest = hashlib.sha256(request.build_absolute_uri().encode()).hexdigest()
        audience = "member" if member else "visitor"
        version = catalog_version()
        key = f"catalog:page:{version}:{static_release()}:{audience}:{digest}"
        # No version (its Redis is down): render, and store nothing that could go stale.
        fresh = version is None or "no-cache" in request.headers.get("Cache-Control", "").lower()
        hit = None if fresh else cache.get(key)
        if hit is not None:
            content, content_type, status = hit
            if CSRF_PLACEHOLDER in content:
                content = content.replace(CSRF_PLACEHOLDER, get_token(request).encode())
            response = HttpResponse(content, content_type=content_type, status=status)
            response["X-Cache"] = "hit"
        else:
            response = view(request, *args, **kwargs)
            if hasattr(response, "render"):
                response = response.render()
            if response.status_code == 200 and not response.cookies and version is not None:
                stored = CSRF_INPUT.sub(CSRF_SLOT, response.content)
                timeout = seconds_to_next_change(version)
                cache.set(key, (stored, response["Content-Type"], 200), timeout=timeout)
            response["X-Cache"] = "miss"
        if (
            member
            or response.cookies
            or CSRF_PLACEHOLDER in getattr(response, "content", b"")
            or request.META.get("CSRF_COOKIE_NEEDS_UPDATE")
        ):
            # A page with a form is this visitor's own, and so is one that sets a cookie
            # (a stale session's deletion, say): shared caches must not keep it.
            response["Cache-Control"] = "private, max-age=0"
            return response
        # Shared caches (a CDN, a proxy) and browsers may keep a visitor's copy, but must
        # ask again before each use: a catalogue save changes it at once here, and a copy
        # kept for a minute showed a price five times below the one charged, kept a newly
        # published model a 404 and looped a renamed-and-renamed-back model's redirect
        # (session 47's probe behind nginx). Asking again costs a 304 (the ETag below),
        # answered from this cache.
        response["Cache-Control"] = "public, no-cache"
        if response.status_code == 200 and not getattr(response, "streaming", False):
            response["ETag"] = quote_etag(hashlib.sha256(response.content).hexdigest()[:32])
            return get_conditional_response(request, etag=response["ETag"], response=response)
        return response

    return wrapper
