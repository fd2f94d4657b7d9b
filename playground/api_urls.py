from __future__ import annotations

from django.urls import path

from playground import api, detections

app_name = "playground_api"
urlpatterns = [
    path("inference/<path:model_id>", api.inference_create, name="inference"),
    path("detections/<path:model_id>", detections.detection_create, name="detections"),
    path("jobs", api.JobListApi.as_view(), name="job-list"),
    path("jobs/<uuid:job_id>", api.JobDetailApi.as_view(), name="job-detail"),
]
