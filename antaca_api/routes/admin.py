"""The administration channel: sessions, administrators, the audit log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from msgspec import Meta

from antaca_api import pages
from antaca_api.admins import (
    AUDIT_PAGES,
    MIN_PASSWORD,
    add_admin_user,
    admin_users,
    audit_entries,
    change_admin_user,
    change_own_password,
    hash_admin_password,
    open_session,
    reset_password,
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
    # True after a password reset: only PUT /admin/users/me/password (and sign-out) is allowed.
    password_change_required: bool = False


@route("POST", "/admin/sessions", channel=Channel.ADMIN, authenticated=False, body=Login, response=AdminSession,
       status=201, summary="Log in as an administrator", tags=("admin",),
       errors=(InvalidCredentials,))
async def login(ctx: Context, body: Login) -> AdminSession:
    services = ctx.services
    token, expires_at, role, change_required = await open_session(
        ctx.pool, body.email, body.password, services.clock(), services.settings.admin_session_ttl,
        background_cpu=services.background_cpu)
    return AdminSession(token=token, expires_at=expires_at, role=role,
                        password_change_required=change_required)


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
    partner_id: uuid.UUID | None = None  # a partner's staff: sees and changes only its objects


class AdminUser(Body):
    id: uuid.UUID
    email: str
    role: Role
    active: bool
    created_at: datetime
    partner_id: uuid.UUID | None = None
    password_change_required: bool = False


@route("POST", "/admin/users", channel=Channel.ADMIN, roles=ADMIN_ONLY, body=NewAdmin, response=AdminUser,
       status=201, summary="Create an administrator", tags=("admin",))
async def create_user(ctx: Context, body: NewAdmin) -> AdminUser:
    # Hashed before the transaction: no connection is held while Argon2id waits for a thread and runs.
    password_hash = await hash_admin_password(body.password, ctx.services.background_cpu)
    async with ctx.transaction() as conn:
        row = await add_admin_user(conn, body.email, password_hash, body.role, body.partner_id)
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
    page = ctx.page(AUDIT_PAGES)
    rows, cursor = pages.cut(await audit_entries(ctx.pool, page), page, pages.id_position)
    return AuditLog(items=[AuditEntry(**dict(r)) for r in rows], next_cursor=cursor)


class AdminChange(Body):
    active: bool | None = None  # False: deactivated, their sessions end at once
    role: Role | None = None


@route("PATCH", "/admin/users/{adminId}", channel=Channel.ADMIN, roles=ADMIN_ONLY, body=AdminChange,
       response=AdminUser,
       summary="Deactivate or reactivate an administrator, or change their role",
       tags=("admin",))
async def change_user(ctx: Context, body: AdminChange) -> AdminUser:
    admin_id = ctx.path_id("adminId")
    ctx.audit_target = f"admin:{admin_id}"
    async with ctx.transaction() as conn:
        row = await change_admin_user(conn, ctx.admin.admin_id, admin_id, active=body.active,
                                      role=body.role)
    return AdminUser(**dict(row))


class PasswordReset(Body):
    temporary_password: Annotated[str, Meta(min_length=MIN_PASSWORD, max_length=256)]


@route("POST", "/admin/users/{adminId}/password-reset", channel=Channel.ADMIN, roles=ADMIN_ONLY,
       body=PasswordReset, response=AdminUser,
       summary="Give an administrator a temporary password, to be changed at their next sign-in",
       tags=("admin",))
async def reset_user_password(ctx: Context, body: PasswordReset) -> AdminUser:
    admin_id = ctx.path_id("adminId")
    ctx.audit_target = f"admin:{admin_id}"
    temporary_hash = await hash_admin_password(body.temporary_password,
                                               ctx.services.background_cpu)
    async with ctx.transaction() as conn:
        row = await reset_password(conn, admin_id, temporary_hash)
    return AdminUser(**dict(row))


class PasswordChange(Body):
    current_password: Annotated[str, Meta(min_length=1, max_length=256)]
    new_password: Annotated[str, Meta(min_length=MIN_PASSWORD, max_length=256)]


@route("PUT", "/admin/users/me/password", channel=Channel.ADMIN, body=PasswordChange,
       response=AdminUser, summary="Change one's own password (required after a reset)",
       tags=("admin",))
async def change_my_password(ctx: Context, body: PasswordChange) -> AdminUser:
    ctx.audit_target = f"admin:{ctx.admin.admin_id}"
    row = await change_own_password(ctx.pool, ctx.admin.admin_id, body.current_password,
                                    body.new_password, background_cpu=ctx.services.background_cpu)
    return AdminUser(**dict(row))
