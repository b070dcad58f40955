"""Partner-scoped staff: a staff member of partner A reaches none of partner B's objects.

Generated from the route table like tests/integration/test_tenancy.py (whose world it reuses:
partner A with customers A1 and A2, partner B with customer B1, each with balances, cards, a
corporation and its document). For EVERY admin route, a staff member of partner A in each role:

- a role the route does not allow                          -> 403 (before any id is looked at)
- the platform's own routes (staff_scope.PLATFORM_*)        -> 403
- partner B's objects in the path                           -> 404, exactly as for unknown ids
- partner A in the path over partner B's child object       -> 404
- partner A's own objects                                   -> neither 401, 403 nor 404

and no refused call changes a row. Lists open to staff return partner A's objects only.
"""

from __future__ import annotations

import uuid

import pytest
import pytest_asyncio

from antaca_api.admins import create_admin_user
from antaca_api.routing import ROUTES, Channel, Role, Route
from antaca_api.staff_scope import (
    OPEN_TO_STAFF,
    OWNERS,
    PARAMETER,
    PLATFORM_PARAMETERS,
    PLATFORM_WIDE,
    SCOPED_LISTS,
    scoped_parameters,
)
from tests.api_harness import ADMIN_PASSWORD, bearer, running_api
from tests.conftest import fresh_database
from tests.integration.test_tenancy import (
    Caller,
    World,
    call,
    names_a_foreign_child,
    random_record,
    route_id,
)

ADMIN_ROUTES = [r for r in ROUTES if r.channel is Channel.ADMIN and r.authenticated]


def test_every_admin_route_is_classified_for_staff():
    """Each admin route is scoped by its ids, a list filtered by the scope, or the platform's: a
    new route with an unknown parameter or an unlisted id-less route fails here, by name."""
    problems = []
    for route in ADMIN_ROUTES:
        names = PARAMETER.findall(route.path)
        key = route_id(route)
        if not names and key not in OPEN_TO_STAFF | PLATFORM_WIDE:
            problems.append(f"{key}: neither open to staff nor platform-wide")
        unknown = set(names) - set(OWNERS) - PLATFORM_PARAMETERS - {"serial", "documentId"}
        if unknown:
            problems.append(f"{key}: no owner known for {sorted(unknown)}")
    assert problems == [], "\n".join(problems)
    assert SCOPED_LISTS <= {route_id(r) for r in ADMIN_ROUTES}


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


@pytest.fixture(scope="module")
def module_database_url(pg_server, template_db):
    with fresh_database(pg_server, template_db) as url:
        yield url


async def staff_token(api, partner_id: str, role: Role) -> str:
    email = f"staff-{role.lower()}-{uuid.uuid4().hex[:8]}@partner.test"
    async with api.services.pool.acquire() as conn:
        await create_admin_user(conn, email, ADMIN_PASSWORD, role, partner_id=uuid.UUID(partner_id))
    async with api.client().post(f"{api.http}/admin/sessions",
                                 json={"email": email, "password": ADMIN_PASSWORD}) as r:
        assert r.status == 201, await r.text()
        return (await r.json())["token"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(module_database_url, key_material, jwe_key):
    from antaca_auth.database import create_pool

    pool = await create_pool(module_database_url, min_size=1, max_size=10)
    try:
        async with running_api(pool, key_material, module_database_url) as api:
            world = await World().build(api, jwe_key)
            partner_a = world.a["record"]["partnerId"]
            world.staff = {role: await staff_token(api, partner_a, role) for role in Role}
            yield world
    finally:
        await pool.close()


def staff(world: World, role: Role) -> Caller:
    return Caller(f"partner A's {role}", world.api.client(), world.api.http,
                  bearer(world.staff[role]))


def refusals(world: World, route: Route) -> list[tuple[Caller, dict, int, dict | None]]:
    a1, b1 = world.a1["record"], world.b1["record"]
    cases: list[tuple[Caller, dict, int, dict | None]] = []
    for role in Role:
        caller = staff(world, role)
        if role not in route.roles or scoped_parameters(route.method, route.path) is None:
            cases.append((caller, a1, 403, None))
            continue
        if not PARAMETER.findall(route.path):
            continue  # a list: checked by test_lists_show_only_the_partners_objects
        cases.append((caller, b1, 404, random_record()))
        mixed = {**b1, "partnerId": a1["partnerId"], "customerId": a1["customerId"],
                 "dcCorporationId": a1["dcCorporationId"]}
        if names_a_foreign_child(route, a1, mixed, b1):
            cases.append((caller, mixed, 404, None))
    return cases


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=route_id)
async def test_staff_reach_only_their_partners_objects(world, route):
    before = await world.snapshot()
    wrong = []
    for caller, rec, expected, unknown in refusals(world, route):
        status, body = await call(world, caller, route, rec)
        typed = isinstance(body, dict) and set(body) == {"code", "message"}
        if status != expected or not typed:
            wrong.append(f"{caller.name}: expected {expected}, got {status} {body}")
            continue
        if unknown is not None:
            answer = await call(world, caller, route, unknown)
            if answer != (status, body):
                wrong.append(f"{caller.name}: {status} {body} for partner B's object, "
                             f"{answer[0]} {answer[1]} for an unknown one")
    after = await world.snapshot()
    changed = sorted(t for t in before if before[t] != after[t])
    if changed:
        wrong.append(f"refused calls changed rows in {changed}")
    assert not wrong, "\n".join(wrong)

    if not scoped_parameters(route.method, route.path) or Role.ADMIN not in route.roles:
        return  # refused to staff, or a list (test_lists_show_only_the_partners_objects)
    # The partner's own staff reach its own objects.
    status, body = await call(world, staff(world, Role.ADMIN), route, world.a1["record"])
    assert status < 500 and status not in (401, 403, 404), (status, body)


LIST_IDS = {
    "GET /admin/customers": ("customerId", "customerId"),
    "GET /admin/partners": ("id", "partnerId"),
    "GET /admin/programs": ("programId", "programId"),
    "GET /admin/corporations": ("dcCorporationId", "dcCorporationId"),
}


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("path", sorted(SCOPED_LISTS))
async def test_lists_show_only_the_partners_objects(world, path):
    field, key = LIST_IDS[path]
    method, url = path.split(" ")
    seen = {}
    for name, headers in (("staff", bearer(world.staff[Role.EMPLOYEE])),
                          ("platform", bearer(world.admin))):
        async with world.api.client().get(f"{world.api.http}{url}?limit=200",
                                          headers=headers) as r:
            assert r.status == 200, await r.text()
            seen[name] = {item[field] for item in (await r.json())["items"]}
    a, b = world.a1["record"][key], world.b1["record"][key]
    assert a in seen["staff"] and b not in seen["staff"]
    assert {a, b} <= seen["platform"]
    # Asking for the other partner explicitly finds nothing either.
    if path == "GET /admin/customers":
        async with world.api.client().get(
                f"{world.api.http}{url}?partnerId={world.b1['record']['partnerId']}",
                headers=bearer(world.staff[Role.EMPLOYEE])) as r:
            assert (await r.json())["items"] == []
