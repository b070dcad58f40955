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
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from antaca_api import idempotency, jwe, pages, rate_limits, step_up
from antaca_api.admins import Role, record_audit_entry
from antaca_api.domain_errors import Forbidden, NotFound, ValidationFailed
from antaca_api.errors import EncryptionRequired, MalformedJson, UnsupportedMediaType
from antaca_api.services import Services
from antaca_auth.invariants import require

log = logging.getLogger(__name__)


class Channel(enum.StrEnum):
    PUBLIC = "public"  # no authentication
    CUSTOMER = "customer"  # /customers: mobile app session token
    PARTNER = "partner"  # /secure, /lifecycle: partner client certificate (mutual TLS)
    ADMIN = "admin"  # /admin: administrator session token
    NETWORK = "network"  # /network: card network or acquirer client certificate (mutual TLS)


# Pagination: how many items one page holds unless the caller asks (`limit`), and the usual
# bound a paginated route declares (`page_size_max=` in `route`; some allow more).
PAGE_SIZE_DEFAULT = pages.page_size_default
PAGE_SIZE_MAX = pages.page_size_max

ALL_ROLES = frozenset(Role)
ADMIN_ONLY = frozenset({Role.ADMIN})
ADMIN_MANAGER = frozenset({Role.ADMIN, Role.MANAGER})


class Encryption(enum.StrEnum):
    OPTIONAL = "optional"  # the JWE headers are honoured when sent
    REQUIRED = "required"  # plain requests asking for a plain response are refused
    # The request body itself is sensitive (a PIN): it must arrive as a JWE (Encrypted-Request),
    # and the response is encrypted too; Encrypt-Response alone is refused.
    REQUEST = "request"


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
    step_up: bool = False  # on the customer channel, a fresh step-up proof is required
    idempotent: bool = False  # honours Idempotency-Key (antaca_api/idempotency.py)
    # The failures the handler itself may raise (DomainError or ApiError classes), beyond those
    # the dispatch derives from the declaration (antaca_api/openapi.py); None: the usual ones.
    errors: tuple[type[Exception], ...] | None = None
    # A paginated route's largest `limit` (query `limit` and `cursor`); None: not paginated.
    page_size_max: int | None = None
    media_type: str = "application/json"  # of a success that is not a JSON body (e.g. /docs)
    query: tuple[dict, ...] = ()  # other query parameters, as OpenAPI parameter objects
    sandbox: bool = False  # served only with ANTACA_SANDBOX=1 (antaca_api/sandbox.py)


# Channels whose POSTs take an Idempotency-Key: their callers are a partner or an administrator.
IDEMPOTENT_CHANNELS = frozenset({Channel.PARTNER, Channel.ADMIN})


