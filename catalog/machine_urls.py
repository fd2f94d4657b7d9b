from __future__ import annotations

from django.urls import path

from catalog import machine_views

app_name = "machine"
urlpatterns = [
    path("llms.txt", machine_views.llms_txt, name="llms_txt"),
    path("robots.txt", machine_views.robots_txt, name="robots_txt"),
    path("sitemap.xml", machine_views.sitemap_xml, name="sitemap_xml"),
    path("favicon.ico", machine_views.favicon_ico, name="favicon_ico"),
]
