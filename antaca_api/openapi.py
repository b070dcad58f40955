"""The OpenAPI 3.1 document, generated from the declared routes and their msgspec Structs."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import msgspec

from antaca_api import pages, rate_limits, reference, step_up
from antaca_api.domain_errors import (
    AccountLocked,
    Conflict,
    Forbidden,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    InvalidCursor,
    NetworkSuspended,
    NotFound,
    PartnerSuspended,
    PasswordChangeRequired,
    RateLimited,
    StepUpRequired,
    ValidationFailed,
)
from antaca_api.errors import (
    CantDecryptPayload,
    CertificateRequired,
    EncryptionRequired,
    ErrorBody,  # the shape error_middleware sends, not a copy of it
    InvalidPayload,
    InvalidPublicKey,
    MalformedJson,
    PayloadTooLarge,
    ServiceBusy,
    SessionExpired,
    Unauthenticated,
    UnsupportedMediaType,
    status_of_class,
)
from antaca_api.jwe import Envelope
from antaca_api.routing import (
    ALL_ROLES,
    PAGE_SIZE_DEFAULT,
    Channel,
    Encryption,
    Route,
    body_optional,
)

SECURITY = {
    Channel.CUSTOMER: [{"customerSession": []}],
    Channel.PARTNER: [{"partnerCertificate": []}],
    Channel.ADMIN: [{"adminSession": []}],
    Channel.NETWORK: [{"networkCertificate": []}],
    Channel.PUBLIC: [],
}

SECURITY_SCHEMES = {
    "customerSession": {"type": "http", "scheme": "bearer",
                        "description": "Session token from device pairing (POST /customers/devices/pair) or "
                                       "POST /customers/sessions; 10 minutes by default."},
    "adminSession": {"type": "http", "scheme": "bearer", "description": "Token from POST /admin/sessions."},
    "partnerCertificate": {"type": "mutualTLS",
                           "description": "Client certificate issued by Antaca's CA to the partner "
                                          "(POST /admin/partners/{partnerId}/certificates)."},
    "networkCertificate": {"type": "mutualTLS",
                           "description": "Client certificate issued by Antaca's CA to a card network."},
}

# Each status's meaning, for the descriptions (the codes follow, from the route's failures); any
# other status is described by its HTTP reason phrase.
STATUS_MEANINGS = {
    400: "Malformed or invalid request",
    401: "Not authenticated for this channel",
    403: "Role or partner status does not allow it",
    404: "Unknown id, or one that belongs to another tenant",
    409: "The current state does not allow it",
    413: "Body too large",
    415: "The body is not JSON (Content-Type)",
    502: "The issuing processor failed",
    503: "Unavailable now; retry",
}

# What every request may meet, whatever its route: the body and query checks, the size limit and
# the JWE headers (honoured on every route: antaca_api/routing.py, dispatch).
REQUEST_ERRORS: tuple[type[Exception], ...] = (
    ValidationFailed, PayloadTooLarge, InvalidPublicKey, InvalidPayload, CantDecryptPayload)
JSON_BODY_ERRORS: tuple[type[Exception], ...] = (MalformedJson,)
# Any body sent to a route that reads JSON must say so (routing.check_media_type).
MEDIA_TYPE_ERRORS: tuple[type[Exception], ...] = (UnsupportedMediaType,)
# Idempotency-Key: the key reused for another request, or the same request still running.
IDEMPOTENCY_ERRORS: tuple[type[Exception], ...] = (IdempotencyKeyReused, IdempotencyKeyInProgress)
# Each channel's authentication (antaca_api/channels.py).
CHANNEL_ERRORS: dict[Channel, tuple[type[Exception], ...]] = {
    Channel.PUBLIC: (),
    Channel.CUSTOMER: (Unauthenticated, SessionExpired, PartnerSuspended),
    # A reset password must be changed first; a partner's staff member is refused the platform's
    # own routes (antaca_api/staff_scope.py), and the route's roles may exclude the caller's.
    Channel.ADMIN: (Unauthenticated, SessionExpired, PasswordChangeRequired, Forbidden),
    Channel.PARTNER: (CertificateRequired, PartnerSuspended),
    Channel.NETWORK: (CertificateRequired, NetworkSuspended),
}
# What a handler that declares no `errors` may raise: an id it cannot see, and (when it changes
# something) a state that does not allow it.
USUAL_READ_ERRORS: tuple[type[Exception], ...] = (NotFound,)
USUAL_WRITE_ERRORS: tuple[type[Exception], ...] = (NotFound, Conflict)

# The rate limited routes (antaca_api/rate_limits.py): too many requests, or a locked account.
RATE_LIMIT_ERRORS: tuple[type[Exception], ...] = (RateLimited, AccountLocked)

# Sent with SERVICE_BUSY (antaca_api/background_cpu.py) and the rate limits: when to try again.
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying (SERVICE_BUSY, "
                                              "RATE_LIMITED, ACCOUNT_LOCKED)",
                               "required": False, "schema": {"type": "integer", "minimum": 0}}}

# A flag is on when its value is "true" in any case; any other value leaves it off (routing.py).
JWE_HEADERS = [
    {"name": "Public-Key", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "Base64 of the client's RSA public key PEM; required with either JWE header."},
    {"name": "Encrypted-Request", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "true: the body is {\"payload\": \"<compact JWE>\"} and the response is "
                    "encrypted (any other value: off)."},
    {"name": "Encrypt-Response", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "true: plain request, encrypted 2xx response (any other value: off)."},
]

# A cursor is opaque: the previous page's nextCursor, passed back unchanged (antaca_api/pages.py).
CURSOR_PARAMETER = {"name": "cursor", "in": "query", "required": False,
                    "description": "The previous page's nextCursor: pass it back unchanged.",
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$",
                               "maxLength": pages.cursor_length_max}}


STEP_UP_PARAMETER = {"name": step_up.STEP_UP_HEADER, "in": "header", "required": True,
                     "schema": {"type": "string"},
                     "description": "A fresh proof from POST /customers/me/step-up."}


def page_parameters(page_size_max: int) -> list[dict]:
    """`limit` (bounded as the service enforces it: Context.page_size) and `cursor`."""
    limit = {"type": "integer", "minimum": 1, "maximum": page_size_max,
             "default": min(PAGE_SIZE_DEFAULT, page_size_max)}
    return [{"name": "limit", "in": "query", "required": False, "schema": limit}, CURSOR_PARAMETER]


_PARAM = re.compile(r"{([A-Za-z_]+)}")


def _operation_id(route: Route) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", route.path.replace("{", "by_").replace("}", "")).strip("_")
    return f"{route.method.lower()}_{slug}"


def _parameters(route: Route) -> list[dict]:
    params = []
    for name in _PARAM.findall(route.path):
        schema = {"type": "string", "format": "uuid"} if name.endswith("Id") else {"type": "string"}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    if route.step_up and route.channel is Channel.CUSTOMER:
        params.append(STEP_UP_PARAMETER)
    # A response type may name its route's query parameters (an opaque cursor, filters).
    params += getattr(route.response, "query_parameters", [])
    params += list(route.query)
    if route.page_size_max is not None:
        params += page_parameters(route.page_size_max)
    if route.channel is not Channel.PUBLIC:
        params += JWE_HEADERS
    unique = {(p["in"], p["name"]): p for p in reversed(params)}  # the first declaration wins
    return [p for p in params if unique[(p["in"], p["name"])] is p]


def route_errors(route: Route) -> list[type[Exception]]:
    """Every failure the route can answer, derived from its declaration: the request's shape, the
    channel's authentication and roles, ids in the path, JWE, the handler's own errors."""
    found: list[type[Exception]] = list(REQUEST_ERRORS)
    if route.body is not None:
        found += JSON_BODY_ERRORS
    if not route.multipart:
        found += MEDIA_TYPE_ERRORS
    if route.authenticated:
        found += CHANNEL_ERRORS[route.channel]
    if _PARAM.search(route.path):
        found.append(NotFound)
    if route.page_size_max is not None:  # a cursor it did not give (antaca_api/pages.py)
        found.append(InvalidCursor)
    if route.encryption is not Encryption.OPTIONAL:
        found.append(EncryptionRequired)
    if route.step_up and route.channel is Channel.CUSTOMER:
        found.append(StepUpRequired)
    if route.idempotent:
        found += IDEMPOTENCY_ERRORS
    if rate_limits.policy_of(route.method, route.path) is not None:
        found += RATE_LIMIT_ERRORS
    if route.channel is not Channel.NETWORK:  # JWE's RSA work and password hashing wait in a queue
        found.append(ServiceBusy)
    if route.errors is not None:
        found += route.errors
    else:
        found += USUAL_READ_ERRORS if route.method == "GET" else USUAL_WRITE_ERRORS
    return list(dict.fromkeys(found))


def _codes(error_classes: Sequence[type[Exception]]) -> str:
    codes = [e.code for e in error_classes]
    if Conflict in error_classes:
        codes.append("or another 409 code of the error table (docs/api.md)")
    return ", ".join(codes)


def _responses(route: Route, ref: dict[Any, dict]) -> dict[str, Any]:
    """The success and every error status the route can answer, each error as ErrorBody."""
    responses: dict[str, Any] = {}
    if route.response is None:
        no_content = str(route.status if route.status != 200 else 204)
        responses[no_content] = {"description": "Done, no content"}
    else:
        responses[str(route.status)] = {"description": "Success", "content": {
            route.media_type: {"schema": success_schema(route, ref)}}}
    by_status: dict[int, list[type[Exception]]] = {}
    for error_class in route_errors(route):
        by_status.setdefault(status_of_class(error_class), []).append(error_class)
    error = {"application/json": {"schema": ref[ErrorBody]}}
    for status in sorted(by_status):
        meaning = STATUS_MEANINGS.get(status) or HTTPStatus(status).phrase
        answer = {"description": f"{meaning}: {_codes(by_status[status])}",
                  "content": error}
        if ServiceBusy in by_status[status] or RateLimited in by_status[status]:
            answer["headers"] = RETRY_AFTER
        responses[str(status)] = answer
    return responses


def success_schema(route: Route, ref: dict[Any, dict]) -> dict[str, Any]:
    """A success body's schema. A Struct the dispatch encodes is encrypted to the caller's key when
    asked (Encrypt-Response or Encrypted-Request, on any route), always where JWE is required: then
    the body is a JWE envelope, whose plaintext `x-antaca-plaintext` names."""
    schema = ref[route.response]
    if not (isinstance(route.response, type) and issubclass(route.response, msgspec.Struct)):
        return schema  # a document the handler answers itself (e.g. /openapi.json), never encrypted
    envelope = {"$ref": ref[Envelope]["$ref"], "x-antaca-plaintext": schema}
    if route.encryption is not Encryption.OPTIONAL:
        return envelope
    return {"anyOf": [schema, envelope]}


def _schemas(routes: Sequence[Route]) -> tuple[dict[Any, dict], dict[str, Any]]:
    """Each body and response type's schema: a $ref for a Struct, inline for anything else."""
    structs = sorted({t for r in routes for t in (r.body, r.response)
                      if isinstance(t, type) and issubclass(t, msgspec.Struct)}
                     | {ErrorBody, Envelope},
                     key=lambda t: t.__name__)
    schemas, components = msgspec.json.schema_components(
        structs, ref_template="#/components/schemas/{name}")
    ref: dict[Any, dict] = dict(zip(structs, schemas, strict=True))
    for r in routes:
        for t in (r.body, r.response):
            if t is not None and t not in ref:
                ref[t] = msgspec.json.schema(t)
    return ref, components


