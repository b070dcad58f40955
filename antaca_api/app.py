"""The aiohttp application: declared routes, the error mapping, the services."""

from __future__ import annotations

import logging
import time

import asyncpg
import msgspec
import structlog
from aiohttp import web

from antaca_api import channels, errors, hardening, logs
from antaca_api.domain_errors import DomainError, ValidationFailed
from antaca_api.metrics import UNMATCHED_ROUTE
from antaca_api.panel import panel_app
from antaca_api.routes import load_all
from antaca_api.routing import ROUTES, Route, dispatch
from antaca_api.services import Services

log = logging.getLogger(__name__)
request_log = structlog.get_logger("antaca_api.requests")

SERVICES = web.AppKey("services", Services)


def error_response(error: errors.ApiError | DomainError) -> web.Response:
    """`{"code", "message"}` with the error's status: an HTTP layer error's own, a domain error's
    from the one table (errors.DOMAIN_ERROR_STATUS)."""
    if isinstance(error, DomainError):
        status = errors.status_of(error)
        retry_after_seconds = getattr(error, "retry_after_seconds", None)  # a rate limit's wait
    else:
        status, retry_after_seconds = error.status, error.retry_after_seconds
    headers = None if retry_after_seconds is None else {"Retry-After": str(retry_after_seconds)}
    return web.Response(
        body=_error_body(error.code, error.message),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _error_body(code: str, message: str) -> bytes:
    return msgspec.json.encode(errors.ErrorBody(code, message, logs.current_request_id()))


def route_template(request: web.Request) -> str:
    """The matched route's path template (`/cards/{card_id}`), never the path with its ids."""
    resource = request.match_info.route.resource
    return UNMATCHED_ROUTE if resource is None else resource.canonical


@web.middleware
async def observe_middleware(request: web.Request, handler) -> web.StreamResponse:
    """The request id (the caller's when well-formed), one log line and the metrics per request."""
    request_id = logs.request_id_of(request.headers.get(logs.REQUEST_ID_HEADER))
    token = logs.request_id_var.set(request_id)
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers[logs.REQUEST_ID_HEADER] = request_id
        return response
    except web.HTTPException as exc:  # redirects and the like, past the error middleware
        status = exc.status
        exc.headers[logs.REQUEST_ID_HEADER] = request_id
        raise
    finally:
        seconds = time.monotonic() - started
        route = route_template(request)
        request.app[SERVICES].metrics.http_request(route, request.method, status, seconds)
        request_log.info("request", method=request.method, route=route, status=status,
                         duration_ms=round(seconds * 1000, 3))
        structlog.contextvars.unbind_contextvars("request_id")
        logs.request_id_var.reset(token)


_HTTP_ERRORS: dict[int, type[errors.ApiError]] = {
    404: errors.RouteNotFound,
    405: errors.MethodNotAllowed,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
}


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Every failure becomes {"code", "message"} with its status; nothing else leaks out."""
    try:
        return await handler(request)
    except (errors.ApiError, DomainError) as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error_class = _HTTP_ERRORS.get(exc.status)
        if error_class is not None:
            response = error_response(error_class())
            if "Allow" in exc.headers:  # a 405 names the methods the path takes (RFC 9110)
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        return web.Response(
            body=_error_body(errors.HTTP_ERROR_CODE, exc.reason), status=exc.status,
            content_type="application/json",
        )
    except (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError):
        # Text PostgreSQL cannot store (a NUL character, in a text or jsonb value): the caller's error.
        return error_response(ValidationFailed("text must not contain NUL characters"))
    except Exception:
        # Only the route is logged: request bodies may hold card data or secrets.
        log.exception("unhandled error in %s %s", request.method, request.match_info.route.resource)
        return error_response(errors.InternalError())


def create_app(services: Services, extra_routes: list[Route] = ()) -> web.Application:
    """Build the application around its services (tests may add routes of their own)."""
    load_all()
    logs.configure_structlog()
    app = web.Application(client_max_size=services.settings.max_body_bytes,
                          middlewares=[observe_middleware, error_middleware])
    app[SERVICES] = services
    services.metrics.services = services
    if services.engine is not None:
        services.engine.observer = services.metrics
    app.on_response_prepare.append(hardening.add_security_headers)
    for r in [*ROUTES, *extra_routes]:
        if r.sandbox and not services.settings.sandbox:
            continue  # sandbox simulation routes do not exist outside the sandbox
        app.router.add_route(r.method, r.path, dispatch(r, services, channels.authenticate))
    app.add_subapp("/panel/", panel_app(services))  # the administration panel (docs/panel.md)
    return app
