"""Who is calling: each channel's authentication, run before any handler."""

from __future__ import annotations

import hashlib

from aiohttp import web

from antaca_api import staff_scope
from antaca_api.domain_errors import NetworkSuspended, PartnerSuspended, PasswordChangeRequired
from antaca_api.errors import CertificateRequired, SessionExpired, Unauthenticated
from antaca_api.routing import AdminPrincipal, Channel, Context, CustomerPrincipal, Role
from antaca_api.tokens import bearer_token, hash_secret

CUSTOMER_SESSION = """
    SELECT s.customer_id, c.partner_id, s.installation_id, s.expires_at, p.status AS partner_status
    FROM customer_sessions s
    JOIN installations i ON i.id = s.installation_id AND i.active
    JOIN customers c ON c.id = s.customer_id
    JOIN partners p ON p.id = c.partner_id
    WHERE s.token_hash = $1 AND s.revoked_at IS NULL"""

ADMIN_SESSION = """
    SELECT a.id, a.email, a.role, a.partner_id, a.password_change_required, s.expires_at
    FROM admin_sessions s JOIN admin_users a ON a.id = s.admin_id AND a.active
    WHERE s.token_hash = $1 AND s.revoked_at IS NULL"""

PARTNER_CERTIFICATE = """
    SELECT c.partner_id, c.revoked_at, c.not_after, p.status
    FROM partner_certificates c JOIN partners p ON p.id = c.partner_id
    WHERE c.fingerprint = $1"""


# What an administrator whose password was reset may still do: change it, or sign out.
PASSWORD_CHANGE_PATHS = frozenset({"/admin/users/me/password", "/admin/sessions/current"})

NETWORK_CERTIFICATE = """
    SELECT c.network_id, c.revoked_at, c.not_after, n.status, n.authorization_deadline_ms
    FROM network_certificates c JOIN networks n ON n.id = c.network_id
    WHERE c.fingerprint = $1"""


def peer_certificate_der(request: web.Request) -> bytes | None:
    """The client certificate the TLS handshake verified, DER-encoded, or None."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    return ssl_object.getpeercert(binary_form=True)


async def authenticate(ctx: Context) -> None:
    """Fill the context's principal for the route's channel, or refuse with 401/403."""
    channel = ctx.route.channel
    if channel is Channel.CUSTOMER:
        ctx.customer = await _customer(ctx)
        ctx.partner_id = ctx.customer.partner_id
    elif channel is Channel.PARTNER:
        ctx.partner_id = await _partner(ctx)
    elif channel is Channel.ADMIN:
        ctx.admin = await _admin(ctx)
        # A partner's staff member reaches only that partner's objects; a role the route does
        # not allow is refused (403) by the dispatch before any id is looked at.
        if ctx.admin.partner_id is not None and ctx.admin.role in ctx.route.roles:
            await staff_scope.check(ctx)
    elif channel is Channel.NETWORK:
        row = await _certified(ctx, NETWORK_CERTIFICATE, "a card network")
        ctx.network_id, ctx.network_deadline_ms = row["network_id"], row["authorization_deadline_ms"]


async def _session(ctx: Context, query: str, holder: str):
    """The live session row behind the bearer token, or the typed refusal."""
    token = bearer_token(ctx.request.headers.get("Authorization"))
    if token is None:
        raise Unauthenticated(f"{holder} session token is required (Authorization: Bearer ...)")
    row = await ctx.pool.fetchrow(query, hash_secret(token))
    if row is None:
        raise Unauthenticated("the session token is not valid")
    if row["expires_at"] <= ctx.services.clock():
        raise SessionExpired()
    return row


async def _customer(ctx: Context) -> CustomerPrincipal:
    row = await _session(ctx, CUSTOMER_SESSION, "a customer")
    if row["partner_status"] != "ACTIVE":
        raise PartnerSuspended()
    return CustomerPrincipal(row["customer_id"], row["partner_id"], row["installation_id"])


async def _admin(ctx: Context) -> AdminPrincipal:
    row = await _session(ctx, ADMIN_SESSION, "an administrator")
    if row["password_change_required"] and ctx.route.path not in PASSWORD_CHANGE_PATHS:
        raise PasswordChangeRequired()
    return AdminPrincipal(row["id"], row["email"], Role(row["role"]), row["partner_id"])


async def _partner(ctx: Context):
    return (await _certified(ctx, PARTNER_CERTIFICATE, "a partner"))["partner_id"]


async def _certified(ctx: Context, query: str, holder: str):
    """The row behind the verified client certificate, if it was issued to `holder` and is valid."""
    der = peer_certificate_der(ctx.request)
    if der is None:
        raise CertificateRequired()
    row = await ctx.services.credentials.lookup(ctx.pool, query, hashlib.sha256(der).hexdigest())
    if row is None:
        raise CertificateRequired(f"the client certificate was not issued to {holder}")
    if row["revoked_at"] is not None:
        raise CertificateRequired("the client certificate has been revoked")
    if row["not_after"] <= ctx.services.clock():
        raise CertificateRequired("the client certificate has expired")
    if row["status"] != "ACTIVE":
        if "network_id" in row.keys():
            raise NetworkSuspended()
        raise PartnerSuspended()
    return row
