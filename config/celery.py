"""The Celery app. Workers: ``celery -A config worker``; settings come from CELERY_* names."""

from __future__ import annotations

import logging.config
import os
from collections.abc import Iterator, Mapping

import kombu.transport
from celery import Celery
from celery.signals import setup_logging
from django_structlog.celery.steps import DjangoStructLogInitStep

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


class DjangoCeleryConfig(Mapping):
    """Django's ``CELERY_*`` settings as Celery's configuration source: a dict read from
    them once, when Celery first reads its configuration (Django's settings are loaded by
    then; not at this module's import, which happens while they are).

    The usual ``"django.conf:settings"`` source answers every lookup through Django's lazy
    settings object, and a name set nowhere (most of Celery's ~200, which take their
    defaults) raises twice there before Celery falls back to its default: sending one
    message looks up ~30 such names, ~15% of a publish (bench note in the README). Tests
    and code that change Celery's configuration at run time change ``app.conf``, which
    comes before this source, as before."""

    def __init__(self) -> None:
        self._data: dict | None = None

    @property
    def data(self) -> dict:
        if self._data is None:
            from django.conf import settings

            self._data = {k: getattr(settings, k) for k in dir(settings) if k.startswith("CELERY_")}
        return self._data

    def __getitem__(self, key: str):
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


# Redis URLs (redis://, rediss://, the embedded broker's redis+socket://) get kombu's Redis
# transport with one client per channel instead of one per message (playground/broker.py).
kombu.transport.TRANSPORT_ALIASES.update(
    redis="playground.broker:RedisTransport", rediss="playground.broker:RedisTransport"
)

app = Celery("vitrine")
app.config_from_object(DjangoCeleryConfig(), namespace="CELERY")
# django-structlog's receivers in the worker's main process (task_received lines).
app.steps["worker"].add(DjangoStructLogInitStep)
app.autodiscover_tasks()


@setup_logging.connect
def _use_django_logging(**kwargs) -> None:
    """Workers log through settings.LOGGING (structured, with request and job ids), not
    Celery's own handlers and formats. The level is LOG_LEVEL, not ``--loglevel``."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
