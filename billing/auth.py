"""DRF authentication by API key: ``Authorization: Bearer vt_<prefix>_<secret>``."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication

from billing.services.keys import api_key_authenticate


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, raw = header.partition(" ")
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
