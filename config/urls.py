from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Vitrine catalogue"
admin.site.site_title = "Vitrine admin"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("v1/", include("catalog.api_urls")),
    path("", include("playground.urls")),
    path("", include("catalog.urls")),
]
