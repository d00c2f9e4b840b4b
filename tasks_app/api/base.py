"""The frame of every API view: method dispatch, authentication, JSON in, JSON or error out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import import_module
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt
from pydantic import BaseModel, ValidationError

from tools_app.errors import validation_details

from .. import safejson
from ..auth import bearer_token, user_for_session, user_for_token
from ..db import GroupCommit, run_in_db_thread
from ..errors import ApiError
from ..events import bind_event_loop
from ..flow import acheck_api_rate

Handler = Callable[..., Awaitable[HttpResponse]]
M = TypeVar("M", bound=BaseModel)

_csrf = CsrfViewMiddleware(lambda request: HttpResponse())
_session_store = import_module(settings.SESSION_ENGINE).SessionStore


def _authenticate_sync(request: HttpRequest) -> Any:
    raw = bearer_token(request.headers)
    if raw is None and not hasattr(request, "session"):
        # The API's lean handler (clawsite.handlers) has no session middleware: open it here.
        request.session = _session_store(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    if raw is not None:
        # A Bearer request carries no ambient credential: no CSRF check, and no session either.
        user = user_for_token(raw)
        if user is None:
            raise ApiError("unauthenticated", "The Bearer token is invalid or revoked.")
        return user
    user = user_for_session(request)
    if user is None:
        raise ApiError("unauthenticated", "Authentication required: a Bearer token or a session.")
    # No view to pass: the check needs none (a view only matters when marked csrf_exempt).
    if request.method not in ("GET", "HEAD", "OPTIONS") and _csrf.process_view(
        request,
        None,  # type: ignore[arg-type]
        (),
        {},
    ):
        raise ApiError("forbidden", "CSRF check failed: send the X-CSRFToken header.")
    return user


def _users_for_tokens(raws: list[str]) -> list[Any]:
    users = {raw: user_for_token(raw) for raw in set(raws)}  # an agent's calls share its token
    return [users[raw] for raw in raws]


# Bearer lookups of requests arriving together share one database-thread round trip.
_users_together = GroupCommit(_users_for_tokens)


async def authenticate(request: HttpRequest) -> Any:
    raw = bearer_token(request.headers)
    if raw is None:
        return await run_in_db_thread(_authenticate_sync, request)
    user = await _users_together(raw)
    if user is None:
        raise ApiError("unauthenticated", "The Bearer token is invalid or revoked.")
    return user


def endpoint(*, staff_only: bool = False, public: bool = False, **handlers: Handler) -> Handler:
    """One URL's view: ``GET=...``, ``POST=...``; each handler gets ``(request, user, **kwargs)``."""

    allowed = ", ".join(sorted(handlers))

    @csrf_exempt
    async def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        bind_event_loop()
        handler = handlers.get(request.method or "")
        try:
            user = None if public else await authenticate(request)
            if user is not None and settings.CLAWSITE_API_RATE:
                await acheck_api_rate(user)
            if handler is None:
                response = ApiError(
                    "method_not_allowed", f"{request.method} is not allowed here."
                ).response()
                response["Allow"] = allowed
                return response
            if staff_only and not (user is not None and user.is_staff):
                raise ApiError("forbidden", "Staff only.")
            return await handler(request, user, **kwargs)
        except ApiError as error:
            return error.response()

    return view


def json_body(request: HttpRequest) -> Any:
    if int(request.headers.get("Content-Length") or 0) > settings.CLAWSITE_MAX_BODY_BYTES:
        raise ApiError("payload_too_large", "The request body is too large.")
    try:
        body = request.body
    except RequestDataTooBig:
        raise ApiError("payload_too_large", "The request body is too large.") from None
    try:
        data = safejson.loads(body)
    except safejson.UnsafeJSON as exc:
        raise ApiError("invalid_json", f"The body is not acceptable JSON: {exc}.") from None
    except ValueError:  # UnicodeDecodeError included
        raise ApiError("invalid_json", "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError("invalid_json", "The body must be a JSON object.")
    return data


def parse(model: type[M], data: Any, code: str = "invalid_args") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(code, "Invalid request.", validation_details(exc)) from None


def query(request: HttpRequest, model: type[M]) -> M:
    return parse(model, request.GET.dict())


def respond(data: Any, status: int = 200) -> JsonResponse:
    return JsonResponse(data, status=status, safe=False)
