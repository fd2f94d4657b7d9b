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


PREFIX = "CELERY_"
# Read by its Django name (celery.fixups.django), not as a Celery setting.
KEPT_NAMES = frozenset({"CELERY_DB_REUSE_MAX"})


def celery_name(name: str) -> str:
    """Celery's name for the Django setting ``name`` (``CELERY_BROKER_URL``: ``broker_url``)."""
    return name if name in KEPT_NAMES else name.removeprefix(PREFIX).lower()


class DjangoCeleryConfig(Mapping):
    """Django's ``CELERY_*`` settings as Celery's configuration source: a dict read from
    them once, when Celery first reads its configuration (Django's settings are loaded by
    then; not at this module's import, which happens while they are).

    The usual ``"django.conf:settings"`` source answers every lookup through Django's lazy
    settings object, and a name set nowhere (most of Celery's ~200, which take their
    defaults) raises twice there before Celery falls back to its default: sending one
    message looks up ~30 such names, ~15% of a publish (bench note in the README). Tests
    and code that change Celery's configuration at run time change ``app.conf``, which
    comes before this source, as before.

    The names are given as Celery's own (``CELERY_TASK_SERIALIZER`` as ``task_serializer``),
    with no namespace: with ``namespace="CELERY"`` Celery took ``CELERY_TIMEZONE``,
    ``CELERY_ACCEPT_CONTENT`` and ``CELERY_TASK_SERIALIZER``, which are also its pre-4.0
    names, for old ones, and every worker and beat started with three deprecation warnings
    telling to rename settings that were already right. ``CELERY_DB_REUSE_MAX`` stays as it
    is: Celery's Django fixup reads that very name."""

    def __init__(self) -> None:
        self._data: dict | None = None

    @property
    def data(self) -> dict:
        if self._data is None:
            from django.conf import settings

            self._data = {
                celery_name(k): getattr(settings, k) for k in dir(settings) if k.startswith(PREFIX)
            }
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
app.config_from_object(DjangoCeleryConfig())
# django-structlog's receivers in the worker's main process (task_received lines).
app.steps["worker"].add(DjangoStructLogInitStep)
app.autodiscover_tasks()


@setup_logging.connect
def _use_django_logging(**kwargs) -> None:
    """Workers log through settings.LOGGING (structured, with request and job ids), not
    Celery's own handlers and formats. The level is LOG_LEVEL, not ``--loglevel``."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
