from __future__ import annotations

from django.urls import path

from catalog.api import ModelDetailApi, ModelListApi

app_name = "catalog_api"
urlpatterns = [
    path("models", ModelListApi.as_view(), name="model-list"),
    # <path:> so the id's slash matches whether sent raw or percent-encoded (%2F): the WSGI
    # server decodes PATH_INFO before Django routes it.
    path("models/<path:model_id>", ModelDetailApi.as_view(), name="model-detail"),
]
