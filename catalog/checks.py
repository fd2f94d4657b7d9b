"""Django's deploy checks of the security, X-Frame and CSRF middlewares, for our subclasses.

Django's deploy checks find these three middlewares by their exact dotted path in
``MIDDLEWARE``. Ours are subclasses that only change how their hooks run under ASGI
(``catalog/inline_middleware.py``), so Django's checks would report them missing
(security.W001-W003) and skip every check that depends on them: HSTS, the HTTPS redirect,
nosniff, the referrer and opener policies, X-Frame DENY, the CSRF cookie. This check runs
Django's own check functions against ``MIDDLEWARE`` with each subclass named as the Django
class it extends. Django's three missing-middleware warnings are silenced in settings
(their string test cannot see a subclass) and given again here, with the same text under a
``vitrine.`` id, when one of the middlewares really is missing.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.checks.security import base, csrf
from django.test.utils import override_settings
from django.utils.module_loading import import_string

DJANGO_MIDDLEWARE = (
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
)
# The ids Django gives "missing" for those three: silenced in settings, given again here.
MISSING = ("security.W001", "security.W002", "security.W003")
# Django's deploy checks that read MIDDLEWARE (directly or through the three above).
CHECKS = (
    base.check_security_middleware,
    base.check_xframe_options_middleware,
    base.check_sts,
    base.check_sts_include_subdomains,
    base.check_sts_preload,
    base.check_content_type_nosniff,
    base.check_ssl_redirect,
    base.check_xframe_deny,
    base.check_referrer_policy,
    base.check_cross_origin_opener_policy,
    csrf.check_csrf_middleware,
    csrf.check_csrf_cookie_secure,
)


def as_django_names(middleware: list[str]) -> list[str]:
    """``middleware`` with each subclass of the three named as the Django class it extends."""
    named = []
    for path in middleware:
        cls = import_string(path)
        parent = next((p for p in DJANGO_MIDDLEWARE if issubclass(cls, import_string(p))), None)
        named.append(parent or path)
    return named


def _run(app_configs) -> list[CheckMessage]:
    return [message for check in CHECKS for message in check(app_configs)]


@register(Tags.security, deploy=True)
def check_middleware_subclasses(app_configs, **kwargs) -> list[CheckMessage]:
    # What Django's own checks already report (they run too): not reported twice.
    reported = {m.id for m in _run(app_configs) if m.id not in MISSING}
    with override_settings(MIDDLEWARE=as_django_names(settings.MIDDLEWARE)):
        messages = [m for m in _run(app_configs) if m.id not in reported]
    # New messages: Django's are shared constants.
    return [
        CheckMessage(m.level, m.msg, hint=m.hint, obj=m.obj, id=f"vitrine.{m.id}")
        if m.id in MISSING
        else m
        for m in messages
    ]


@register(Tags.security, deploy=True)
def check_dev_payments(app_configs, **kwargs) -> list[CheckMessage]:
    """The development payment provider adds credit without a card: on a production site
    (DEBUG off) anyone could fund their wallet for free."""
    if settings.VITRINE_DEV_PAYMENTS and not settings.DEBUG:
        return [
            Error(
                "VITRINE_DEV_PAYMENTS is on with DEBUG off: anyone can add credit for free.",
                hint="Unset VITRINE_DEV_PAYMENTS on production machines (Stripe tops up).",
                id="vitrine.E001",
            )
        ]
    return []


@register(Tags.caches, deploy=True)
def check_shared_redis(app_configs, **kwargs) -> list[CheckMessage]:
    """What every process must share lives in Redis. Its URL defaults to the broker's when
    that is Redis; with an AMQP broker it is empty unless set, and these fall back quietly."""
    if settings.DEBUG:
        return []
    messages = []
    if not settings.VITRINE_REDIS_URL:
        pages = (
            ""
            if settings.VITRINE_CATALOG_VERSION_URL or settings.CACHE_URL
            else " With no CACHE_URL either, an edit made in one process (a price in the "
            "admin) is not seen by the other processes' cached pages for up to 10 minutes."
        )
        messages.append(
            Warning(
                "VITRINE_REDIS_URL is empty (the default with an AMQP broker): a synchronous "
                "inference call hears of its job's end only by reading the row every 5 s, and "
                "a Hugging Face or Cloudflare call cannot give up its job while the database "
                "is away." + pages,
                hint="Set VITRINE_REDIS_URL to a Redis that every web and worker process shares.",
                id="vitrine.W001",
            )
        )
    if not settings.VITRINE_LIMITS_REDIS_URL:
        messages.append(
            Warning(
                "VITRINE_LIMITS_REDIS_URL is empty: abuse limits (API calls per minute, free "
                "tries, sign-in lockouts) are counted in each process's memory, so every web "
                "process admits the whole limit.",
                hint="Set VITRINE_REDIS_URL (or VITRINE_LIMITS_REDIS_URL) to a shared Redis.",
                id="vitrine.W002",
            )
        )
    return messages
