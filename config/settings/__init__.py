"""Vitrine's settings, read from environment variables alone.

A fresh checkout runs with no variable set: DEBUG on, SQLite under ``var/`` and the
embedded Redis broker that ``make run`` starts on a unix socket under ``var/``.
Production sets ``DEBUG=0``, ``SECRET_KEY``, ``ALLOWED_HOSTS``, ``DATABASE_URL`` and
``CELERY_BROKER_URL``; the README has the full table.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from config.settings.env import (
    env_bool,
    env_broker_url,
    env_database,
    env_decimal,
    env_int,
    env_list,
    env_str,
    redis_client_url,
    s3_storage_options,
)
from config.settings.logs import FORMATS, configure_structlog, logging_config
from config.settings.sentry import sentry_init
from playground.runtime.env import environment_errors as runtime_environment_errors

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("VITRINE_VAR_DIR") or BASE_DIR / "var")

DEBUG = env_bool("DEBUG", default=True)

SECRET_KEY = env_str("SECRET_KEY") or ""
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    # Only reachable with DEBUG on: a development key that never signs production data.
    SECRET_KEY = "django-insecure-vitrine-development-only"

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"] if DEBUG else []
)
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is off.")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# JSON for a request that asks for it (the try page's fetch), Django's page otherwise.
CSRF_FAILURE_VIEW = "playground.views.csrf_failure"
# Public base URL for snippets, llms.txt and canonical links. Empty: each page uses the
# address it was requested at (catalog/site.py), so `HOST=… PORT=… make run` needs nothing.
SITE_URL = (env_str("SITE_URL") or "").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.sitemaps",
    "django_structlog",  # request_started/finished lines; request context carried into tasks
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets as static files: /docs/api works offline
    "catalog",
    "billing",
    "playground",
]

MIDDLEWARE = [
    # First, so every response (redirects, static files, errors) carries X-Request-Id.
    "catalog.observability.RequestIdMiddleware",
    # /v1/, /hf/, /client/v4/ only: preflights answered here, every API answer (errors too)
    # readable cross-origin.
    "catalog.cors.ApiCorsMiddleware",
    # Django's and django-structlog's own, with their hooks in the event loop under ASGI
    # where they do no I/O, instead of a thread hop each (catalog/inline_middleware.py).
    "catalog.inline_middleware.RequestLogMiddleware",
    "catalog.inline_middleware.SecurityMiddleware",
    # WhiteNoise, async capable: under ASGI no request leaves the event loop for it.
    "catalog.static_files.AsyncCapableWhiteNoiseMiddleware",
    "catalog.inline_middleware.SessionMiddleware",
    # Django's, minus the APPEND_SLASH redirect of a POST (it would drop the body).
    "playground.middleware.CommonMiddleware",
    # Before the CSRF check, which reads form bodies: oversized and broken bodies on the
    # API and the try page are refused first, in the one error shape.
    "playground.middleware.RequestLimitsMiddleware",
    "catalog.inline_middleware.CsrfViewMiddleware",
    "catalog.inline_middleware.AuthenticationMiddleware",
    "catalog.inline_middleware.MessageMiddleware",
    "catalog.inline_middleware.XFrameOptionsMiddleware",
]
# Django's deploy checks look for the security, X-Frame and CSRF middlewares by exact path
# and cannot see the subclasses above: catalog/checks.py runs them for the subclasses and
# gives these three again (as vitrine.security.W00x) when a middleware really is missing.
SILENCED_SYSTEM_CHECKS = ["security.W001", "security.W002", "security.W003"]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "catalog.context_processors.site",
            ],
        },
    },
]

DATABASES = {
    "default": env_database("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'vitrine.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so a Celery worker subprocess started by a test sees the
    # test database too. WAL lets the worker write while the web process reads.
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # One file per test process, so two test runs on one checkout do not collide.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-vitrine-{os.getpid()}.sqlite3")}
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].pop("CONN_HEALTH_CHECKS", None)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend, whose connection checks (CONN_HEALTH_CHECKS, the web's pool) cost no
    # round trip unless the connection's socket has news (catalog/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "catalog.postgresql"
    # A link to the database that goes silent (a partition, a peer gone without a word)
    # left a session that was inside a transaction waiting for its client for as long as the
    # server's own TCP keepalive allows (2 h by default), holding its locks: one web call's
    # reservation held its account's user row and wallet, and every other call of that
    # account on every healthy web process, and every worker posting its charges, waited on
    # them (session 43). The server ends a session idle in a transaction past this (its
    # locks released; 0: never). Above the longest wait inside a transaction (a broker send,
    # VITRINE_BROKER_SOCKET_TIMEOUT, twice). Off by default with DEBUG: a developer's shell
    # or a test paused inside a transaction is no partition. The keepalives and
    # TCP_USER_TIMEOUT let the client find a dead path in about a minute rather than the
    # kernel's ~15.
    VITRINE_DB_IDLE_IN_TRANSACTION_TIMEOUT = env_int(
        "VITRINE_DB_IDLE_IN_TRANSACTION_TIMEOUT", 0 if DEBUG else 60, minimum=0
    )
    _db_options = DATABASES["default"].setdefault("OPTIONS", {})
    for _name, _value in {
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "tcp_user_timeout": 60_000,
    }.items():
        _db_options.setdefault(_name, _value)
    if VITRINE_DB_IDLE_IN_TRANSACTION_TIMEOUT:
        # First, so a DATABASE_URL's own ?options=-c ... given for it wins.
        _db_options["options"] = (
            f"-c idle_in_transaction_session_timeout={VITRINE_DB_IDLE_IN_TRANSACTION_TIMEOUT}s "
            + _db_options.get("options", "")
        ).strip()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# Dates as the site writes them, in the admin too (config/formats/en/formats.py).
FORMAT_MODULE_PATH = ["config.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "catalog.static_files.ManifestStaticFilesStorage"
        )
    },
}

# Page cache for the catalogue's list pages. One process: memory; several web processes
# share Redis (CACHE_URL=redis://host:6379/1) so an operator's save invalidates them all.
CACHE_URL = env_str("CACHE_URL") or ""
if CACHE_URL and not CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"CACHE_URL must be a redis:// URL; got {CACHE_URL!r}")
CACHES = {
    "default": (
        # Django's RedisCache, with one connection pool per process (catalog/redis_cache.py).
        {"BACKEND": "catalog.redis_cache.SharedPoolRedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
# A signed-in request reads its session from the shared cache before the database (one
# query fewer on every member's page; the database stays the record). Only with a shared
# cache: a per-process cache would keep a logged-out session alive in the other processes.
if CACHE_URL:
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# --- Security: strict by default outside DEBUG (``manage.py check --deploy`` is clean) ---
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# A load balancer's health probe and Prometheus's scrape reach a web process over plain HTTP:
# answered, not sent to https (the probe would count the 301 as down).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Every HTML page's Content-Security-Policy (catalog/csp.py: nothing inline, nothing from
# another origin); empty turns it off.
DEFAULT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "font-src 'self'; connect-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
VITRINE_CSP = env_str("VITRINE_CSP", DEFAULT_CSP)

# The detector runtime reads its own variables (VITRINE_BACKEND, VITRINE_PRECISION,
# VITRINE_DECODE_THREADS...; playground/runtime/env.py) where it uses them: checked here
# too, so a bad value stops start-up as the settings' own do, not a job later.
if _runtime_errors := runtime_environment_errors():
    raise ImproperlyConfigured("; ".join(_runtime_errors))

# --- Celery ---
# The default broker is the embedded Redis server that `make run` (and the tests) start
# on a unix socket under var/: a real Redis, with no system service needed.
EMBEDDED_BROKER_SOCKET = VAR_DIR / "redis.sock"
CELERY_BROKER_URL = env_broker_url(
    "CELERY_BROKER_URL", default=f"redis+socket://{EMBEDDED_BROKER_SOCKET}"
)
# The Redis that every web and worker process shares for what must hold across machines:
# job-completion signals and rate-limit counters. Default: the broker, when it is Redis
# (the embedded one included). With an AMQP broker set it explicitly.
VITRINE_REDIS_URL = redis_client_url(
    env_str("VITRINE_REDIS_URL")
    or (CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis", "rediss")) else "")
)
# Where the page cache's catalogue version lives (catalog/cache.py): with a memory page
# cache (no CACHE_URL), in the Redis all processes share, so a save in another process
# (a shell's seed_catalog --update, a worker's stats) invalidates this one's pages.
VITRINE_CATALOG_VERSION_URL = "" if CACHE_URL else VITRINE_REDIS_URL
# --- Abuse limits (catalog/ratelimit.py) ---
# Counters shared by every web process. Empty: this process's memory (one process only).
VITRINE_LIMITS_REDIS_URL = redis_client_url(
    env_str("VITRINE_LIMITS_REDIS_URL", VITRINE_REDIS_URL) or ""
)
# Proxies in front of the web processes that append to X-Forwarded-For (0: use REMOTE_ADDR).
VITRINE_TRUSTED_PROXY_COUNT = env_int("VITRINE_TRUSTED_PROXY_COUNT", 0, minimum=0)
# POST /v1/inference calls per minute, per API key and per account (all its keys).
# A model card's own rate_limit_per_minute adds a per-account limit for that model.
VITRINE_API_RATE_PER_MINUTE = env_int("VITRINE_API_RATE_PER_MINUTE", 60, minimum=1)
VITRINE_ACCOUNT_RATE_PER_MINUTE = env_int("VITRINE_ACCOUNT_RATE_PER_MINUTE", 120, minimum=1)
# GET/DELETE /v1/jobs/<id> calls per minute and API key (polling).
VITRINE_API_READ_RATE_PER_MINUTE = env_int("VITRINE_API_READ_RATE_PER_MINUTE", 600, minimum=1)
# Queued + running API jobs one account may have at once.
VITRINE_MAX_INFLIGHT_JOBS = env_int("VITRINE_MAX_INFLIGHT_JOBS", 16, minimum=1)
VITRINE_MAX_API_KEYS = env_int("VITRINE_MAX_API_KEYS", 100, minimum=1)  # active, per account
# Failed sign-ins before a username (or an IP) is locked out for the rest of the window.
VITRINE_LOGIN_FAILURES_PER_USER = env_int("VITRINE_LOGIN_FAILURES_PER_USER", 5, minimum=1)
VITRINE_LOGIN_FAILURES_PER_IP = env_int("VITRINE_LOGIN_FAILURES_PER_IP", 20, minimum=1)
VITRINE_LOGIN_LOCKOUT_SECONDS = env_int("VITRINE_LOGIN_LOCKOUT_SECONDS", 900, minimum=1)
VITRINE_SIGNUPS_PER_IP_PER_HOUR = env_int("VITRINE_SIGNUPS_PER_IP_PER_HOUR", 5, minimum=1)
# "Tell me when it is live" sign-ups for a coming-soon model without an account, per IP.
VITRINE_NOTIFY_PER_IP_PER_HOUR = env_int("VITRINE_NOTIFY_PER_IP_PER_HOUR", 10, minimum=1)
VITRINE_PASSWORD_RESETS_PER_EMAIL_PER_HOUR = env_int(
    "VITRINE_PASSWORD_RESETS_PER_EMAIL_PER_HOUR", 3, minimum=1
)
VITRINE_PASSWORD_RESETS_PER_IP_PER_HOUR = env_int(
    "VITRINE_PASSWORD_RESETS_PER_IP_PER_HOUR", 10, minimum=1
)
# A run's PNG export drawn from a large upload (over 4 megapixels: ~55 ns of a web worker per
# pixel, 2.2 s for a 40-megapixel PNG that is 5 kB on the wire), per client network a minute;
# the same export asked again is served from the cache and not counted.
VITRINE_LARGE_EXPORTS_PER_MINUTE = env_int("VITRINE_LARGE_EXPORTS_PER_MINUTE", 10, minimum=1)
CELERY_TASK_HARD_TIME_LIMIT = env_int("CELERY_TASK_HARD_TIME_LIMIT", 300, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = env_int(
    "CELERY_TASK_SOFT_TIME_LIMIT", CELERY_TASK_HARD_TIME_LIMIT - 30, minimum=1
)
if CELERY_TASK_SOFT_TIME_LIMIT >= CELERY_TASK_HARD_TIME_LIMIT:
    raise ImproperlyConfigured("CELERY_TASK_SOFT_TIME_LIMIT must be below the hard limit.")
CELERY_TASK_TIME_LIMIT = CELERY_TASK_HARD_TIME_LIMIT
CELERY_TASK_DEFAULT_QUEUE = "default"
# Detection jobs go to a queue per device kind, so GPU and CPU workers can live on
# different machines behind one broker: `celery -A config worker -Q gpu` on GPU hosts.
VITRINE_INFERENCE_QUEUE = env_str("VITRINE_INFERENCE_QUEUE") or "cpu"
VITRINE_JOB_MAX_ATTEMPTS = env_int("VITRINE_JOB_MAX_ATTEMPTS", 3, minimum=1)
# A worker holds a running job by a short lease that a heartbeat thread renews every
# third of it while the process lives; a job whose lease ran out is presumed lost and the
# reaper (every VITRINE_REAPER_INTERVAL seconds) queues it again. So a dead machine's job
# runs again within lease + interval (45 s by default), whatever the hard time limit.
VITRINE_JOB_LEASE = env_int("VITRINE_JOB_LEASE", 30, minimum=3)
VITRINE_REAPER_INTERVAL = env_int("VITRINE_REAPER_INTERVAL", 15, minimum=1)
# A queued job no worker has claimed: after VITRINE_REQUEUE_AFTER seconds its message is
# sent again (the broker may have lost it, or it was never sent); after
# VITRINE_QUEUE_TIMEOUT seconds it fails with queue_timeout and its held money is released.
VITRINE_REQUEUE_AFTER = env_int("VITRINE_REQUEUE_AFTER", 120, minimum=1)
VITRINE_QUEUE_TIMEOUT = env_int("VITRINE_QUEUE_TIMEOUT", 600, minimum=1)
# A beat task's message expires (a backlog of them is not run on a worker's return) after
# its interval and BEAT_CLOCK_ROOM more: Celery stamps the expiry on beat's clock and a
# worker reads it on its own, so with only the interval a default worker 15 s ahead of beat
# discarded every reaper run (session 43). Beyond this, worker_check fails long before.
BEAT_CLOCK_ROOM = 120
CELERY_BEAT_SCHEDULE = {
    "reap-stale-jobs": {
        "task": "playground.reap_stale_jobs",
        "schedule": float(VITRINE_REAPER_INTERVAL),
        "options": {"queue": "default", "expires": VITRINE_REAPER_INTERVAL + BEAT_CLOCK_ROOM},
    }
}
# The job row is the truth clients poll; Celery's result backend is not used.
CELERY_TASK_IGNORE_RESULT = True
# Ack after the task ran, so a worker killed mid-job leaves the message to be redelivered;
# tasks are idempotent (they claim their row with a compare-and-set update).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fix-up closes every database connection before and after each task unless
# this is set: a new PostgreSQL connection (a backend fork, ~7 ms here) for every job. Set,
# the fix-up leaves them alone and playground/connections.py recycles them as Django does
# per request (CONN_MAX_AGE, health checks, a broken connection dropped).
CELERY_DB_REUSE_MAX = 1_000_000_000
# Redis redelivers an unacked message after the visibility timeout: it must outlast the
# hard time limit, or a long job would run twice.
# At least 20 minutes: a countdown message (a retry, a webhook's backoff step of up to 10
# minutes, playground/webhooks.py MAX_COUNTDOWN) is unacked while it waits and must not be
# handed out twice meanwhile (a hard limit under 270 s made it shorter than a step).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": max(CELERY_TASK_HARD_TIME_LIMIT * 2 + 60, 1200)
}
# A Redis broker that accepts a connection and then says nothing (a partition, a stalled
# server) held a call's message send, inside its transaction and its locks, for as long as
# it lasted (70 s and more, session 42): each connect and each reply is bounded instead.
# Above the workers' 1 s BRPOP poll, which a socket timeout must outlast.
VITRINE_BROKER_SOCKET_TIMEOUT = env_int("VITRINE_BROKER_SOCKET_TIMEOUT", 5, minimum=2)
if CELERY_BROKER_URL.startswith(("redis", "rediss")):
    CELERY_BROKER_TRANSPORT_OPTIONS |= {
        "socket_timeout": VITRINE_BROKER_SOCKET_TIMEOUT,
        "socket_connect_timeout": VITRINE_BROKER_SOCKET_TIMEOUT,
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A Redis broker out of memory (maxmemory with noeviction) refuses a worker's ack with an
# error reply, a channel error to kombu: the worker logged "Unrecoverable error:
# OutOfMemoryError" and exited, and stayed down (session 44). Retried as a lost connection
# instead: the worker reconnects once the server takes writes again. (Redis only: on
# RabbitMQ a closed channel keeps Celery's own handling, see consumer_timeout in the README.)
CELERY_BROKER_CHANNEL_ERROR_RETRY = CELERY_BROKER_URL.startswith(("redis", "rediss"))
# ... with a pause between such restarts (1, 2, 4, 8 s): Celery's own restarted at once, five
# times a second, six log lines a second while the server stayed full (playground/consumer.py).
CELERY_WORKER_CONSUMER = "playground.consumer:Consumer"
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Jobs and the detector ---
# Uploads are kept outside the web root under generated names, in the storage named "jobs"
# (playground/storage.py). Every process reads them through Django's storage API, never a
# path: "local" (one machine) keeps them under VITRINE_JOB_STORAGE; "s3" puts them in an
# S3-compatible bucket that the web and worker machines share.
VITRINE_JOB_STORAGE = Path(env_str("VITRINE_JOB_STORAGE") or VAR_DIR / "jobs")
VITRINE_STORAGE = (
    env_str("VITRINE_STORAGE") or env_str("VITRINE_STORAGE_BACKEND") or "local"
).lower()
if VITRINE_STORAGE == "local":
    # Reads VITRINE_JOB_STORAGE when used, so a test that overrides the setting is obeyed.
    STORAGES["jobs"] = {"BACKEND": "playground.storage.LocalJobStorage"}
elif VITRINE_STORAGE == "s3":
    STORAGES["jobs"] = s3_storage_options()
else:
    raise ImproperlyConfigured(f"VITRINE_STORAGE must be 'local' or 's3'; got {VITRINE_STORAGE!r}")
# Retention (the beat task playground.purge_expired_uploads): free tries (no charge) lose
# their row and image this many hours after they finished; paid jobs keep their row and
# result and lose only the image.
VITRINE_TRY_RETENTION = env_int("VITRINE_TRY_RETENTION", 24, minimum=1)
VITRINE_UPLOAD_RETENTION = env_int("VITRINE_UPLOAD_RETENTION", 24 * 7, minimum=1)
VITRINE_PURGE_INTERVAL = env_int("VITRINE_PURGE_INTERVAL", 3600, minimum=1)
VITRINE_PURGE_BATCH = env_int("VITRINE_PURGE_BATCH", 500, minimum=1)
CELERY_BEAT_SCHEDULE["purge-expired-uploads"] = {
    "task": "playground.purge_expired_uploads",
    "schedule": float(VITRINE_PURGE_INTERVAL),
    "options": {"queue": "default", "expires": VITRINE_PURGE_INTERVAL + BEAT_CLOCK_ROOM},
}
# Measured latency on the model pages (the beat task playground.refresh_model_stats): p50/p95
# queue wait and model time of each model's succeeded jobs over the last 7 days, recomputed
# every VITRINE_STATS_INTERVAL seconds over at most VITRINE_STATS_SAMPLE of its newest jobs;
# shown from VITRINE_STATS_MIN_RUNS runs.
VITRINE_STATS_INTERVAL = env_int("VITRINE_STATS_INTERVAL", 600, minimum=1)
VITRINE_STATS_SAMPLE = env_int("VITRINE_STATS_SAMPLE", 10_000, minimum=1)
VITRINE_STATS_MIN_RUNS = env_int("VITRINE_STATS_MIN_RUNS", 5, minimum=1)
CELERY_BEAT_SCHEDULE["refresh-model-stats"] = {
    "task": "playground.refresh_model_stats",
    "schedule": float(VITRINE_STATS_INTERVAL),
    "options": {"queue": "default", "expires": VITRINE_STATS_INTERVAL + BEAT_CLOCK_ROOM},
}
VITRINE_MAX_IMAGE_PIXELS = env_int("VITRINE_MAX_IMAGE_PIXELS", 40_000_000, minimum=1)
VITRINE_MAX_UPLOAD_BYTES = env_int("VITRINE_MAX_UPLOAD_BYTES", 20 * 1024 * 1024, minimum=1)
# Free tries on the model pages per hour, per client IP and per signed-in user.
VITRINE_PLAYGROUND_PER_HOUR = env_int("VITRINE_PLAYGROUND_PER_HOUR", 20, minimum=0)
# Free tries waiting for a worker, all visitors together, past which a free try answers
# 503 free_tries_busy (not counted): what the free tier may put ahead of paid jobs.
VITRINE_FREE_TRIES_QUEUED = env_int("VITRINE_FREE_TRIES_QUEUED", 16, minimum=1)
# How long POST /v1/inference waits for the result before answering 202 with the job. The
# wait holds no thread (an async view under an ASGI server); the web server's and any
# proxy's request timeout must be longer than this.
VITRINE_SYNC_WAIT = env_int("VITRINE_SYNC_WAIT", 30, minimum=0)
# Job webhooks (playground/webhooks.py): the finished job is POSTed, signed, to the URL the
# caller gave; retried with exponential backoff (base, doubling, capped) up to
# MAX_ATTEMPTS tries. Never to a loopback, private, link-local, multicast, reserved or
# metadata address, except the IPs/networks in VITRINE_WEBHOOK_ALLOW_HOSTS: for tests
# (a receiver on 127.0.0.1), never set it in production.
# Deliveries have their own queue: a receiver that is slow or never answers holds the
# worker process that delivers to it, and on the default queue a flood of them held the
# reaper, the health pings and retention behind it (their messages expire while they wait).
VITRINE_WEBHOOK_QUEUE = env_str("VITRINE_WEBHOOK_QUEUE") or "webhooks"
VITRINE_WEBHOOK_ALLOW_HOSTS = env_list("VITRINE_WEBHOOK_ALLOW_HOSTS", [])
VITRINE_WEBHOOK_MAX_ATTEMPTS = env_int("VITRINE_WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)
VITRINE_WEBHOOK_RETRY_BASE = env_int("VITRINE_WEBHOOK_RETRY_BASE", 10, minimum=1)
VITRINE_WEBHOOK_RETRY_MAX = env_int("VITRINE_WEBHOOK_RETRY_MAX", 3600, minimum=1)
VITRINE_WEBHOOK_CONNECT_TIMEOUT = env_int("VITRINE_WEBHOOK_CONNECT_TIMEOUT", 5, minimum=1)
VITRINE_WEBHOOK_READ_TIMEOUT = env_int("VITRINE_WEBHOOK_READ_TIMEOUT", 10, minimum=1)
# The whole attempt (connect, send, the answer's head and its first 64 KiB), whatever the
# receiver's pace: below the delivery task's 60 s soft time limit.
# At most this many of one account's webhook attempts run at once, across workers: a
# receiver that is slow or never answers holds only its own account's share of the
# webhooks queue's workers; the account's other deliveries wait their turn (not counted
# as attempts), and other accounts' deliveries go on.
VITRINE_WEBHOOK_PER_ACCOUNT = env_int("VITRINE_WEBHOOK_PER_ACCOUNT", 2, minimum=1)
VITRINE_WEBHOOK_ATTEMPT_TIMEOUT = env_int("VITRINE_WEBHOOK_ATTEMPT_TIMEOUT", 20, minimum=1)
if VITRINE_WEBHOOK_ATTEMPT_TIMEOUT >= 60:
    raise ImproperlyConfigured("VITRINE_WEBHOOK_ATTEMPT_TIMEOUT must be below 60 s.")
# The drop-in flavours (Hugging Face, Cloudflare: playground/flavours/) never answer 202:
# they wait up to VITRINE_HF_WAIT seconds (x-wait-for-model: false, the default) or
# VITRINE_HF_WAIT_FOR_MODEL (true) and otherwise answer 503 + estimated_time + Retry-After.
VITRINE_HF_WAIT = env_int("VITRINE_HF_WAIT", 30, minimum=1)
VITRINE_HF_WAIT_FOR_MODEL = env_int("VITRINE_HF_WAIT_FOR_MODEL", 300, minimum=1)
# What loading a cold model is guessed to take, for estimated_time (seconds).
VITRINE_MODEL_LOAD_ESTIMATE = env_int("VITRINE_MODEL_LOAD_ESTIMATE", 20, minimum=0)
# How long an identical Hugging Face call reuses a stored result (x-use-cache: true).
VITRINE_HF_CACHE_TTL = env_int("VITRINE_HF_CACHE_TTL", 24 * 3600, minimum=0)
# How long an Idempotency-Key names its first call's job.
VITRINE_IDEMPOTENCY_TTL = env_int("VITRINE_IDEMPOTENCY_TTL", 24 * 3600, minimum=1)
# How many inference calls of one web process touch the database at once (the waits are
# not counted): keep workers x this under the database's max_connections.
VITRINE_API_DB_CONCURRENCY = env_int("VITRINE_API_DB_CONCURRENCY", 8, minimum=1)
# Under ASGI, Django runs each request's sync code on a thread of that request's own, so a
# persistent connection is never used twice (Django's docs: under ASGI, pool instead): every
# page, every job poll and every synchronous call's answer opened a PostgreSQL backend
# (~7 ms here). config/asgi.py turns this pool on for web processes (VITRINE_DB_POOL=1);
# workers and commands keep one persistent connection per thread (CONN_MAX_AGE).
VITRINE_DB_POOL = env_bool("VITRINE_DB_POOL", default=False)
VITRINE_DB_POOL_SIZE = env_int("VITRINE_DB_POOL_SIZE", VITRINE_API_DB_CONCURRENCY + 12, minimum=2)
if VITRINE_DB_POOL and DATABASES["default"]["ENGINE"] == "catalog.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django refuses both; the pool keeps them open
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": VITRINE_DB_POOL_SIZE,
        # A request waits this long for a free connection; then the API answers 503
        # database_unavailable with Retry-After (playground/middleware.py).
        "timeout": 10,
    }
# Every detection above this floor is kept with the job, so a client can apply any higher
# threshold later without re-running the model.
VITRINE_DETECTION_FLOOR = float(env_decimal("VITRINE_DETECTION_FLOOR", "0.05"))
if not 0 <= VITRINE_DETECTION_FLOOR < 1:
    raise ImproperlyConfigured("VITRINE_DETECTION_FLOOR must be in [0, 1).")
# A checkpoint marked untrained (random weights, "vitrine_untrained" in its config) serves
# paid API jobs only when this is on: on by default with DEBUG (`make run` on random weights,
# the test suite), off in production, where such a job fails unbilled. Free tries are served
# either way, and every result from such weights says "untrained weights".
VITRINE_ALLOW_UNTRAINED = env_bool("VITRINE_ALLOW_UNTRAINED", default=DEBUG)

# --- Billing ---
# Credit is bought in top-ups; the 5% platform fee is added there (catalog.pricing).
VITRINE_MIN_TOP_UP = env_decimal("VITRINE_MIN_TOP_UP", "5")
VITRINE_MAX_TOP_UP = env_decimal("VITRINE_MAX_TOP_UP", "10000")
VITRINE_SIGNUP_CREDIT = env_decimal("VITRINE_SIGNUP_CREDIT", "1" if DEBUG else "0")
# The development payment provider grants credit at once, without a card.
VITRINE_DEV_PAYMENTS = env_bool("VITRINE_DEV_PAYMENTS", default=DEBUG)
STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY") or ""
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET") or ""
# Encrypts users' own provider keys (BYOK) at rest. Production sets its own; changing it
# makes stored provider keys unreadable (users re-enter them).
BYOK_ENCRYPTION_KEY = env_str("BYOK_ENCRYPTION_KEY") or ""
if not BYOK_ENCRYPTION_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("BYOK_ENCRYPTION_KEY must be set when DEBUG is off.")
    BYOK_ENCRYPTION_KEY = "vitrine-development-byok-key"
# The bearer token Prometheus sends to GET /metrics (playground/metrics.py). Unset: no such
# page (404). At least 16 characters, no spaces: it is the only thing guarding the figures.
VITRINE_METRICS_TOKEN = env_str("VITRINE_METRICS_TOKEN") or ""
if VITRINE_METRICS_TOKEN and (
    len(VITRINE_METRICS_TOKEN) < 16
    or not VITRINE_METRICS_TOKEN.isascii()
    or not VITRINE_METRICS_TOKEN.isprintable()
    or " " in VITRINE_METRICS_TOKEN
):
    raise ImproperlyConfigured(
        "VITRINE_METRICS_TOKEN must be at least 16 printable ASCII characters without spaces."
    )
LOGIN_URL = "billing:login"
LOGIN_REDIRECT_URL = "billing:dashboard"
LOGOUT_REDIRECT_URL = "catalog:model_list"
EMAIL_BACKEND = env_str("EMAIL_BACKEND") or "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL") or "Vitrine <noreply@localhost>"
# The mail server, for EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend. Every mail
# (a password reset, an e-mail verification, a security notice) is sent inside a page's
# request: EMAIL_TIMEOUT bounds how long a silent server holds it (Django's default is no
# bound at all).
EMAIL_HOST = env_str("EMAIL_HOST") or "localhost"
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)  # STARTTLS, usually port 587
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)  # TLS from the start, usually port 465
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("Set EMAIL_USE_TLS (STARTTLS) or EMAIL_USE_SSL, not both.")
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    # One JSON error shape for every API error, DRF's own included (catalog/errors.py).
    "EXCEPTION_HANDLER": "catalog.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # OPTIONS answers the Allow header and no body: DRF's default described the view with
    # its class name and docstring.
    "DEFAULT_METADATA_CLASS": "catalog.api_metadata.NoMetadata",
    # No ?format= override: it is an unknown parameter like any other (DRF's took
    # ?format=xml as a renderer it lacks and answered 404).
    "URL_FORMAT_OVERRIDE": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Vitrine API",
    "VERSION": "1.0.0",
    "DESCRIPTION": (
        "Vitrine's model catalogue and inference API. Model ids are `<organisation>/<name>`; "
        "`/v1/models` follows the shape of OpenAI's models API. Prices are USD as exact "
        'decimal strings. Every error is `{"error": {"message", "type", "code", '
        '"param"}}`.'
    ),
    # No SITE_URL: no servers entry, so Swagger UI calls the host it was loaded from.
    "SERVERS": [{"url": SITE_URL}] if SITE_URL else [],
    "SERVE_INCLUDE_SCHEMA": False,
    # Self-hosted assets (drf-spectacular-sidecar), never a CDN; no validator badge call.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    # drf-spectacular's own (enum components), then the closed request bodies.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "playground.openapi.close_request_bodies",
    ],
}

# --- Logs and error reports ---
# JSON lines in production, readable lines in development; every line carries the
# request id (and in a worker the job id) bound for it (config/settings/logs.py).
LOG_FORMAT = (env_str("LOG_FORMAT") or ("console" if DEBUG else "json")).lower()
if LOG_FORMAT not in FORMATS:
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or console; got {LOG_FORMAT!r}")
LOG_LEVEL = (env_str("LOG_LEVEL") or "INFO").upper()
configure_structlog()
LOGGING = logging_config(fmt=LOG_FORMAT, level=LOG_LEVEL)
# dictConfig, then a filter on the servers' access loggers that redacts secrets in query
# strings (config/settings/logs.py).
LOGGING_CONFIG = "config.settings.logs.configure_logging"
# The id RequestIdMiddleware accepted or made is the one django-structlog logs.
DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID = True
DJANGO_STRUCTLOG_IP_LOGGING_ENABLED = False  # no client IPs in logs
DJANGO_STRUCTLOG_CELERY_ENABLED = True  # the enqueuing request's context rides in the message

SENTRY_DSN = env_str("SENTRY_DSN") or ""
SENTRY_ENVIRONMENT = env_str("SENTRY_ENVIRONMENT") or ("development" if DEBUG else "production")
SENTRY_TRACES_SAMPLE_RATE = float(env_decimal("SENTRY_TRACES_SAMPLE_RATE", "0"))
if not 0 <= SENTRY_TRACES_SAMPLE_RATE <= 1:
    raise ImproperlyConfigured("SENTRY_TRACES_SAMPLE_RATE must be in [0, 1].")
if SENTRY_DSN:
    sentry_init(
        dsn=SENTRY_DSN,
        environment=SENTRY_ENVIRONMENT,
        release=env_str("SENTRY_RELEASE") or None,
        traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
    )
