from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# A web process pools its PostgreSQL connections (see VITRINE_DB_POOL in settings).
os.environ.setdefault("VITRINE_DB_POOL", "1")
django_application = get_asgi_application()

from playground.middleware import BodyLimitASGIMiddleware  # noqa: E402 -- needs Django set up

# Django's ASGI handler reads a whole body before any middleware: this cuts streamed bodies
# on the inference API and the try page at their limit.
application = BodyLimitASGIMiddleware(django_application)
