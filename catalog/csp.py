"""The Content-Security-Policy every HTML page is sent with.

Every script, style sheet, font and image the site uses is its own (``/static/``): no page
has an inline script or a ``style`` attribute (the Swagger UI's start-up script is served
as a file by drf-spectacular's split view; a detection's colour swatch is a class), so the
policy allows nothing inline. Should operator Markdown or an upload's name ever slip past
the escaping, the browser still runs nothing from it. Images also come from ``data:``
(the Swagger UI's icons) and ``blob:`` (the try page previews the picked file before
uploading it, and reads a pasted or dropped one back from its ``blob:`` URL, hence
``connect-src blob:`` too). The policy is ``settings.VITRINE_CSP`` (``DEFAULT_CSP``
there); the variable of that name replaces it, empty turns it off.

JSON, images and files get no policy: they are not documents a browser runs scripts in.
Under ``DEBUG`` an error page (Django's technical 404 and 500, with their inline script
and style) is left without one.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse

HEADER = "Content-Security-Policy"


def add_policy(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Sets the policy on an HTML answer that has none of its own."""
    policy = settings.VITRINE_CSP
    if (
        policy
        and HEADER not in response
        and response.get("Content-Type", "").startswith("text/html")
        and not (settings.DEBUG and response.status_code >= 400)
    ):
        response[HEADER] = policy
    return response
