"""WhiteNoise without the sync hop on every request.

WhiteNoise's middleware is sync-only, so under daphne Django ran every request (API included)
through a thread and back (sync_to_async around it, async_to_sync for the inner chain and the
view): on the 2-core bench machine that cost more than the bare view itself. This subclass is
async: a request for a known static file is served (its file opened on a thread), anything else
goes straight on to the next middleware.
"""

from __future__ import annotations

from asgiref.sync import markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware


class AsyncWhiteNoiseMiddleware(WhiteNoiseMiddleware):
    sync_capable = False
    async_capable = True

    def __init__(self, get_response, settings=None):  # type: ignore[no-untyped-def]
        if settings is None:
            super().__init__(get_response)
        else:
            super().__init__(get_response, settings=settings)
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponse:  # type: ignore[override]
        if self.autorefresh:  # DEBUG: looks at the disk on every request
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve)(static_file, request)
        return await self.get_response(request)
