"""Django's deploy checks still guard the middlewares we subclass (catalog/checks.py).

Django finds the security, X-Frame and CSRF middlewares by exact dotted path; ours are
subclasses, so without catalog/checks.py a deploy check reports them missing and skips
every check that depends on them (HSTS, the HTTPS redirect, the CSRF cookie...).
"""

from __future__ import annotations

import pytest
from django.core import checks

SECURE = {
    "DEBUG": False,
    "SECRET_KEY": "deploy-check-" + "k" * 50,
    "ALLOWED_HOSTS": ["vitrine.example"],
    "SECURE_SSL_REDIRECT": True,
    "SESSION_COOKIE_SECURE": True,
    "CSRF_COOKIE_SECURE": True,
    "SECURE_HSTS_SECONDS": 31_536_000,
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
    "SECURE_HSTS_PRELOAD": True,
    "VITRINE_DEV_PAYMENTS": False,
}


def deploy_ids() -> set[str]:
    found = checks.run_checks(include_deployment_checks=True, tags=[checks.Tags.security])
    return {m.id for m in found if not m.is_silenced()}


@pytest.fixture
def production(settings):
    for name, value in SECURE.items():
        setattr(settings, name, value)
    return settings


def test_our_middleware_passes_the_deploy_checks(production):
    assert deploy_ids() == set()


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("SECURE_HSTS_SECONDS", 0, "security.W004"),
        ("SECURE_SSL_REDIRECT", False, "security.W008"),
        ("CSRF_COOKIE_SECURE", False, "security.W016"),
        ("X_FRAME_OPTIONS", "SAMEORIGIN", "security.W019"),
    ],
)
def test_the_checks_that_depend_on_the_middlewares_still_run(production, setting, value, expected):
    setattr(production, setting, value)
    assert deploy_ids() == {expected}


@pytest.mark.parametrize(
    ("leaf", "expected"),
    [
        ("SecurityMiddleware", "vitrine.security.W001"),
        ("XFrameOptionsMiddleware", "vitrine.security.W002"),
        ("CsrfViewMiddleware", "vitrine.security.W003"),
    ],
)
def test_a_middleware_really_missing_is_reported(production, leaf, expected):
    production.MIDDLEWARE = [m for m in production.MIDDLEWARE if not m.endswith(leaf)]
    assert expected in deploy_ids()


def test_with_djangos_own_classes_nothing_is_reported_twice(production):
    production.MIDDLEWARE = [
        m.replace(
            "catalog.inline_middleware.SecurityMiddleware",
            "django.middleware.security.SecurityMiddleware",
        )
        for m in production.MIDDLEWARE
    ]
    production.SECURE_HSTS_SECONDS = 0
    found = checks.run_checks(include_deployment_checks=True, tags=[checks.Tags.security])
    assert [m.id for m in found].count("security.W004") == 1


def test_the_development_payments_fail_the_deploy_check(production):
    production.VITRINE_DEV_PAYMENTS = True  # anyone could top up for free
    assert deploy_ids() == {"vitrine.E001"}


def test_a_health_probe_over_plain_http_is_answered_not_redirected(production, client, db):
    production.ALLOWED_HOSTS = ["vitrine.example", "testserver"]
    assert client.get("/healthz").status_code in (200, 503)  # the probe's own answer
    assert client.get("/models").status_code == 301  # pages still go to https


def shared_redis_ids() -> set[str]:
    found = checks.run_checks(include_deployment_checks=True, tags=[checks.Tags.caches])
    return {m.id for m in found if not m.is_silenced()}


def test_an_amqp_broker_without_a_shared_redis_is_reported(production):
    """With RabbitMQ as the broker VITRINE_REDIS_URL has no default: the waits poll every
    5 s and the limits count per process. Silently, before: a probe's API key was admitted
    120 calls in a minute against a limit of 60 by two web processes."""
    production.CELERY_BROKER_URL = "amqp://guest:guest@rabbit.internal:5672/vitrine"
    production.VITRINE_REDIS_URL = ""
    production.VITRINE_LIMITS_REDIS_URL = ""
    production.CACHE_URL = production.VITRINE_CATALOG_VERSION_URL = ""
    assert shared_redis_ids() == {"vitrine.W001", "vitrine.W002"}
    (warning,) = [
        m for m in checks.run_checks(include_deployment_checks=True) if m.id == "vitrine.W001"
    ]
    assert "every 5 s" in warning.msg and "cached pages" in warning.msg
    production.VITRINE_REDIS_URL = "redis://cache.internal:6379/2"
    production.VITRINE_LIMITS_REDIS_URL = "redis://cache.internal:6379/2"
    assert shared_redis_ids() == set()
    production.DEBUG = True  # development: one process, nothing to share
    production.VITRINE_REDIS_URL = production.VITRINE_LIMITS_REDIS_URL = ""
    assert shared_redis_ids() == set()
