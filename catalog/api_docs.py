"""``/docs/api``: drf-spectacular's Swagger UI inside the site's own page (header, footer).

The split view serves the UI's start-up script as a file (``/docs/api?script=``), so the
page has no inline script and keeps the site's Content-Security-Policy (catalog/csp.py)."""

from __future__ import annotations

from django.shortcuts import render
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularSwaggerSplitView


class ApiDocsView(SpectacularSwaggerSplitView):
    template_name = "catalog/api_docs.html"

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        # Spectacular's own view renders through DRF, whose request has no session user;
        # the site header needs Django's request (signed-in state, CSRF for "Log out").
        answer = super().get(request, *args, **kwargs)
        if "script" in request.GET:
            return answer  # the start-up script, rendered by DRF as JavaScript
        data = answer.data
        response = render(request._request, self.template_name, data)
        response["Cross-Origin-Opener-Policy"] = "unsafe-none"
        return response
