"""Every list a partner or an administrator reads, paged through by its opaque cursor: each item
exactly once, `hasMore` true exactly when a next page follows, cursors refused (INVALID_CURSOR) on
another list."""

from __future__ import annotations

import uuid

import pytest

from antaca_api import pages
from tests.api_harness import bearer, register_customer
from tests.integration.test_authorizations import Payments
from tests.integration.test_cards import approved_corporation


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


async def page_all(session, url: str, key: str, *, limit: int = 2, headers=None) -> list[str]:
    """Every item's `key` over all pages of `limit` items, checking each page's shape."""
    seen, cursor = [], None
    for _ in range(100):
        params = {"limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        async with session.get(url, params=params, headers=headers) as r:
            assert r.status == 200, await r.text()
            page = await r.json()
        assert len(page["items"]) <= limit
        assert page["hasMore"] == (page["nextCursor"] is not None)
        if page["hasMore"]:
            assert len(page["items"]) == limit
        seen += [str(item[key]) for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            assert len(seen) == len(set(seen)), "an item came twice"
            return seen
    raise AssertionError("the pages never ended")


async def test_every_list_pages_each_item_exactly_once(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    w, https, http = p.w, api.https, api.http
    admin = bearer(w.admin)
    cards = [p.card["cardId"]] + [(await w.virtual())["cardId"] for _ in range(2)]
    balances = [w.balance]
    for currency in ("PLN", "USD"):
        async with w.partner.post(f"{https}/secure/customers/{w.cid}/balances",
                                  json={"currency": currency}) as r:
            assert r.status == 201, await r.text()
            balances.append((await r.json())["balanceId"])
    corporation, corporate_balance = await approved_corporation(api, w.partner_id)
    async with w.partner.post(f"{https}/lifecycle/v1/corporations/{corporation}/employees",
                              json={"name": "Grace Hopper", "email": "grace@acme.example"}) as r:
        assert r.status == 201, await r.text()
        employee = (await r.json())["employeeId"]
    status, corporate = await w.jwe.request(w.partner, "POST", f"{https}/secure/cards/virtual", {
        "dcCorporationId": corporation, "balanceId": corporate_balance, "employeeId": employee})
    assert status == 201, corporate

    customers = [w.cid]
    customers += [(await register_customer(api, w.partner))["customerId"] for _ in range(2)]
    customer_payments = [(await p.authorize(amount=100 + i))["authorizationId"] for i in range(5)]
    p.card = corporate  # the corporate card pays too (declined: its balance is empty)
    corporate_payments = [(await p.authorize())["authorizationId"] for _ in range(2)]

    lists = [
        (w.partner, f"{https}/secure/customers", "customerId", customers, None),
        (w.partner, f"{https}/secure/customers/{w.cid}/cards", "cardId", cards, None),
        (api.client(), f"{http}/admin/customers/{w.cid}/cards", "cardId", cards, admin),
        (w.partner, f"{https}/secure/cards", "cardId", cards + [corporate["cardId"]], None),
        (w.partner, f"{https}/secure/customers/{w.cid}/balances", "balanceId", balances, None),
        (w.partner, f"{https}/secure/balances", "balanceId", balances + [corporate_balance], None),
        (w.partner, f"{https}/secure/customers/{w.cid}/transactions", "authorizationId",
         customer_payments, None),
        (w.partner, f"{https}/secure/transactions", "authorizationId",
         customer_payments + corporate_payments, None),
    ]
    for session, url, key, expected, headers in lists:
        for limit in (1, 2, 3, pages.page_size_max):
            assert await page_all(session, url, key, limit=limit, headers=headers) == expected, url


async def test_partner_balances_partners_and_programs_page(api, jwe_key):
    admin_token = await api.admin_token()
    admin, headers = api.client(), bearer(admin_token)
    partners = [await api.new_partner(admin_token, f"P{i}") for i in range(5)]
    programs = []
    for i, partner_id in enumerate(partners[:3]):
        async with admin.post(f"{api.http}/admin/programs", headers=headers, json={
                "partnerId": partner_id, "name": f"Program {i}", "binPrefix": f"53552{i}",
                "panLength": 16, "currency": "EUR", "fundingModel": "DEPOSIT",
                "validityMonths": 36, "processorConfig": {}}) as r:
            assert r.status == 201, await r.text()
            programs.append((await r.json())["programId"])
    partner_balances = []
    for kind, currency in (("DEPOSIT", "PLN"), ("CREDIT", "EUR"), ("DEPOSIT", "EUR")):
        async with admin.post(f"{api.http}/admin/partners/{partners[0]}/balances", headers=headers,
                              json={"kind": kind, "currency": currency}) as r:
            assert r.status == 201, await r.text()
            partner_balances.append(((await r.json())["balanceId"], currency, kind))
    by_currency_and_kind = [b for b, _, _ in sorted(partner_balances, key=lambda b: (b[1], b[2]))]

    for limit in (1, 2, 4):
        assert await page_all(admin, f"{api.http}/admin/partners", "id", limit=limit,
                              headers=headers) == partners
        assert await page_all(admin, f"{api.http}/admin/programs", "programId", limit=limit,
                              headers=headers) == programs
        assert await page_all(admin, f"{api.http}/admin/partners/{partners[0]}/balances",
                              "balanceId", limit=limit, headers=headers) == by_currency_and_kind


async def test_bad_cursors_and_limits_are_refused(api, jwe_key):
    admin_token = await api.admin_token()
    admin, headers = api.client(), bearer(admin_token)
    for i in range(3):
        await api.new_partner(admin_token, f"P{i}")
    async with admin.get(f"{api.http}/admin/partners", params={"limit": "1"}, headers=headers) as r:
        partners_cursor = (await r.json())["nextCursor"]
    refused = [
        ("/admin/partners", {"limit": "0"}), ("/admin/partners", {"limit": "201"}),
        ("/admin/partners", {"limit": "x"}), ("/admin/partners", {"cursor": "not a cursor"}),
        ("/admin/partners", {"cursor": "e30"}), ("/admin/partners", {"cursor": "x" * 600}),
        ("/admin/programs", {"cursor": partners_cursor}),  # another list's cursor
        ("/admin/partners", {"cursor": pages.encode_cursor(pages.Keyset("partners", int), 5)}),
        ("/admin/audit-log", {"cursor": "5"}),  # the numbers some lists once took
        ("/admin/customers", {"cursor": partners_cursor}), ("/admin/corporations", {"cursor": "0"}),
    ]
    for path, params in refused:
        code = "VALIDATION_ERROR" if "limit" in params else "INVALID_CURSOR"
        async with admin.get(f"{api.http}{path}", params=params, headers=headers) as r:
            assert (r.status, (await r.json())["code"]) == (400, code), (path, params)
    # A cursor carries a position, not a row: one made for a partner that never existed still works.
    from datetime import UTC, datetime

    from antaca_api.partners import PARTNER_PAGES
    cursor = pages.encode_cursor(PARTNER_PAGES, (datetime(2000, 1, 1, tzinfo=UTC), uuid.uuid4()))
    async with admin.get(f"{api.http}/admin/partners", params={"cursor": cursor},
                         headers=headers) as r:
        assert r.status == 200 and len((await r.json())["items"]) == 3


async def page_all_ways(session, url: str, key: str, headers=None) -> list[str]:
    """The list read as one page, then page by page at several sizes: the same items each time."""
    everything = await page_all(session, url, key, limit=100, headers=headers)  # every max >= 100
    assert len(everything) >= 3, url  # enough to page through
    for limit in (1, 2):
        assert await page_all(session, url, key, limit=limit, headers=headers) == everything, url
    return everything


async def oldest_first_events(session, url: str, limit: int) -> list[str]:
    """The events oldest first: the last page keeps a cursor (hasMore false) to poll with."""
    seen, cursor = [], None
    for _ in range(100):
        params = {"order": "oldest", "limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        async with session.get(url, params=params) as r:
            assert r.status == 200, await r.text()
            page = await r.json()
        seen += [item["eventId"] for item in page["items"]]
        cursor = page["nextCursor"]
        assert cursor is not None
        if not page["hasMore"]:
            assert len(seen) == len(set(seen)), "an event came twice"
            return seen
        assert len(page["items"]) == limit
    raise AssertionError("the pages never ended")


async def corporate_setup(api, w) -> dict:
    """Three corporations, one of them approved with three employees, three balances, three
    cards and three reloads of its EUR balance."""
    from tests.integration.test_corporations import create

    https = api.https
    listed = [(await create(api, w.partner, f"Corp {i}"))["dcCorporationId"] for i in range(2)]
    corporation, balance = await approved_corporation(api, w.partner_id)
    employees, balances, cards = [], [balance], []
    for i in range(3):
        async with w.partner.post(f"{https}/lifecycle/v1/corporations/{corporation}/employees",
                                  json={"name": f"Grace {i}", "email": f"g{i}@acme.example"}) as r:
            assert r.status == 201, await r.text()
            employees.append((await r.json())["employeeId"])
    for currency in ("PLN", "USD"):
        async with w.partner.post(f"{https}/secure/balances", json={
                "dcCorporationId": corporation, "currency": currency}) as r:
            assert r.status == 201, await r.text()
            balances.append((await r.json())["balanceId"])
    for employee in employees:
        status, card = await w.jwe.request(w.partner, "POST", f"{https}/secure/cards/virtual", {
            "dcCorporationId": corporation, "balanceId": balance, "employeeId": employee})
        assert status == 201, card
        cards.append(card["cardId"])
    for i in range(3):
        async with w.partner.post(f"{https}/secure/balances/{balance}/reload",
                                  json={"amount": 1_000 + i, "reference": f"corp-{i}"}) as r:
            assert r.status == 200, await r.text()
    return {"corporations": listed + [corporation], "corporation": corporation,
            "balance": balance, "employees": employees, "balances": balances, "cards": cards}


async def seeded_endpoint(api, partner_id: str) -> str:
    """A webhook endpoint of the partner, written directly (never called): its delivery log fills
    as events are written."""
    endpoint = uuid.uuid4()
    async with api.services.pool.acquire() as conn:
        await conn.execute("""INSERT INTO webhook_endpoints (id, partner_id, url, secret)
                              VALUES ($1, $2, 'https://hooks.example.com/', '\\x00')""",
                           endpoint, uuid.UUID(partner_id))
    return str(endpoint)


async def test_the_lists_that_had_their_own_cursors_page_each_item_exactly_once(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    w, https, http = p.w, api.https, api.http
    admin, headers = api.client(), bearer(w.admin)
    for i in range(2):  # the customer's statement: the initial reload and two more
        async with w.partner.post(f"{https}/secure/customers/{w.cid}/balances/{w.balance}/reload",
                                  json={"amount": 100 + i, "reference": f"more-{i}"}) as r:
            assert r.status == 200, await r.text()
    for i in range(2):  # the partner deposit's statement: its funding and two more
        async with admin.post(f"{http}/admin/partners/{w.partner_id}/balances/{p.deposit}/reload",
                              json={"amount": 500 + i, "bankReference": f"bank-{i}"},
                              headers=headers) as r:
            assert r.status == 200, await r.text()
    customers = [w.cid] + [(await register_customer(api, w.partner))["customerId"]
                           for _ in range(2)]
    c = await corporate_setup(api, w)
    corporation = c["corporation"]
    async with api.services.pool.acquire() as conn:
        # Alerts, seeded (as the endpoint below): their own tests make them the long way.
        for available in (10, 20, 30):
            await conn.execute(
                """INSERT INTO partner_alerts (partner_id, account_id, kind, currency, threshold,
                   available) VALUES ($1, $2, 'partner_deposit', 'EUR', 100, $3)""",
                uuid.UUID(w.partner_id), p.deposit, available)
    endpoint = await seeded_endpoint(api, w.partner_id)
    for _ in range(3):  # each card issued is an event, queued for the endpoint
        await w.virtual()

    partner_lists = [
        (f"{https}/lifecycle/v1/corporations", "dcCorporationId", c["corporations"]),
        (f"{https}/lifecycle/v1/corporations/{corporation}/employees", "employeeId",
         c["employees"]),
        (f"{https}/lifecycle/v1/corporations/{corporation}/balances", "balanceId", c["balances"]),
        (f"{https}/lifecycle/v1/corporations/{corporation}/cards", "cardId", c["cards"]),
        (f"{https}/secure/balances/{c['balance']}/cards", "cardId", c["cards"]),
    ]
    for url, key, expected in partner_lists:
        assert await page_all_ways(w.partner, url, key) == expected, url
    for url, key in (
            (f"{https}/secure/balances/{c['balance']}/transactions", "transactionId"),
            (f"{https}/secure/customers/{w.cid}/balances/{w.balance}/transactions",
             "transactionId"),
            (f"{https}/secure/partner/balances/{p.deposit}/statement", "transactionId"),
            (f"{https}/secure/webhooks/{endpoint}/deliveries", "deliveryId")):
        await page_all_ways(w.partner, url, key)
    assert await page_all_ways(admin, f"{http}/admin/customers", "customerId",
                               headers=headers) == customers
    assert await page_all_ways(admin, f"{http}/admin/corporations", "dcCorporationId",
                               headers=headers) == c["corporations"]
    for url, key in ((f"{http}/admin/customers/{w.cid}/balances/{w.balance}/transactions",
                      "transactionId"),
                     (f"{http}/admin/partners/{w.partner_id}/balances/{p.deposit}/statement",
                      "transactionId"),
                     (f"{http}/admin/audit-log", "id"),
                     (f"{http}/admin/partners/{w.partner_id}/alerts", "id")):
        everything = await page_all_ways(admin, url, key, headers=headers)
        if key == "id":  # newest first
            assert everything == sorted(everything, key=int, reverse=True), url
    newest = await page_all_ways(w.partner, f"{https}/secure/events", "eventId")
    for limit in (1, 2, pages.page_size_max):
        assert await oldest_first_events(w.partner, f"{https}/secure/events", limit) == \
            newest[::-1]


async def test_a_full_page_of_events_at_the_maximum_points_to_the_rest(api, jwe_key):
    """More events than the largest page: a page of the maximum says hasMore and its cursor leads
    to the rest, both ways (the events' own read takes the one extra row a page needs)."""
    from antaca_auth import events

    admin_token = await api.admin_token()
    partner_id, partner = await api.partner(admin_token)
    async with api.services.pool.acquire() as conn, conn.transaction():
        for i in range(events.PAGE_SIZE_MAX + 1):
            await events.record(conn, uuid.UUID(partner_id), events.KYB_RESULT, uuid.uuid4(),
                                {"status": "APPROVED", "n": i})
    url, limit = f"{api.https}/secure/events", str(events.PAGE_SIZE_MAX)
    for order in ("newest", "oldest"):
        async with partner.get(url, params={"limit": limit, "order": order}) as r:
            first = await r.json()
        assert len(first["items"]) == events.PAGE_SIZE_MAX and first["hasMore"], order
        async with partner.get(url, params={"limit": limit, "order": order,
                                            "cursor": first["nextCursor"]}) as r:
            rest = await r.json()
        assert len(rest["items"]) == 1 and not rest["hasMore"], order
