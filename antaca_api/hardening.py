"""Connection hygiene on the HTTP and TLS listeners (docs/api.md, "Hardening").

- Timeouts: a connection with no request closes after `idle_timeout_seconds`; a request whose
  line and headers have not all arrived `header_timeout_seconds` after its first byte is cut;
  a body not complete `body_timeout_seconds` after its headers fails with 408.
- Every error aiohttp answers itself (request line or header too long, a bad method, malformed
  HTTP, a body that never completes) is `{"code","message"}` JSON like every other error, echoes
  nothing of the request, and is logged as one line naming the error class (never a header value,
  never a traceback for a client's mistake).
- Every response carries the security headers (HSTS on TLS) and `Server: antaca`, no version.

`HardenedAppRunner` is `web.AppRunner` with this protocol handler; `antaca serve` and the test
harness use it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler

from antaca_api.errors import ErrorBody, RequestTimeout

log = logging.getLogger(__name__)

idle_timeout_seconds = 60.0  # a connection without a request in progress
header_timeout_seconds = 10.0  # first byte of a request to the end of its headers
body_timeout_seconds = 30.0  # end of the headers to the end of the body (5 MiB at ~170 KB/s)
request_line_bytes_max = 8190  # the request line, and each header line
headers_max = 100  # header lines per request

SERVER_NAME = "antaca"  # the Server header: no version to look up vulnerabilities by
HSTS_SECONDS = 63_072_000  # two years
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}

# What aiohttp's own refusals answer: the exception class's code and a fixed message.
PROTOCOL_ERRORS: list[tuple[type[BaseException], str, str]] = [
    (http_exceptions.BadHttpMethod, "BAD_METHOD", "the request method is not valid"),
    (http_exceptions.LineTooLong, "LINE_TOO_LONG",
     "the request line or a header is longer than this service accepts"),
    (http_exceptions.InvalidHeader, "MALFORMED_HEADER", "a header of the request is malformed"),
    (http_exceptions.BadStatusLine, "MALFORMED_REQUEST_LINE", "the request line is malformed"),
    (http_exceptions.InvalidURLError, "MALFORMED_URL", "the request target is malformed"),
    (http_exceptions.BadHttpMessage, "MALFORMED_HTTP", "the request is not valid HTTP"),
]


def security_headers(secure: bool) -> dict[str, str]:
    """The headers every response carries; HSTS only over TLS (RFC 6797 §7.2)."""
    headers = {"Server": SERVER_NAME, **SECURITY_HEADERS}
    if secure:
        headers["Strict-Transport-Security"] = f"max-age={HSTS_SECONDS}; includeSubDomains"
    return headers


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the security headers on every response of the application; a
    response's own stricter policy (the panel's and the reference's Content-Security-Policy) is
    kept."""
    headers = security_headers(request.secure)
    response.headers.setdefault("Content-Security-Policy", headers.pop("Content-Security-Policy"))
    response.headers.update(headers)


def protocol_error(status: int, exc: BaseException | None) -> ErrorBody:
    """The body of an error aiohttp answers before any route runs."""
    if status == 504:
        return ErrorBody("TIMEOUT", "the request took too long")
    if status >= 500:
        return ErrorBody("INTERNAL_ERROR", "an internal error occurred")
    for error_class, code, message in PROTOCOL_ERRORS:
        if isinstance(exc, error_class):
            return ErrorBody(code, message)
    return ErrorBody("MALFORMED_HTTP", "the request is not valid HTTP")


class HardenedRequestHandler(RequestHandler):
    """aiohttp's protocol with a header timer, a body timer and JSON protocol errors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        queued = len(self._messages)
        super().data_received(data)
        for message, payload in list(self._messages)[queued:]:
            if payload is not None and hasattr(payload, "is_eof") and not payload.is_eof():
                timer = self._loop.call_later(body_timeout_seconds, _expire_body, payload)
                payload.on_eof(timer.cancel)  # a complete body stops its timer
        if self._messages or self._request_in_progress or self._force_close:
            self._stop_header_timer()
        elif data and self._header_timer is None:
            self._header_timer = self._loop.call_later(header_timeout_seconds,
                                                       self._headers_too_slow)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not (self._messages or self._request_in_progress or self._force_close):
            log.info("connection closed: request headers incomplete after %.0f s",
                     header_timeout_seconds)
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        body = protocol_error(status, exc)
        if status >= 500 and exc is not None:
            log.error("%s answered %d: %s", type(exc).__name__, status, body.code, exc_info=exc)
        else:  # a client's mistake: one line, nothing of the request
            log.info("refused a request before routing: %d %s", status, body.code)
        if request.writer.output_size > 0:
            raise ConnectionError("the response has started: no error answer can follow")
        secure = self.transport is not None and self.transport.get_extra_info("sslcontext")
        response = web.Response(body=msgspec.json.encode(body), status=status,
                                content_type="application/json",
                                headers=security_headers(bool(secure)))
        response.force_close()
        return response


def _expire_body(payload: Any) -> None:
    """The body timer: a body still incomplete fails its reader with 408."""
    if not payload.is_eof() and payload.exception() is None:
        payload.set_exception(RequestTimeout())


class HardenedAppRunner(web.AppRunner):
    """web.AppRunner with HardenedRequestHandler and the limits and idle timeout above."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", idle_timeout_seconds)
        kwargs.setdefault("max_line_size", request_line_bytes_max)
        kwargs.setdefault("max_field_size", request_line_bytes_max)
        kwargs.setdefault("max_headers", headers_max)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = HardenedServer
        return server


class HardenedServer(web.Server):
    def __call__(self) -> RequestHandler:
        return HardenedRequestHandler(self, loop=self._loop, **self._kwargs)
