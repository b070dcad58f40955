"""The administration channel: sessions, administrators, the audit log."""

from __future__ import annotations

import uuid
from datetime import datetime

from antaca_api.admins import (
    add_admin_user,
    admin_users,
    audit_entries,
    hash_admin_password,
    open_session,
    revoke_session,
)
from antaca_api.domain_errors import InvalidCredentials
from antaca_api.routing import ADMIN_ONLY, Channel, Context, Role, route
from antaca_api.schema import Body, Page
from antaca_api.tokens import bearer_token


class Login(Body):
    email: str
    password: str


class AdminSession(Body):
    token: str
    expires_at: datetime
    role: Role


@route("POST", "/admin/sessions", channel=Channel.ADMIN, authenticated=False, body=Login, response=AdminSession,
       status=201, summary="Log in as an administrator", tags=("admin",),
       errors=(InvalidCredentials,))
async def login(ctx: Context, body: Login) -> AdminSession:
    services = ctx.services
    token, expires_at, role = await open_session(
        ctx.pool, body.email, body.password, services.clock(), services.settings.admin_session_ttl,
        background_cpu=services.background_cpu)
    return AdminSession(token=token, expires_at=expires_at, role=role)


@route("DELETE", "/admin/sessions/current", channel=Channel.ADMIN, summary="Log out (revoke this session)",
       tags=("admin",))
async def logout(ctx: Context, _: None) -> None:
    token = bearer_token(ctx.request.headers.get("Authorization"))
    async with ctx.transaction() as conn:
        await revoke_session(conn, token)


class NewAdmin(Body):
    email: str
    password: str
    role: Role


class AdminUser(Body):
    id: uuid.UUID
    email: str
    role: Role
    active: bool
    created_at: datetime


@route("POST", "/admin/users", channel=Channel.ADMIN, roles=ADMIN_ONLY, body=NewAdmin, response=AdminUser,
       status=201, summary="Create an administrator", tags=("admin",))
async def create_user(ctx: Context, body: NewAdmin) -> AdminUser:
    # Hashed before the transaction: no connection is held while scrypt waits for a thread and runs.
    password_hash = await hash_admin_password(body.password, ctx.services.background_cpu)
    async with ctx.transaction() as conn:
        row = await add_admin_user(conn, body.email, password_hash, body.role)
        ctx.audit_target = f"admin:{row['id']}"
    return AdminUser(**dict(row))


class AdminUsers(Body):
    items: list[AdminUser]


@route("GET", "/admin/users", channel=Channel.ADMIN, roles=ADMIN_ONLY, response=AdminUsers,
       summary="List administrators", tags=("admin",))
async def list_users(ctx: Context, _: None) -> AdminUsers:
    rows = await admin_users(ctx.pool)
    return AdminUsers(items=[AdminUser(**dict(r)) for r in rows])


class AuditEntry(Body):
    id: int
    admin_id: uuid.UUID
    admin_email: str
    action: str
    target: str | None
    created_at: datetime


AUDIT_LOG_PAGE_SIZE_MAX = 500


class AuditLog(Page):
    items: list[AuditEntry]


@route("GET", "/admin/audit-log", channel=Channel.ADMIN, roles=ADMIN_ONLY, response=AuditLog,
       summary="The audit log of administrators' actions, newest first", tags=("admin",),
       page_size_max=AUDIT_LOG_PAGE_SIZE_MAX)
async def audit_log(ctx: Context, _: None) -> AuditLog:
    limit = ctx.page_size()
    before = ctx.query_int("cursor", 2**62, low=1, high=2**62)
    rows = await audit_entries(ctx.pool, before=before, limit=limit)
    items = [AuditEntry(**dict(r)) for r in rows]
    return AuditLog(items=items, next_cursor=str(items[-1].id) if len(items) == limit else None)
