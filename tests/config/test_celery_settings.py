"""Celery reads Vitrine's CELERY_* settings under its own names, with no deprecation warning."""

from __future__ import annotations

import warnings

from django.conf import settings

from config.celery import app


def test_every_celery_setting_reaches_celery_under_its_own_name():
    conf = app.conf
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.timezone == settings.CELERY_TIMEZONE
    assert conf.task_acks_late is True and conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.worker_hijack_root_logger is False
    assert conf.task_default_queue == settings.CELERY_TASK_DEFAULT_QUEUE
    assert set(conf.beat_schedule) == set(settings.CELERY_BEAT_SCHEDULE)
    # Celery's Django fixup reads this one by its Django name.
    assert conf.get("CELERY_DB_REUSE_MAX") == settings.CELERY_DB_REUSE_MAX


def test_a_worker_starts_without_deprecation_warnings():
    """Celery took CELERY_TIMEZONE, CELERY_ACCEPT_CONTENT and CELERY_TASK_SERIALIZER (also
    its pre-4.0 names) for old settings: every worker and beat warned three times."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert app.conf.maybe_warn_deprecated_settings() is False
    assert not caught
