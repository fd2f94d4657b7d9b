"""The Celery app. Workers: ``celery -A config worker``; settings come from CELERY_* names."""

from __future__ import annotations

import logging.config
import os

from celery import Celery
from celery.signals import setup_logging
from django_structlog.celery.steps import DjangoStructLogInitStep

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("vitrine")
app.config_from_object("django.conf:settings", namespace="CELERY")
# django-structlog's receivers in the worker's main process (task_received lines).
app.steps["worker"].add(DjangoStructLogInitStep)
app.autodiscover_tasks()


@setup_logging.connect
def _use_django_logging(**kwargs) -> None:
    """Workers log through settings.LOGGING (structured, with request and job ids), not
    Celery's own handlers and formats. The level is LOG_LEVEL, not ``--loglevel``."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
