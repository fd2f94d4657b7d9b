from __future__ import annotations

from django.urls import path

from playground import compare, demo, runs, views

app_name = "playground"
urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics_view, name="metrics"),
    path("models/<str:org>/<str:name>/try", views.try_model, name="try"),
    path("models/<str:org>/<str:name>/try/state", demo.try_state, name="try_state"),
    path("playground", demo.playground_index, name="index"),
    path("playground/jobs/<uuid:job_id>", views.job_detail, name="job"),
    path("playground/jobs/<uuid:job_id>/image", views.job_image, name="job_image"),
    # Before catalog's "compare": the compared models run on the visitor's own image.
    path("compare/run", compare.compare_run, name="compare_run"),
    path("compare/run/<str:job_ids>", compare.compare_result, name="compare_result"),
    path("playground/jobs/<uuid:job_id>/visibility", runs.job_visibility, name="job_visibility"),
    path(
        "playground/jobs/<uuid:job_id>/image/delete",
        runs.job_image_delete,
        name="job_image_delete",
    ),
    path("playground/jobs/<uuid:job_id>/export.<str:fmt>", runs.job_export, name="job_export"),
    path("runs", runs.runs_list, name="runs"),
]
