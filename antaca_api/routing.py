"""Routes as data: each endpoint declares its channel, roles, encryption rule and body types.

`dispatch` wraps a handler with everything every endpoint needs, in this order: channel
authentication, role check, JWE (decrypt the request, encrypt the response), body decoding
with msgspec, the handler, and the admin audit record. The OpenAPI document is generated from
the same declarations.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from antaca_api import jwe
from antaca_api.admins import Role
from antaca_api.domain_errors import Forbidden, NotFound, ValidationFailed
from antaca_api.errors import EncryptionRequired, MalformedJson
from antaca_api.services import Services
from antaca_auth.invariants import require


class Channel(enum.StrEnum):
    PUBLIC = "public"  # no authentication
    CUSTOMER = "customer"  # /customers: mobile app session token
    PARTNER = "partner"  # /secure, /lifecycle: partner client certificate (mutual TLS)
    ADMIN = "admin"  # /admin: administrator session token
    NETWORK = "network"  # /network: card network or acquirer client certificate (mutual TLS)


# Pagination: how many items one page holds unless the caller asks (`limit`), and the usual
# bound a paginated route declares (`page_size_max=` in `route`; some allow more).
PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 200

ALL_ROLES = frozenset(Role)
ADMIN_ONLY = frozenset({Role.ADMIN})
ADMIN_MANAGER = frozenset({Role.ADMIN, Role.MANAGER})


class Encryption(enum.StrEnum):
    OPTIONAL = "optional"  # the JWE headers are honoured when sent
    REQUIRED = "required"  # plain requests asking for a plain response are refused


PREFIXES = {
    Channel.CUSTOMER: ("/customers",),
    Channel.PARTNER: ("/secure", "/lifecycle"),
    Channel.ADMIN: ("/admin",),
    Channel.NETWORK: ("/network",),
}


@dataclass(frozen=True)
class CustomerPrincipal:
    customer_id: uuid.UUID
    partner_id: uuid.UUID
    installation_id: uuid.UUID


@dataclass(frozen=True)
class AdminPrincipal:
    admin_id: uuid.UUID
    email: str
    role: Role
    # A partner's staff member sees and changes only that partner's objects (staff_scope.py);
    # None: the platform's own staff.
    partner_id: uuid.UUID | None = None


Handler = Callable[["Context", Any], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    channel: Channel
    summary: str
    body: type | None = None
    response: type | None = None
    status: int = 200
    roles: frozenset[Role] = ALL_ROLES
    authenticated: bool = True
    encryption: Encryption = Encryption.OPTIONAL
    multipart: bool = False
    tags: tuple[str, ...] = ()
    # The failures the handler itself may raise (DomainError or ApiError classes), beyond those
    # the dispatch derives from the declaration (antaca_api/openapi.py); None: the usual ones.
    errors: tuple[type[Exception], ...] | None = None
    # A paginated route's largest `limit` (query `limit` and `cursor`); None: not paginated.
    page_size_max: int | None = None
    media_type: str = "application/json"  # of a success that is not a JSON body (e.g. /docs)
    query: tuple[dict, ...] = ()  # other query parameters, as OpenAPI parameter objects


ROUTES: list[Route] = []


def route(
    method: str,
    path: str,
    *,
    channel: Channel,
    summary: str,
    body: type | None = None,
    response: type | None = None,
    status: int = 200,
    roles: frozenset[Role] = ALL_ROLES,
    authenticated: bool = True,
    encryption: Encryption = Encryption.OPTIONAL,
    multipart: bool = False,
    tags: tuple[str, ...] = (),
    errors: tuple[type[Exception], ...] | None = None,
    page_size_max: int | None = None,
    media_type: str = "application/json",
    query: tuple[dict, ...] = (),
) -> Callable[[Handler], Handler]:
    """Declare an endpoint; the handler is called as `handler(ctx, body)`."""

    def register(handler: Handler) -> Handler:
        if channel in PREFIXES:
            assert path.startswith(PREFIXES[channel]), f"{path} is not under {channel}'s prefix"
        ROUTES.append(
            Route(method, path, handler, channel, summary, body, response, status, roles, authenticated,
                  encryption, multipart, tags, errors, page_size_max, media_type, query)
        )
        return handler

    return register


@dataclass
class Context:
    """One request, as a handler sees it."""

    request: web.Request
    services: Services
    route: Route
    partner_id: uuid.UUID | None = None  # the calling partner (partner channel) or the customer's partner
    network_id: uuid.UUID | None = None  # the calling card network (network channel)
    network_deadline_ms: int | None = None  # its time budget for an authorization's answer
    arrived_at: float = 0.0  # event loop time when the handler started: deadlines count from it
    customer: CustomerPrincipal | None = None
    admin: AdminPrincipal | None = None
    audit_target: str | None = None  # set by admin handlers: what the action touched
    audited: bool = field(default=False)

    @property
    def pool(self) -> asyncpg.Pool:
        """The network channel's own connections (the engine's pool), the shared pool otherwise."""
        if self.route.channel is Channel.NETWORK:
            return self.services.authorization_pool
        return self.services.pool

    def path_id(self, name: str) -> uuid.UUID:
        """A UUID path parameter; a malformed one is as unknown as a missing one."""
        try:
            return uuid.UUID(self.request.match_info[name])
        except (KeyError, ValueError):
            raise NotFound() from None

    def query_int(self, name: str, default: int, *, low: int, high: int) -> int:
        raw = self.request.query.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ValidationFailed(f"query parameter {name} must be an integer") from None
        if not low <= value <= high:
            raise ValidationFailed(f"query parameter {name} must be between {low} and {high}")
        return value

    def page_size(self) -> int:
        """The query's `limit`, within the route's declared `page_size_max`."""
        high = self.route.page_size_max
        require(high is not None, f"{self.route.path} reads a page size but declares no bound")
        return self.query_int("limit", min(PAGE_SIZE_DEFAULT, high), low=1, high=high)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """One database transaction; an admin's action is audited inside it."""
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn
            await self.write_audit(conn)

    async def write_audit(self, conn: asyncpg.Connection) -> None:
        if self.admin is None or self.route.method == "GET" or self.audited:
            return
        await conn.execute(
            "INSERT INTO audit_log (admin_id, action, target) VALUES ($1, $2, $3)",
            self.admin.admin_id,
            f"{self.route.method} {self.route.path}",
            self.audit_target or self.request.path,
        )
        self.audited = True


