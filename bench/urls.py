"""ClawSite's URLs plus the bare JSON view: the same daphne, no auth, no database; it parses the
body it gets (as the submit views do) and answers a small JSON object."""

import json

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from clawsite.urls import urlpatterns as clawsite_urlpatterns


@csrf_exempt
async def bare_json(request: HttpRequest) -> JsonResponse:
    body = json.loads(request.body) if request.body else {}
    return JsonResponse(
        {"ok": True, "items": len(body.get("tasks", ())) if isinstance(body, dict) else 0},
        status=202,
    )


# Twice: /api/ paths go through the API's lean handler (clawsite.handlers), the rest through the
# site's full middleware stack.
urlpatterns = [
    path("api/bench/json", bare_json),
    path("bench/json", bare_json),
    *clawsite_urlpatterns,
]
