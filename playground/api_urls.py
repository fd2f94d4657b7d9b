from __future__ import annotations

import uuid

from django.urls import path, register_converter

from playground import api, detections


class JobIdConverter:
    """A job id as callers may spell it: a UUID in any case (Django's ``uuid`` converter
    matched lowercase only, so ``/v1/jobs/<ID IN CAPITALS>`` was "Unknown API endpoint"),
    or anything else, which the view answers ``404 job_not_found``."""

    regex = "[^/]+"

    def to_python(self, value: str) -> uuid.UUID | str:
        try:
            return uuid.UUID(value)
        except ValueError:
            return value

    def to_url(self, value) -> str:
        return str(value)


register_converter(JobIdConverter, "job_id")

app_name = "playground_api"
urlpatterns = [
    path("inference/<path:model_id>", api.inference_create, name="inference"),
    path("detections/<path:model_id>", detections.detection_create, name="detections"),
    path("jobs", api.JobListApi.as_view(), name="job-list"),
    path("jobs/<job_id:job_id>", api.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<job_id:job_id>/image", api.JobImageApi.as_view(), name="job-image"),
]