def creates(method: str, channel: Channel, status: int, authenticated: bool,
            multipart: bool) -> bool:
    """A partner's or an administrator's POST answering 201 or 202 creates something: idempotent
    unless declared otherwise. A multipart upload is not (its body is read by its handler)."""
    return (method == "POST" and channel in IDEMPOTENT_CHANNELS and status in (201, 202)
            and authenticated and not multipart)


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
    step_up: bool = False,
    idempotent: bool | None = None,
    errors: tuple[type[Exception], ...] | None = None,
    page_size_max: int | None = None,
    media_type: str = "application/json",
    query: tuple[dict, ...] = (),
    sandbox: bool = False,
) -> Callable[[Handler], Handler]:
    """Declare an endpoint; the handler is called as `handler(ctx, body)`. `idempotent`: None
    means a partner's or an administrator's POST answering 201/202 (`creates`); say True for
    one that moves money without creating."""

    def register(handler: Handler) -> Handler:
        if channel in PREFIXES:
            assert path.startswith(PREFIXES[channel]), f"{path} is not under {channel}'s prefix"
        once = (creates(method, channel, status, authenticated, multipart)
                if idempotent is None else idempotent)
        # A page (a response with nextCursor) is bounded by the usual page size unless declared.
        page_bound = page_size_max
        if page_bound is None and "next_cursor" in getattr(response, "__struct_fields__", ()):
            page_bound = PAGE_SIZE_MAX
        assert not once or (method == "POST" and channel in IDEMPOTENT_CHANNELS), path
        ROUTES.append(
            Route(method, path, handler, channel, summary, body, response, status, roles, authenticated,
                  encryption, multipart, tags, step_up, once, errors, page_bound, media_type, query,
                  sandbox)
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

    def page(self, keyset: pages.Keyset) -> pages.PageRequest:
        """The page of `keyset`'s list the query asks for: its opaque `cursor` and `limit`."""
        return pages.request(keyset, self.request.query.get("cursor"), self.page_size())

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """One database transaction; an admin's action is audited inside it."""
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn
            await self.write_audit(conn)

    async def write_audit(self, conn: asyncpg.Connection) -> None:
        if self.admin is None or self.route.method == "GET" or self.audited:
            return
        await record_audit_entry(conn, self.admin.admin_id,
                                 f"{self.route.method} {self.route.path}",
                                 self.audit_target or self.request.path)
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


def body_optional(body_type: type) -> bool:
    """Whether every field of a body type has a default: such a body may be left out (empty)."""
    fields = getattr(body_type, "__struct_fields__", None)
    return fields is not None and all(not f.required for f in msgspec.structs.fields(body_type))


# What a JSON body may be sent as; a body sent as anything else is refused with 415. A request
# without a Content-Type header is read as JSON (the header is what a client gets wrong, not its
# absence).
JSON_MEDIA_TYPE = "application/json"
JSON_MEDIA_TYPE_SUFFIX = "+json"


def check_media_type(request: web.Request) -> None:
    """A body on a JSON route must be declared JSON (or not declared at all)."""
    if "Content-Type" not in request.headers:
        return
    media_type = request.content_type.lower()
    if media_type != JSON_MEDIA_TYPE and not (media_type.startswith("application/")
                                              and media_type.endswith(JSON_MEDIA_TYPE_SUFFIX)):
        raise UnsupportedMediaType(f"send the body as {JSON_MEDIA_TYPE}")


def check_empty_body(raw: bytes) -> None:
    """A route without a body takes none, or an empty JSON object (`{}`)."""
    if not raw.strip():
        return
    try:
        value = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise MalformedJson() from None
    if value != {}:
        raise ValidationFailed("this endpoint takes no body (an empty one or {})")


def check_encryption(route: Route, encrypted_request: bool, encrypt_response: bool) -> None:
    """The route's encryption rule against the request's JWE headers."""
    if route.encryption is Encryption.REQUIRED and not encrypt_response:
        raise EncryptionRequired()
    if route.encryption is Encryption.REQUEST and not encrypted_request:
        raise EncryptionRequired("this request carries sensitive data: send it as a JWE with "
                                 "Encrypted-Request: true")


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

    policy = rate_limits.policy_of(route.method, route.path)

    async def handle(request: web.Request) -> web.Response:
        ctx = Context(request, services, route, arrived_at=asyncio.get_running_loop().time())
        if policy is None:
            return await _handle(ctx, authenticate, _admit_all)
        return await rate_limits.guarded(ctx, policy,
                                         lambda admit: _handle(ctx, authenticate, admit))

    return handle


def _admit_all(_: Any) -> None:
    """No rate limit: every request is admitted."""


async def _handle(ctx: Context, authenticate: Authenticator,
                  admit: rate_limits.Admit) -> web.Response:
    """Authenticate, check the rules, decode the body (and admit the request on its account's
    rate limit once it is known), run the handler."""
    route, services, request = ctx.route, ctx.services, ctx.request
    if route.authenticated and route.channel is not Channel.PUBLIC:
        await authenticate(ctx)
        if ctx.admin is not None and ctx.admin.role not in route.roles:
            raise Forbidden()
        if route.body is None:
            admit(None)  # the account is the caller's principal: known now
        if route.step_up and ctx.customer is not None:
            await step_up.require_proof(services, ctx.customer.customer_id,
                                        ctx.customer.installation_id,
                                        request.headers.get(step_up.STEP_UP_HEADER))
    encrypted_request = _flag(request, "Encrypted-Request")
    encrypt_response = encrypted_request or _flag(request, "Encrypt-Response")
    check_encryption(route, encrypted_request, encrypt_response)
    client_key = jwe.parse_client_key(request.headers.get("Public-Key")) if encrypt_response else None
    if client_key is not None and route.channel is not Channel.NETWORK:
        # Refused now if at all: once the handler has changed something, its answer must go out.
        services.background_cpu.check_capacity()

    body = None
    if not route.multipart:
        raw = await request.read()
        if raw:
            check_media_type(request)
        if encrypted_request and route.body is None and raw.strip():
            # Refused before any RSA work: a body-less route has nothing to decrypt.
            raise ValidationFailed("this endpoint takes no body (an empty one or {})")
        if encrypted_request and route.body is not None:  # an empty body is no envelope either
            raw = await _jwe_work(route, services, jwe.decrypt_envelope, services.jwe_key, raw)
        if route.body is not None:
            if not raw.strip() and body_optional(route.body):
                raw = b"{}"  # a body whose every field is optional may be left out
            body = decode_body(raw or b"", route.body)
            admit(body)
        else:
            check_empty_body(raw)

    if route.idempotent and idempotency.HEADER in request.headers:
        return await _run_once(ctx, body, client_key,
                               lambda: _respond(ctx, body, client_key))
    return await _respond(ctx, body, client_key)


async def _respond(ctx: Context, body: Any, client_key: Any) -> web.Response:
    """Run the handler, audit an administrator's change, encode (and encrypt) the answer."""
    route, services = ctx.route, ctx.services
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


def _caller(ctx: Context) -> idempotency.Caller:
    if ctx.admin is not None:
        return idempotency.Caller("admin", ctx.admin.admin_id)
    require(ctx.route.channel is Channel.PARTNER and ctx.partner_id is not None,
            "idempotent routes are the partner's and the administrators'")
    return idempotency.Caller("partner", ctx.partner_id)


def _replayed(replay: idempotency.Replay) -> web.Response:
    headers = {idempotency.REPLAYED_HEADER: "true"}
    if replay.status == 204:
        return web.Response(status=204, headers=headers)
    return web.Response(body=replay.body, status=replay.status, content_type="application/json",
                        headers=headers)


# What storing or releasing a key may fail with; the request's answer goes out all the same.
STORE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def _run_once(ctx: Context, body: Any, client_key: Any,
                    produce: Callable[[], Awaitable[web.Response]]) -> web.Response:
    """The request under its Idempotency-Key: run once, or the first answer replayed, or 409."""
    request, services = ctx.request, ctx.services
    key = idempotency.check_key(request.headers[idempotency.HEADER])
    caller = _caller(ctx)
    canonical = b"" if body is None else msgspec.json.encode(body, order="sorted")
    public_key = request.headers.get("Public-Key") if client_key is not None else None
    hashed = idempotency.request_hash(idempotency.request_hash_key(services.card_keys),
                                      request.method, request.path_qs, canonical, public_key)
    replay = await idempotency.claim(services.pool, services.card_keys, caller, key, hashed,
                                     services.clock())
    if replay is not None:
        return _replayed(replay)
    try:
        response = await produce()
    except BaseException:
        with contextlib.suppress(*STORE_ERRORS):  # the request's own error is the answer
            await asyncio.shield(idempotency.release(services.pool, caller, key))
        raise
    try:
        if 200 <= response.status < 300 and isinstance(response.body, bytes | None):
            await idempotency.record(services.pool, services.card_keys, caller, key,
                                     response.status, response.body or b"")
        else:
            await idempotency.release(services.pool, caller, key)
    except STORE_ERRORS:
        # The operation is done: its answer goes out. The claim stays until its lease ends.
        log.exception("could not store the answer of an idempotent %s", route_name(ctx))
    return response


def route_name(ctx: Context) -> str:
    return f"{ctx.route.method} {ctx.route.path}"
