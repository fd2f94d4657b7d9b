from __future__ import annotations

import os

from catalog.asgi_threads import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# A web process pools its PostgreSQL connections (see VITRINE_DB_POOL in settings). Set only
# while the settings load: processes this one starts (or a test process that imports this
# module) do not inherit it.
_pool_by_default = "VITRINE_DB_POOL" not in os.environ
if _pool_by_default:
    os.environ["VITRINE_DB_POOL"] = "1"
try:
    django_application = get_asgi_application()
finally:
    if _pool_by_default:
        del os.environ["VITRINE_DB_POOL"]

from catalog.asgi_startup import ServerStartup  # noqa: E402 -- needs Django set up
from playground.middleware import BodyLimitASGIMiddleware  # noqa: E402

# Django's ASGI handler reads a whole body before any middleware: this cuts streamed bodies
# on the inference API and the try page at their limit. ServerStartup answers the server's
# lifespan events and, at startup, takes the thread hop out of every request's start.
application = ServerStartup(BodyLimitASGIMiddleware(django_application))
