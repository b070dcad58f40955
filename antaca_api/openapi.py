"""The OpenAPI 3.1 document, generated from the declared routes and their msgspec Structs."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import msgspec

from antaca_api import pages, rate_limits, reference
from antaca_api.errors import (
    ErrorBody,  # the shape error_middleware sends, not a copy of it
)
from antaca_api.routing import ALL_ROLES, Channel, Encryption, Route, body_optional
from antaca_api.schema import Page

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

ERROR_STATUSES = {
    "400": "Malformed or invalid request (VALIDATION_ERROR, MALFORMED_JSON, JWE errors, ...)",
    "401": "Not authenticated for this channel",
    "403": "Role or partner status does not allow it",
    "404": "Unknown id, or one that belongs to another tenant",
    "409": "The current state does not allow it",
    "413": "Body too large",
}

# Where JWE or password hashing may run: too much of such work already waiting (with Retry-After).
BUSY = "SERVICE_BUSY: too much CPU-heavy work (JWE, password checks) waits; retry after Retry-After"

RATE_LIMITED = ("RATE_LIMITED or ACCOUNT_LOCKED (too many failures): retry after Retry-After "
                "seconds")

JWE_HEADERS = [
    {"name": "Public-Key", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "Base64 of the client's RSA public key PEM; required with either JWE header."},
    {"name": "Encrypted-Request", "in": "header", "required": False, "schema": {"type": "string", "enum": ["true", "false"]},
     "description": "The body is `{\"payload\": \"<compact JWE>\"}` and the response is encrypted."},
    {"name": "Encrypt-Response", "in": "header", "required": False, "schema": {"type": "string", "enum": ["true", "false"]},
     "description": "Plain request, encrypted 2xx response."},
]

# The bounds every paginated handler accepts (antaca_api/pages.py; some older lists take a larger
# limit), so documented values always work.
PAGE_PARAMETERS = [
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": pages.page_size_max,
                "default": pages.page_size_default}},
    {"name": "cursor", "in": "query", "required": False,
     "description": "The previous page's nextCursor, opaque: pass it back unchanged.",
     "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$",
                "maxLength": pages.cursor_length_max}},
]

_PARAM = re.compile(r"{([A-Za-z_]+)}")


def _operation_id(route: Route) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", route.path.replace("{", "by_").replace("}", "")).strip("_")
    return f"{route.method.lower()}_{slug}"


def _parameters(route: Route) -> list[dict]:
    params = []
    for name in _PARAM.findall(route.path):
        schema = {"type": "string", "format": "uuid"} if name.endswith("Id") else {"type": "string"}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    if route.method == "GET" and isinstance(route.response, type) and issubclass(route.response, Page):
        params += PAGE_PARAMETERS
    # A response type may name its route's query parameters (an opaque cursor, filters).
    params += getattr(route.response, "query_parameters", [])
    if route.channel is not Channel.PUBLIC:
        params += JWE_HEADERS
    return params


def openapi_document(routes: Sequence[Route]) -> dict[str, Any]:
    """The whole document for these routes."""
    types = sorted({t for r in routes for t in (r.body, r.response) if t is not None} | {ErrorBody},
                   key=lambda t: t.__name__)
    schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    ref = dict(zip(types, schemas, strict=True))
    error = {"application/json": {"schema": ref[ErrorBody]}}
    paths: dict[str, dict] = {}
    for r in routes:
        responses: dict[str, Any] = {}
        if r.response is None:
            responses[str(r.status if r.status != 200 else 204)] = {"description": "Done, no content"}
        else:
            responses[str(r.status)] = {"description": "Success", "content": {"application/json": {"schema": ref[r.response]}}}
        for status, description in ERROR_STATUSES.items():
            if status in ("401", "403") and (r.channel is Channel.PUBLIC or not r.authenticated):
                continue
            responses[status] = {"description": description, "content": error}
        if rate_limits.policy_of(r.method, r.path) is not None:  # antaca_api/rate_limits.py
            responses["429"] = {"description": RATE_LIMITED, "content": error}
        if r.channel not in (Channel.PUBLIC, Channel.NETWORK):  # antaca_api/background_cpu.py
            responses["503"] = {"description": BUSY, "content": error}
        operation: dict[str, Any] = {
            "operationId": _operation_id(r),
            "summary": r.summary,
            "tags": list(r.tags) or [str(r.channel)],
            "parameters": _parameters(r),
            "responses": responses,
            "security": SECURITY[r.channel] if r.authenticated else [],
            "x-antaca-channel": str(r.channel),
            "x-antaca-jwe": str(r.encryption),
        }
        notes = [f"Channel: {r.channel}."]
        if r.channel is Channel.ADMIN and r.authenticated:
            operation["x-antaca-roles"] = sorted(str(role) for role in r.roles)
            if r.roles != ALL_ROLES:
                notes.append(f"Roles: {', '.join(sorted(str(role) for role in r.roles))}.")
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
            operation["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["kind", "file"],
                "properties": {"kind": {"type": "string"}, "file": {"type": "string", "format": "binary"}}}}}}
        paths.setdefault(r.path, {})[r.method.lower()] = operation
    document = {
        "openapi": "3.1.0",
        "info": {"title": "Antaca card management system", "version": "0.1.0",
                 "description": "Channels: /customers (app sessions), /secure and /lifecycle (partners, mutual "
                                "TLS), /admin (administrators), /network (card networks, mutual TLS). "
                                "Amounts are integer minor units with an ISO 4217 currency."},
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
