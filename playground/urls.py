from __future__ import annotations

from django.urls import path

from playground import views

app_name = "playground"
urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
]
