"""The operators' endpoints: ``/healthz`` (is everything there?) and ``/metrics`` (Prometheus).

With ``CLAWSITE_METRICS_TOKEN`` set, ``/metrics`` answers only ``Authorization: Bearer <it>`` or
a signed-in staff member (it names worker hosts and pids), and so do ``/healthz``'s details:
anyone else gets the status alone (``{"status": "ok"}`` or ``"down"``, with 200 or 503), which
is what a load balancer's probe needs. Unset, both are open as before (one machine, no proxy).
"""

from __future__ import annotations

import hmac

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from .metrics import render_metrics
from .models import WorkerHeartbeat


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except DatabaseError:
        return False


def _redis_ok() -> bool:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _fresh_workers() -> int | None:
    try:
        return WorkerHeartbeat.objects.alive().count()
    except DatabaseError:
        return None


def _operator(request: HttpRequest) -> bool:
    """Staff, or the bearer of the metrics token; anyone while no token is configured."""
    token = settings.CLAWSITE_METRICS_TOKEN
    if not token:
        return True
    if getattr(request, "user", None) is not None and request.user.is_staff:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database, Redis and at least one worker (a heartbeat within three lease
    periods) are there; 503 naming what is not."""
    database = _database_ok()
    workers = _fresh_workers() if database else None
    body = {
        "status": "ok",
        "database": {"ok": database},
        "redis": {"ok": _redis_ok()},
        "workers": {"ok": bool(workers), "count": workers or 0},
    }
    down = not all(body[part]["ok"] for part in ("database", "redis", "workers"))  # type: ignore[index]
    if down:
        body["status"] = "down"
    if not _operator(request):
        body = {"status": body["status"]}
    return JsonResponse(body, status=503 if down else 200)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not _operator(request):
        refused = HttpResponse("metrics need the bearer token or staff\n", status=401)
        refused["Content-Type"] = "text/plain"
        refused["WWW-Authenticate"] = "Bearer"
        return refused
    try:
        body, content_type = render_metrics()
    except DatabaseError:
        return HttpResponse("database unavailable\n", status=503, content_type="text/plain")
    return HttpResponse(body, content_type=content_type)
