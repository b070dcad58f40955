"""The aiohttp application: declared routes, the error mapping, the services."""

from __future__ import annotations

import logging

import asyncpg
import msgspec
from aiohttp import web

from antaca_api import channels, errors, hardening
from antaca_api.domain_errors import DomainError, ValidationFailed
from antaca_api.panel import panel_app
from antaca_api.routes import load_all
from antaca_api.routing import ROUTES, Route, dispatch
from antaca_api.services import Services

log = logging.getLogger(__name__)

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
        body=msgspec.json.encode(errors.ErrorBody(error.code, error.message)),
        status=status,
        content_type="application/json",
        headers=headers,
    )


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
            body=msgspec.json.encode(errors.ErrorBody(errors.HTTP_ERROR_CODE, exc.reason)),
            status=exc.status,
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
    app = web.Application(client_max_size=services.settings.max_body_bytes, middlewares=[error_middleware])
    app[SERVICES] = services
    app.on_response_prepare.append(hardening.add_security_headers)
    for r in [*ROUTES, *extra_routes]:
        if r.sandbox and not services.settings.sandbox:
            continue  # sandbox simulation routes do not exist outside the sandbox
        app.router.add_route(r.method, r.path, dispatch(r, services, channels.authenticate))
    app.add_subapp("/panel/", panel_app(services))  # the administration panel (docs/panel.md)
    return app
