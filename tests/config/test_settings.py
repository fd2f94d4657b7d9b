from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from config.settings.env import env_bool, env_broker_url, env_database, env_int, env_list

SHOW_DEBUG = (
    "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"
)


def load_settings(code: str = SHOW_DEBUG, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` (default: import the settings, print DEBUG) in a fresh interpreter with
    exactly these variables set."""
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_fresh_checkout_runs_with_no_variables():
    result = load_settings()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_production_without_secret_key_is_refused():
    result = load_settings(DEBUG="0", ALLOWED_HOSTS="vitrine.example")
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY must be set when DEBUG is off." in result.stderr


def test_production_without_allowed_hosts_is_refused():
    result = load_settings(DEBUG="0", SECRET_KEY="x" * 60, BYOK_ENCRYPTION_KEY="k")
    assert "ImproperlyConfigured: ALLOWED_HOSTS must be set when DEBUG is off." in result.stderr


def test_production_settings_load_with_every_variable():
    result = load_settings(
        DEBUG="0",
        SECRET_KEY="x" * 60,
        ALLOWED_HOSTS="vitrine.example",
        BYOK_ENCRYPTION_KEY="a-long-random-key",
        DATABASE_URL="postgres://vitrine@db.internal:5432/vitrine",
        CELERY_BROKER_URL="redis://broker.internal:6379/0",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_production_without_a_byok_key_is_refused():
    result = load_settings(DEBUG="0", SECRET_KEY="x" * 60, ALLOWED_HOSTS="vitrine.example")
    assert "BYOK_ENCRYPTION_KEY must be set when DEBUG is off." in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "maybe"}, "DEBUG must be one of"),
        ({"VITRINE_MIN_TOP_UP": "five"}, "VITRINE_MIN_TOP_UP must be a decimal amount"),
        ({"VITRINE_SIGNUP_CREDIT": "-1"}, "VITRINE_SIGNUP_CREDIT must be a non-negative amount"),
        ({"VITRINE_DETECTION_FLOOR": "1.5"}, "VITRINE_DETECTION_FLOOR must be in [0, 1)"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL must be a database URL"),
        ({"DATABASE_URL": "nosuchdb://x/y"}, "DATABASE_URL must be a database URL"),
        ({"CELERY_BROKER_URL": "filesystem://"}, "CELERY_BROKER_URL must be a Redis or AMQP URL"),
        ({"CELERY_TASK_HARD_TIME_LIMIT": "ten"}, "CELERY_TASK_HARD_TIME_LIMIT must be an integer"),
        ({"CELERY_TASK_HARD_TIME_LIMIT": "0"}, "CELERY_TASK_HARD_TIME_LIMIT must be at least 1"),
        (
            {"CELERY_TASK_HARD_TIME_LIMIT": "60", "CELERY_TASK_SOFT_TIME_LIMIT": "90"},
            "CELERY_TASK_SOFT_TIME_LIMIT must be below the hard limit",
        ),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be json or console"),
        ({"SENTRY_TRACES_SAMPLE_RATE": "1.5"}, "SENTRY_TRACES_SAMPLE_RATE must be in [0, 1]"),
        # The detector runtime's own (playground/runtime/env.py), read where they are used:
        # a worker served with a bad one until a job (or a command) read it.
        ({"VITRINE_DEVICE_PREPROCESS": "maybe"}, "VITRINE_DEVICE_PREPROCESS must be one of"),
        ({"VITRINE_DECODE_THREADS": "abc"}, "VITRINE_DECODE_THREADS must be an integer"),
        ({"VITRINE_BATCH_SIZE": "0"}, "VITRINE_BATCH_SIZE must be at least 1"),
        ({"VITRINE_BACKEND": "tensorflow"}, "VITRINE_BACKEND must be one of"),
        ({"VITRINE_PRECISION": "fp8"}, "VITRINE_PRECISION must be one of"),
        ({"VITRINE_ALLOCATOR": "mimalloc"}, "VITRINE_ALLOCATOR must be one of"),
        ({"VITRINE_CHANNELS_LAST": "perhaps"}, "VITRINE_CHANNELS_LAST must be one of"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(env, message):
    result = load_settings(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("TRUE", True), ("off", False), ("", False), (None, True)]
)
def test_env_bool(raw, expected):
    environ = {} if raw is None else {"FLAG": raw}
    assert env_bool("FLAG", default=True, environ=environ) is expected


def test_env_helpers_parse_and_refuse():
    assert env_int("N", 5, environ={}) == 5
    assert env_int("N", 5, environ={"N": "12"}) == 12
    assert env_list("HOSTS", [], environ={"HOSTS": "a.example, b.example,"}) == [
        "a.example",
        "b.example",
    ]
    db = env_database("DATABASE_URL", "x", environ={"DATABASE_URL": "postgres://u@h:5432/n"})
    assert (db["ENGINE"], db["NAME"], db["HOST"], db["PORT"]) == (
        "django.db.backends.postgresql",
        "n",
        "h",
        5432,
    )
    assert env_broker_url("B", "redis://h:6379/0", environ={}) == "redis://h:6379/0"
    with pytest.raises(ImproperlyConfigured):
        env_broker_url("B", "x", environ={"B": "sqla+sqlite:///x.db"})


def test_celery_is_configured_not_to_lose_jobs():
    assert settings.CELERY_TASK_ACKS_LATE is True
    assert settings.CELERY_TASK_REJECT_ON_WORKER_LOST is True
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert visibility > settings.CELERY_TASK_HARD_TIME_LIMIT > settings.CELERY_TASK_SOFT_TIME_LIMIT


def test_a_webhook_backoff_step_outlives_no_visibility_timeout():
    # However low the hard limit, a countdown message waiting its longest step (unacked
    # meanwhile) is not handed out again by Redis before it runs.
    from playground.webhooks import MAX_COUNTDOWN

    options = "CELERY_BROKER_TRANSPORT_OPTIONS"
    code = f"import config.settings as s; print(s.{options}['visibility_timeout'])"
    env = {**os.environ, "CELERY_TASK_HARD_TIME_LIMIT": "60", "CELERY_TASK_SOFT_TIME_LIMIT": "50"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
        cwd=settings.BASE_DIR,
    ).stdout  # fmt: skip
    assert int(out.strip().splitlines()[-1]) >= 2 * MAX_COUNTDOWN


def _database_settings(module: str, **env: str) -> dict:
    """``DATABASES["default"]`` as a process that imports ``module`` first sees it."""
    code = (
        f"import json, {module}; from django.conf import settings; "
        "d = settings.DATABASES['default']; "
        "import os; print(json.dumps({'age': d['CONN_MAX_AGE'], "
        "'pool': d.get('OPTIONS', {}).get('pool'), 'env': os.environ.get('VITRINE_DB_POOL')}))"
    )
    result = load_settings(code, **env)
    assert result.returncode == 0, result.stderr
    import json

    return json.loads(result.stdout.strip().splitlines()[-1])


POSTGRES = "postgres://vitrine@db.internal:5432/vitrine"


def test_a_web_process_pools_its_postgresql_connections():
    """Under ASGI each request's sync code runs on a thread of its own: persistent
    connections are never reused there, so the web process pools them."""
    found = _database_settings("config.asgi", DATABASE_URL=POSTGRES)
    assert found["age"] == 0
    assert found["pool"]["max_size"] == 8 + 12
    assert found["pool"]["min_size"] >= 1
    # Set only while the settings load: what the web process starts does not inherit it.
    assert found["env"] is None


def test_workers_and_commands_keep_persistent_connections():
    found = _database_settings(
        "django; django.setup(); import config.celery", DATABASE_URL=POSTGRES
    )
    assert (found["age"], found["pool"]) == (60, None)


def test_sqlite_is_never_pooled():
    found = _database_settings("config.asgi")
    assert found["pool"] is None


SHOW_SESSIONS = (
    "import django; django.setup(); from django.conf import settings; "
    "print(settings.SESSION_ENGINE)"
)


def test_sessions_are_read_from_the_shared_cache_only_where_there_is_one():
    shared = load_settings(SHOW_SESSIONS, CACHE_URL="redis://cache.internal:6379/1")
    assert shared.stdout.strip() == "django.contrib.sessions.backends.cached_db", shared.stderr
    # A per-process cache would keep a logged-out session alive in the other processes.
    alone = load_settings(SHOW_SESSIONS)
    assert alone.stdout.strip() == "django.contrib.sessions.backends.db", alone.stderr


@pytest.mark.django_db
def test_a_members_session_comes_from_the_shared_cache_and_dies_with_the_logout(
    limits_redis, settings
):
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from tests import factories

    settings.CACHES = {
        "default": {"BACKEND": "catalog.redis_cache.SharedPoolRedisCache", "LOCATION": limits_redis}
    }
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    member = Client()
    member.force_login(factories.user())
    cookie = member.cookies[settings.SESSION_COOKIE_NAME].value
    with CaptureQueriesContext(connection) as queries:
        assert member.get("/account/").status_code == 200  # signed in
    assert not [q for q in queries.captured_queries if "django_session" in q["sql"]]
    # The same session from another machine (another client, the same shared cache).
    elsewhere = Client()
    elsewhere.cookies[settings.SESSION_COOKIE_NAME] = cookie
    assert elsewhere.get("/account/").status_code == 200
    member.post(reverse("billing:logout"))
    assert elsewhere.get("/account/").status_code == 302  # signed out there too
