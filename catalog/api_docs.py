"""``/docs/api``: drf-spectacular's Swagger UI inside the site's own page (header, footer)."""

from __future__ import annotations

from django.shortcuts import render
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularSwaggerView


class ApiDocsView(SpectacularSwaggerView):
    template_name = "catalog/api_docs.html"

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        # Spectacular's own view renders through DRF, whose request has no session user;
        # the site header needs Django's request (signed-in state, CSRF for "Log out").
        data = super().get(request, *args, **kwargs).data
        response = render(request._request, self.template_name, data)
        response["Cross-Origin-Opener-Policy"] = "unsafe-none"
        return response
