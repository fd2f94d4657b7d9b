from __future__ import annotations

app_name = "catalog_api"
urlpatterns: list = []
