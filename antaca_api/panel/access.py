"""Who may see or do what in the panel: each page follows the rules of one admin API route (its
roles, and a partner's staff kept to its partner by staff_scope), and an action changes nothing
for an Employee (Employee reads, Manager acts, Admin configures).

Also the session check each request goes through, and the audit record of an action.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache

import asyncpg
from aiohttp import web

from antaca_api import admins, staff_scope
from antaca_api.admins import Role
from antaca_api.domain_errors import Forbidden, NotFound
from antaca_api.panel import security
from antaca_api.routes import load_all
from antaca_api.routing import ADMIN_MANAGER, ROUTES, Route
from antaca_api.services import Services

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class PanelUser:
    admin_id: uuid.UUID
    email: str
    role: Role
    partner_id: uuid.UUID | None  # a partner's staff member; None: the platform's staff
    csrf: str  # the session's CSRF token, put in every form

    @property
    def platform_staff(self) -> bool:
        return self.partner_id is None


@dataclass(frozen=True)
class Rule:
    """A page's rules: those of the admin API route `method path`; `acts`: it changes something."""

    method: str
    path: str
    acts: bool = False


@cache
def api_route(method: str, path: str) -> Route:
    load_all()
    for r in ROUTES:
        if r.method == method and r.path == path:
            return r
    raise LookupError(f"no admin API route {method} {path}")


def allowed_roles(rule: Rule) -> frozenset[Role]:
    """The API route's roles; an action is never an Employee's, whatever the API says."""
    roles = api_route(rule.method, rule.path).roles
    return roles & ADMIN_MANAGER if rule.acts else roles


def may(user: PanelUser, method: str, path: str, *, acts: bool = False) -> bool:
    """Whether a page may show a link or form for the route (the server checks again)."""
    rule = Rule(method, path, acts)
    if user.role not in allowed_roles(rule):
        return False
    return user.platform_staff or staff_scope.scoped_parameters(method, path) is not None


def page(method: str, path: str, *, acts: bool = False) -> Callable[[Handler], Handler]:
    """Declare the admin API route whose rules a panel handler follows."""
    api_route(method, path)  # fails at import for a route that does not exist

    def mark(handler: Handler) -> Handler:
        handler.panel_rule = Rule(method, path, acts)
        return handler

    return mark


def path_id(request: web.Request) -> Callable[[str], uuid.UUID]:
    def of(name: str) -> uuid.UUID:
        try:
            return uuid.UUID(request.match_info[name])
        except (KeyError, ValueError):
            raise NotFound() from None
    return of


async def check(pool: asyncpg.Pool, user: PanelUser, rule: Rule, request: web.Request) -> None:
    """Refuse (Forbidden, or NotFound for another partner's object) what the rule does not allow."""
    if user.role not in allowed_roles(rule):
        raise Forbidden("your role does not allow this")
    if user.partner_id is not None:
        await staff_scope.check_ids(pool, user.partner_id, rule.method, rule.path,
                                    path_id(request))


async def signed_in(services: Services, token: str | None) -> tuple[PanelUser | None, bool]:
    """The user behind a session cookie, used within the idle timeout, and whether they must
    change their password first; (None, False) for no live session."""
    if not token:
        return None, False
    row = await admins.touch_session(services.pool, token, services.clock(),
                                     security.idle_timeout_seconds)
    if row is None:
        return None, False
    user = PanelUser(row["id"], row["email"], Role(row["role"]), row["partner_id"],
                     security.csrf_token(token))
    return user, row["password_change_required"]


async def audit(conn: asyncpg.Connection, user: PanelUser, rule: Rule, target: str) -> None:
    """The action's line in the admin audit log, in its transaction: the API route it stands for,
    marked as done through the panel."""
    await admins.record_audit_entry(conn, user.admin_id, f"PANEL {rule.method} {rule.path}",
                                    target)
