from __future__ import annotations

from django.urls import path

from playground import demo, views

app_name = "playground"
urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("models/<str:org>/<str:name>/try", views.try_model, name="try"),
    path("models/<str:org>/<str:name>/try/state", demo.try_state, name="try_state"),
    path("playground", demo.playground_index, name="index"),
    path("playground/jobs/<uuid:job_id>", views.job_detail, name="job"),
    path("playground/jobs/<uuid:job_id>/image", views.job_image, name="job_image"),
]