def decode_body(raw: bytes, body_type: type) -> Any:
    """A request body as its Struct; malformed JSON and schema mismatches are 400s."""
    if b"\\u0000" in raw or b"\x00" in raw:
        # PostgreSQL text cannot hold NUL; refuse it here rather than fail at the database.
        raise ValidationFailed("strings must not contain NUL characters")
    try:
        return msgspec.json.decode(raw, type=body_type)
    except msgspec.ValidationError as exc:
        raise ValidationFailed(str(exc)) from None
    except (msgspec.DecodeError, UnicodeDecodeError):  # invalid UTF-8 inside a string is malformed JSON too
        raise MalformedJson() from None


def _flag(request: web.Request, name: str) -> bool:
    return request.headers.get(name, "").strip().lower() == "true"


Authenticator = Callable[[Context], Awaitable[None]]


async def _jwe_work(route: Route, services: Services, func: Callable[..., Any], *args: Any,
                    refusable: bool = True) -> Any:
    """JWE's RSA work off the event loop (antaca_api.background_cpu): decrypting a request is ~1 ms
    with the 3072-bit key, and a client's public key may make encrypting cost as much. Not for the
    network channel: its work must never wait behind other channels' work, nor be refused for it."""
    if route.channel is Channel.NETWORK:
        return func(*args)
    return await services.background_cpu.run(func, *args, refusable=refusable)


def dispatch(route: Route, services: Services, authenticate: Authenticator) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The aiohttp handler for a declared route."""

    async def handle(request: web.Request) -> web.Response:
        ctx = Context(request, services, route, arrived_at=asyncio.get_running_loop().time())
        if route.authenticated and route.channel is not Channel.PUBLIC:
            await authenticate(ctx)
            if ctx.admin is not None and ctx.admin.role not in route.roles:
                raise Forbidden()
        encrypted_request = _flag(request, "Encrypted-Request")
        encrypt_response = encrypted_request or _flag(request, "Encrypt-Response")
        if route.encryption is Encryption.REQUIRED and not encrypt_response:
            raise EncryptionRequired()
        client_key = jwe.parse_client_key(request.headers.get("Public-Key")) if encrypt_response else None
        if client_key is not None and route.channel is not Channel.NETWORK:
            # Refused now if at all: once the handler has changed something, its answer must go out.
            services.background_cpu.check_capacity()

        body = None
        if not route.multipart:
            raw = await request.read()
            if encrypted_request and (raw or route.body is not None):  # an empty body is no envelope either
                raw = await _jwe_work(route, services, jwe.decrypt_envelope, services.jwe_key, raw)
            if route.body is not None:
                body = decode_body(raw or b"", route.body)
            elif raw.strip():
                raise ValidationFailed("this endpoint takes no body")

        result = await route.handler(ctx, body)
        if ctx.admin is not None and not ctx.audited and route.method != "GET":
            async with services.pool.acquire() as conn:
                await ctx.write_audit(conn)
        if result is None:
            return web.Response(status=204)
        if isinstance(result, web.StreamResponse):  # documents that are not JSON bodies (e.g. /docs)
            return result
        payload = msgspec.json.encode(result)
        if client_key is not None and 200 <= route.status < 300:
            payload = await _jwe_work(route, services, jwe.encrypt_envelope, client_key, payload,
                                      refusable=False)
        return web.Response(body=payload, status=route.status, content_type="application/json")

    return handle
