from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path

from catalog.api import EndpointNotFoundApi
from catalog.api_docs import ApiDocsView, SchemaView

handler400 = "playground.middleware.bad_request"
handler404 = "catalog.views.not_found"
handler500 = "playground.middleware.server_error"

admin.site.site_header = "Vitrine catalogue"
admin.site.site_title = "Vitrine admin"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("v1/openapi.json", SchemaView.as_view(), name="openapi-schema"),
    path("v1/", include("catalog.api_urls")),
    path("v1/", include("playground.api_urls")),
    # Keep last among the v1/ routes: any other /v1/ path is the API's JSON 404.
    re_path(r"^v1/", EndpointNotFoundApi.as_view()),
    # The Hugging Face and Cloudflare drop-in flavours (playground/flavours/).
    path("", include("playground.flavours.urls")),
    path("docs/api", ApiDocsView.as_view(url_name="openapi-schema"), name="api-docs"),
    path("", include("catalog.machine_urls")),
    path("", include("billing.urls")),
    path("", include("playground.urls")),
    path("", include("catalog.urls")),
]
