"""Partner-scoped staff: an administrator who belongs to one partner reaches only its objects.

The one place the scope is enforced. An administrator user may belong to a partner
(`admin_users.partner_id`); their principal carries it (`AdminPrincipal.partner_id`), and before
any handler runs, `check` resolves every id in the route's path to the partner that owns it:
another partner's object answers 404 exactly like an unknown id. Lists that span partners filter
by the principal's scope in their domain queries (`SCOPED_LISTS`). What is the platform's own
business (networks, rates, partners' onboarding and certificates, the BIN sponsor's reloads,
KYB decisions, administrators, the audit log) is refused with 403 — and so is, failing closed,
any admin route this module does not know how to scope.

Roles keep their meaning inside the scope: the route's roles are checked first (routing.py).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

import asyncpg

from antaca_api.balances import partner_of_balance
from antaca_api.cards import partner_of_card
from antaca_api.corporations import partner_of_corporation
from antaca_api.customers import partner_of_customer_or_none
from antaca_api.domain_errors import Forbidden, NotFound
from antaca_api.programs import partner_of_program
from antaca_api.routing import Context

PARAMETER = re.compile(r"\{(\w+)\}")

Owner = Callable[[asyncpg.Connection, uuid.UUID], Awaitable[uuid.UUID | None]]


async def _itself(conn: asyncpg.Connection, partner_id: uuid.UUID) -> uuid.UUID:
    return partner_id


# Each path parameter naming a partner's object, and how to find the partner that owns it.
OWNERS: dict[str, Owner] = {
    "partnerId": _itself,
    "customerId": partner_of_customer_or_none,
    "cardId": partner_of_card,
    "balanceId": partner_of_balance,
    "dcCorporationId": partner_of_corporation,
    "programId": partner_of_program,
}
# Parameters that name a child of the parent before them in the path; the handler looks the
# child up under its parent (e.g. a partner balance under its partner, a document under its
# corporation), so the parent's owner is the child's.
CHILDREN = {
    "partnerId": frozenset({"balanceId", "serial"}),
    "customerId": frozenset({"balanceId", "cardId"}),
    "dcCorporationId": frozenset({"documentId", "balanceId", "cardId"}),
}

# Routes without an id that a partner's staff may call: lists whose domain queries filter by the
# principal's scope, shared reference data, and their own session and password.
SCOPED_LISTS = frozenset({
    "GET /admin/customers", "GET /admin/partners", "GET /admin/programs",
    "GET /admin/corporations",
})
OPEN_TO_STAFF = SCOPED_LISTS | {
    "GET /admin/fx-rates", "DELETE /admin/sessions/current", "PUT /admin/users/me/password",
}
# Routes without an id that are the platform's business (listed so that a new route is classified
# on purpose: tests/integration/test_staff_scope.py fails for one that is in neither set).
PLATFORM_WIDE = frozenset({
    "GET /admin/users", "POST /admin/users", "GET /admin/audit-log", "POST /admin/partners",
    "POST /admin/programs", "POST /admin/networks", "POST /admin/fx-rates", "POST /admin/fees/run",
    "GET /admin/summaries",
    # Spending controls: partners set their own on the partner channel (/secure/controls); the
    # admin side's controls span programs and partners, so they stay with the platform's staff.
    "GET /admin/controls", "POST /admin/controls",
})
# Parameters naming the platform's own objects: a route with one is the platform's business.
PLATFORM_PARAMETERS = frozenset({"networkId", "adminId", "controlId"})
# Routes with a partner's id that are still the platform's business.
PLATFORM_ONLY = frozenset({
    "POST /admin/partners/{partnerId}/certificates",
    "POST /admin/partners/{partnerId}/certificates/{serial}/revoke",
    "PUT /admin/partners/{partnerId}/status",
    "PUT /admin/partners/{partnerId}/contact",
    "POST /admin/partners/{partnerId}/webhook-secret",
    "POST /admin/partners/{partnerId}/balances",
    "POST /admin/partners/{partnerId}/balances/{balanceId}/reload",
    "POST /admin/partners/{partnerId}/balances/{balanceId}/approve",
    "PUT /admin/programs/{programId}/authorization-rules",
    "PUT /admin/programs/{programId}/time-zone",
    "POST /admin/corporations/{dcCorporationId}/kyb",
})

PLATFORM_STAFF_ONLY = "only the platform's staff may do this"


def scoped_parameters(method: str, path: str) -> list[str] | None:
    """The path parameters to resolve to their owner for a partner's staff member, or None when
    the route is refused to them (the platform's business, or a route not known here)."""
    key = f"{method} {path}"
    if key in PLATFORM_ONLY:
        return None
    names = PARAMETER.findall(path)
    if not names:
        return [] if key in OPEN_TO_STAFF else None
    checked: list[str] = []
    for index, name in enumerate(names):
        parents = names[:index]
        if any(name in CHILDREN.get(parent, ()) for parent in parents):
            continue
        if name not in OWNERS:  # the platform's objects, or (failing closed) unknown ones
            return None
        checked.append(name)
    return checked


async def check(ctx: Context) -> None:
    """Refuse a partner's staff member anything outside their partner: 404 for another partner's
    object (as for an unknown id), 403 for the platform's own routes."""
    await check_ids(ctx.pool, ctx.admin.partner_id, ctx.route.method, ctx.route.path,
                    ctx.path_id)


async def check_ids(pool: asyncpg.Pool, scope: uuid.UUID, method: str, path: str,
                    path_id: Callable[[str], uuid.UUID]) -> None:
    """`check` for the admin route `method path` with its ids given by `path_id`: the
    administration panel (antaca_api/panel) applies the API's scope through it."""
    names = scoped_parameters(method, path)
    if names is None:
        raise Forbidden(PLATFORM_STAFF_ONLY)
    if not names:
        return
    async with pool.acquire() as conn:
        for name in names:
            if await OWNERS[name](conn, path_id(name)) != scope:
                raise NotFound()
