"""WhiteNoise's middleware, able to sit in an async middleware chain.

WhiteNoise (6.x) serves static files from a middleware that is sync only. Under an ASGI
server Django adapts a sync-only middleware by running it, and every middleware outside
it, on a thread, and the rest of the chain back on the event loop: each request crossed
from the loop to a thread and back, and a waiting synchronous inference call held that
thread for its whole wait. This subclass is also async capable: for a request that is not
a static file (a dictionary lookup, as WhiteNoise does it) it awaits the next handler
without leaving the event loop; a static file is still served by WhiteNoise's own code,
on a thread. Under WSGI it is WhiteNoise unchanged.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from whitenoise.middleware import WhiteNoiseMiddleware
from whitenoise.storage import CompressedManifestStaticFilesStorage


class AsyncCapableWhiteNoiseMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None, *args, **kwargs) -> None:
        super().__init__(get_response, *args, **kwargs)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request):
        if self.autorefresh:  # DEBUG: looks on disk
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve)(static_file, request)
        return await self.get_response(request)


class ManifestStaticFilesStorage(CompressedManifestStaticFilesStorage):
    """WhiteNoise's compressed manifest storage that also rewrites the page scripts' ES
    module imports (``import { pause } from "./net.js"``) to the imported file's hashed
    name, as it rewrites CSS ``url()``s: every static file is served with a year's
    ``immutable`` caching under its hashed name, and an import left unhashed would keep a
    browser on a script from before a deploy (Django's own option, off by default)."""

    support_js_module_import_aggregation = True