def _operation(r: Route, ref: dict[Any, dict]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": _operation_id(r),
        "summary": r.summary,
        "tags": list(r.tags) or [str(r.channel)],
        "parameters": _parameters(r),
        "responses": _responses(r, ref),
        "security": SECURITY[r.channel] if r.authenticated else [],
        "x-antaca-channel": str(r.channel),
        "x-antaca-jwe": str(r.encryption),
    }
    notes = [f"Channel: {r.channel}."]
    if r.channel is Channel.ADMIN and r.authenticated:
        operation["x-antaca-roles"] = sorted(str(role) for role in r.roles)
        if r.roles != ALL_ROLES:
            notes.append(f"Roles: {', '.join(sorted(str(role) for role in r.roles))}.")
    if r.sandbox:
        operation["x-antaca-sandbox"] = True
        notes.append("Sandbox only: served with ANTACA_SANDBOX=1, absent (404) otherwise.")
    if r.encryption is Encryption.REQUIRED:
        notes.append("JWE required: send Encrypted-Request or Encrypt-Response with Public-Key.")
    if r.step_up and r.channel is Channel.CUSTOMER:
        notes.append("Step-up required: send a fresh proof of POST /customers/me/step-up "
                     "as the Step-Up-Token header.")
    if r.encryption is Encryption.REQUEST:
        notes.append("JWE request required: the body is sensitive; send it encrypted with "
                     "Encrypted-Request and Public-Key.")
    operation["description"] = " ".join(notes)
    if r.body is not None:
        operation["requestBody"] = {"required": not body_optional(r.body),
                                    "content": {"application/json": {"schema": ref[r.body]}}}
    elif r.multipart:
        form = {"type": "object", "required": ["kind", "file"],
                "properties": {"kind": {"type": "string"},
                               "file": {"type": "string", "format": "binary"}}}
        operation["requestBody"] = {"required": True,
                                    "content": {"multipart/form-data": {"schema": form}}}
    return operation


def openapi_document(routes: Sequence[Route]) -> dict[str, Any]:
    """The whole document for these routes."""
    ref, components = _schemas(routes)
    paths: dict[str, dict] = {}
    for r in routes:
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(r, ref)
    document = {
        "openapi": "3.1.0",
        "info": {"title": "Antaca card management system", "version": "0.1.0",
                 "description": "Channels: /customers (app sessions), /secure and /lifecycle "
                                "(partners, mutual TLS), /admin (administrators), /network (card "
                                "networks, mutual TLS). Amounts are integer minor units with an "
                                "ISO 4217 currency. Every error is {code, message}; the codes and "
                                "their statuses are in docs/api.md."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
    }
    return reference.enrich(document, routes)


@functools.cache
def cached_document() -> bytes:
    """The document for every declared route, encoded once per process."""
    from antaca_api.routes import load_all
    from antaca_api.routing import ROUTES

    load_all()
    return msgspec.json.encode(openapi_document(ROUTES))
