"""DRF authentication by API key: ``Authorization: Bearer vt_<prefix>_<secret>``."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from billing.services.keys import NOT_BEARER, api_key_authenticate, auth_error


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        view = (request.parser_context or {}).get("view")
        if view is not None:
            # The method first, as APIView.dispatch would after authenticating: a PATCH is
            # a 405 with Allow whether or not it has a key, not a 401 that says "add a key".
            method = request.method.lower()
            if method not in view.http_method_names or not hasattr(view, method):
                raise exceptions.MethodNotAllowed(request.method)
            if method == "options":
                return None  # what the endpoint allows is no secret (Allow, no body)
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, raw = header.partition(" ")
        if header.strip() and scheme.lower() != "bearer":
            raise auth_error(NOT_BEARER)  # "Token vt_...", or the key alone: say how
        key = api_key_authenticate(raw.strip() if scheme.lower() == "bearer" else None)
        return key.user, key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="vitrine"'


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Describes the API key to the OpenAPI schema (drf-spectacular)."""

    target_class = "billing.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "vt_<prefix>_<secret>",
            "description": "An API key from your dashboard: Authorization: Bearer vt_...",
        }
