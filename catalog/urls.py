from __future__ import annotations

from django.urls import path

from catalog import views

app_name = "catalog"
urlpatterns = [
    path("", views.home, name="home"),
    path("models", views.model_list, name="model_list"),
    path("models/<str:org>/<str:name>", views.model_detail, name="model_detail"),
    path("models/<str:org>/<str:name>/notify", views.model_notify, name="model_notify"),
    path("compare", views.compare, name="compare"),
    path("pricing", views.pricing_page, name="pricing"),
    path("collections/<slug:slug>", views.collection_detail, name="collection_detail"),
    path("orgs/<slug:slug>", views.org_detail, name="org_detail"),
    path("tasks/<slug:slug>", views.task_detail, name="task_detail"),
]
