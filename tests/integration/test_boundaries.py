"""Boundaries pinned to the exact value: a hold's expiry second, and each list's page size limit.

Each test fails if a comparison moves by one (< for <=, a maximum off by one), which the
tests of ordinary values cannot see.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from antaca_api.routes import load_all
from antaca_api.routing import ROUTES, Channel, Route
from antaca_api.schema import Page
from antaca_auth.accounts import Counters
from antaca_auth.ledger import Ledger
from antaca_auth.transfers import ResultCode, Transfer, TransferKind
from tests.api_harness import bearer
from tests.integration.test_cards import World, approved_corporation
from tests.integration.test_ledger import Clock, balance, make_accounts, single
from tests.integration.test_pagination import seeded_endpoint

TIMEOUT = 30  # seconds a hold lives
JUST_BEFORE = (timedelta(seconds=1), timedelta(microseconds=1))  # the clock's finest step too


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


# --- hold expiry -----------------------------------------------------------------------------


async def test_the_sweeper_expires_a_hold_at_its_exact_second_and_not_before(pool):
    """A hold made at T with a 30 s timeout is due at T+30 s exactly (expires_at <= now)."""
    clock = Clock()
    ledger = Ledger(pool, clock=clock)
    funding, alice, bob = await make_accounts(ledger)
    await ledger.create_transfers([single(funding, alice, 100)])
    made_at = clock.now
    hold = single(alice, bob, 60, kind=TransferKind.PENDING, timeout=TIMEOUT)
    await ledger.create_transfers([hold])
    for before in JUST_BEFORE:
        clock.now = made_at + timedelta(seconds=TIMEOUT) - before
        assert await ledger.expire_pending() == 0, f"expired {before} before its second"
        assert await balance(ledger, alice) == Counters(credits_posted=100, debits_pending=60)
    clock.now = made_at + timedelta(seconds=TIMEOUT)
    assert await ledger.expire_pending() == 1, "not expired at its exact second"
    assert await balance(ledger, alice) == Counters(credits_posted=100)


@pytest.mark.parametrize("kind", [TransferKind.POST_PENDING, TransferKind.VOID_PENDING])
async def test_a_hold_can_be_resolved_until_just_before_its_second_and_not_at_it(pool, kind):
    """Posting or voiding is refused from the second the hold expires (now >= expires_at)."""
    clock = Clock()
    ledger = Ledger(pool, clock=clock)
    funding, alice, bob = await make_accounts(ledger)
    await ledger.create_transfers([single(funding, alice, 100)])
    made_at = clock.now
    holds = [single(alice, bob, 10, kind=TransferKind.PENDING, timeout=TIMEOUT) for _ in range(3)]
    await ledger.create_transfers(holds)
    due = made_at + timedelta(seconds=TIMEOUT)
    moments = [due - before for before in JUST_BEFORE] + [due]
    codes = []
    for hold, moment in zip(holds, moments):
        clock.now = moment
        (result,) = await ledger.create_transfers(
            [Transfer(id=uuid.uuid4(), kind=kind, pending_id=hold.id, code=1)])
        codes.append(result.code)
    assert codes == [ResultCode.OK, ResultCode.OK, ResultCode.PENDING_EXPIRED]


# --- page limits -----------------------------------------------------------------------------

load_all()
PAGED = [r for r in ROUTES if r.method == "GET" and isinstance(r.response, type)
         and issubclass(r.response, Page)]

# The largest page each list serves, as the product documents it. A new paginated route fails
# test_every_paginated_route_has_a_known_maximum until it is added here.
PAGE_MAXIMUM = {
    "/admin/audit-log": 500,
    "/admin/partners/{partnerId}/alerts": 200,
    "/secure/customers/{customerId}/balances/{balanceId}/transactions": 500,
    "/customers/me/balances/{balanceId}/transactions": 500,
    "/secure/customers": 200,
    "/lifecycle/v1/corporations": 200,
    "/admin/corporations": 200,
    "/admin/customers": 200,
    "/admin/customers/{customerId}/balances/{balanceId}/transactions": 200,
    "/secure/partner/balances/{balanceId}/statement": 200,
    "/admin/partners/{partnerId}/balances/{balanceId}/statement": 200,
    # antaca_api/pages.py: page_size_max
    "/secure/cards": 200,
    "/secure/customers/{customerId}/cards": 200,
    "/admin/customers/{customerId}/cards": 200,
    "/customers/me/cards": 200,
    "/secure/balances": 200,
    "/secure/customers/{customerId}/balances": 200,
    "/customers/me/balances": 200,
    "/secure/partner/balances": 200,
    "/admin/partners/{partnerId}/balances": 200,
    "/secure/customers/{customerId}/transactions": 200,
    "/secure/transactions": 200,
    "/admin/customers/{customerId}/transactions": 200,
    "/admin/partners": 200,
    "/admin/programs": 200,
    # antaca_api/routes/corporations.py: the corporate lists
    "/lifecycle/v1/corporations/{dcCorporationId}/employees": 200,
    "/lifecycle/v1/corporations/{dcCorporationId}/balances": 200,
    "/lifecycle/v1/corporations/{dcCorporationId}/cards": 200,
    "/secure/balances/{balanceId}/cards": 200,
    "/secure/balances/{balanceId}/transactions": 500,
    # antaca_api/webhooks.py: DELIVERY_PAGE_SIZE_MAX
    "/secure/webhooks/{endpointId}/deliveries": 100,
}
# Under these paths {balanceId} is the partner's own deposit balance, not a customer's.
PARTNER_BALANCE_PATHS = ("/secure/partner/balances/", "/admin/partners/{partnerId}/balances/")


def test_every_paginated_route_has_a_known_maximum():
    assert sorted(r.path for r in PAGED) == sorted(PAGE_MAXIMUM)


async def get(w: World, route: Route, limit: int) -> tuple[int, dict]:
    balance = w.partner_balance if route.path.startswith(PARTNER_BALANCE_PATHS) else w.balance
    if route.path.startswith("/secure/balances/"):  # the partner's corporate balances
        balance = w.corporate_balance
    path = (route.path.replace("{partnerId}", w.partner_id).replace("{customerId}", w.cid)
            .replace("{balanceId}", balance).replace("{dcCorporationId}", w.corporation)
            .replace("{endpointId}", w.endpoint))
    assert "{" not in path, f"fill {path}"
    if route.channel is Channel.PARTNER:
        client, url, headers = w.partner, f"{w.api.https}{path}", {}
    elif route.channel is Channel.CUSTOMER:
        client, url, headers = w.app, f"{w.api.http}{path}", w.me
    else:
        client, url, headers = w.api.client(), f"{w.api.http}{path}", bearer(w.admin)
    async with client.get(url, params={"limit": str(limit)}, headers=headers) as r:
        return r.status, await r.json()


async def test_each_list_serves_its_maximum_page_and_refuses_one_more(api, jwe_key):
    w = await World().setup(api, jwe_key)
    async with w.partner.post(f"{api.https}/secure/partner/balances",
                              json={"kind": "DEPOSIT", "currency": "EUR"}) as r:
        assert r.status == 201, await r.text()
        w.partner_balance = (await r.json())["balanceId"]
    w.corporation, w.corporate_balance = await approved_corporation(api, w.partner_id)
    w.endpoint = await seeded_endpoint(api, w.partner_id)  # for its delivery log
    wrong = []
    for route in PAGED:
        maximum = PAGE_MAXIMUM[route.path]
        for limit, expected in ((maximum, 200), (maximum + 1, 400), (1, 200), (0, 400)):
            status, body = await get(w, route, limit)
            if expected == 400:
                ok = (status, set(body), body.get("code")) == (400, {"code", "message", "requestId"},
                                                               "VALIDATION_ERROR")
            else:
                ok = status == 200 and isinstance(body.get("items"), list)
            if not ok:
                wrong.append(f"{route.path} limit={limit}: expected {expected}, "
                             f"got {status} {body}")
    assert not wrong, "\n".join(wrong)


async def test_a_full_page_at_the_maximum_points_to_the_rest(api, jwe_key):
    """201 customers: limit=200 gives exactly 200 and a cursor to the 201st (no off-by-one)."""
    w = await World().setup(api, jwe_key)  # its one customer, plus 200 more
    async with api.services.pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO customers (id, partner_id, external_id, first_name, last_name, email,
                   phone, birth_date, address, country)
               SELECT gen_random_uuid(), partner_id, 'bulk-' || n, first_name, last_name, email,
                   phone, birth_date, address, country
               FROM customers, generate_series(1, 200) AS n WHERE id = $1""",
            uuid.UUID(w.cid))
    async with w.partner.get(f"{api.https}/secure/customers", params={"limit": "200"}) as r:
        first = await r.json()
    assert len(first["items"]) == 200 and first["nextCursor"]
    async with w.partner.get(f"{api.https}/secure/customers",
                             params={"limit": "200", "cursor": first["nextCursor"]}) as r:
        rest = await r.json()
    assert len(rest["items"]) == 1 and rest["nextCursor"] is None
    seen = {c["customerId"] for c in first["items"] + rest["items"]}
    assert len(seen) == 201 and w.cid in seen
