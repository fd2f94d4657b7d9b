from __future__ import annotations

from django.http import HttpRequest

from catalog.site import site_url


def site(request: HttpRequest) -> dict[str, str]:
    """``site_url`` in every template: absolute og:url, og:image and snippet links."""
    return {"site_url": site_url(request)}
