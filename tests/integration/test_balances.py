"""User balances over the API: opening, reloads, states, history, ownership; the ledger stays clean."""

from __future__ import annotations

import asyncio

from antaca_auth.verify import verify_ledger
from tests.api_harness import bearer, pair_device, register_customer


async def open_balance(api, partner, customer_id: str, currency: str = "EUR") -> dict:
    async with partner.post(f"{api.https}/secure/customers/{customer_id}/balances", json={"currency": currency}) as r:
        assert r.status == 201, await r.text()
        return await r.json()


async def reload(api, partner, customer_id: str, balance_id: str, amount: int, reference: str):
    url = f"{api.https}/secure/customers/{customer_id}/balances/{balance_id}/reload"
    async with partner.post(url, json={"amount": amount, "reference": reference}) as r:
        return r.status, await r.json()


async def assert_ledger_clean(api) -> None:
    async with api.services.pool.acquire() as conn:
        assert await verify_ledger(conn) == []


async def test_balance_needs_a_verified_customer_and_a_known_currency(api):
    _, partner = await api.partner()
    customer = await register_customer(api, partner)
    url = f"{api.https}/secure/customers/{customer['customerId']}/balances"
    async with partner.post(url, json={"currency": "EUR"}) as r:
        assert (r.status, (await r.json())["code"]) == (409, "CUSTOMER_NOT_VERIFIED")
    verified = await register_customer(api, partner, verified=True)
    url = f"{api.https}/secure/customers/{verified['customerId']}/balances"
    async with partner.post(url, json={"currency": "XYZ"}) as r:
        assert (r.status, (await r.json())["code"]) == (400, "UNSUPPORTED_CURRENCY")
    async with partner.post(url, json={"currency": "eur"}) as r:
        assert r.status == 400
    eur, jpy = await open_balance(api, partner, verified["customerId"]), await open_balance(
        api, partner, verified["customerId"], "JPY")
    assert (eur["posted"], eur["available"], eur["state"]) == (0, 0, "ACTIVE")
    async with partner.get(url) as r:
        assert [b["balanceId"] for b in (await r.json())["items"]] == [eur["balanceId"], jpy["balanceId"]]


async def test_reload_is_idempotent_per_reference(api):
    _, partner = await api.partner()
    customer = await register_customer(api, partner, verified=True)
    cid = customer["customerId"]
    balance = await open_balance(api, partner, cid)
    status, first = await reload(api, partner, cid, balance["balanceId"], 2500, "bank-1")
    assert status == 200 and first["replayed"] is False and first["balance"]["posted"] == 2500
    status, again = await reload(api, partner, cid, balance["balanceId"], 2500, "bank-1")
    assert status == 200 and again["replayed"] is True and again["balance"]["posted"] == 2500
    assert again["transactionId"] == first["transactionId"]
    status, conflict = await reload(api, partner, cid, balance["balanceId"], 2600, "bank-1")
    assert (status, conflict["code"]) == (409, "IDEMPOTENCY_CONFLICT")
    for bad in (0, -5, 1.5, 2**63):
        status, body = await reload(api, partner, cid, balance["balanceId"], bad, "bad")
        assert status == 400, bad
    # concurrent replays of one reference book it once
    results = await asyncio.gather(*(reload(api, partner, cid, balance["balanceId"], 100, "burst") for _ in range(8)))
    assert sorted(body["replayed"] for _, body in results) == [False] + [True] * 7
    async with partner.get(f"{api.https}/secure/customers/{cid}/balances/{balance['balanceId']}") as r:
        assert (await r.json())["posted"] == 2600
    await assert_ledger_clean(api)


async def test_block_unblock_close_rules(api):
    _, partner = await api.partner()
    cid = (await register_customer(api, partner, verified=True))["customerId"]
    balance = await open_balance(api, partner, cid)
    base = f"{api.https}/secure/customers/{cid}/balances/{balance['balanceId']}"
    await reload(api, partner, cid, balance["balanceId"], 100, "r1")
    async with partner.post(f"{base}/block") as r:
        assert (await r.json())["state"] == "BLOCKED"
    status, body = await reload(api, partner, cid, balance["balanceId"], 100, "r2")
    assert (status, body["code"]) == (409, "BALANCE_NOT_ACTIVE")
    async with partner.post(f"{base}/block") as r:
        assert (r.status, (await r.json())["code"]) == (409, "INVALID_STATE_TRANSITION")
    async with partner.post(f"{base}/close") as r:
        assert (r.status, (await r.json())["code"]) == (409, "BALANCE_NOT_EMPTY")
    async with partner.post(f"{base}/unblock") as r:
        assert (await r.json())["state"] == "ACTIVE"
    empty = await open_balance(api, partner, cid)
    async with partner.post(f"{api.https}/secure/customers/{cid}/balances/{empty['balanceId']}/close") as r:
        assert (await r.json())["state"] == "CLOSED"
    status, body = await reload(api, partner, cid, empty["balanceId"], 1, "late")
    assert (status, body["code"]) == (409, "BALANCE_NOT_ACTIVE")
    async with partner.post(f"{api.https}/secure/customers/{cid}/balances/{empty['balanceId']}/unblock") as r:
        assert r.status == 409


async def test_history_pages_from_the_ledger(api):
    _, partner = await api.partner()
    cid = (await register_customer(api, partner, verified=True))["customerId"]
    balance = await open_balance(api, partner, cid)
    for i in range(5):
        await reload(api, partner, cid, balance["balanceId"], 100 * (i + 1), f"ref-{i}")
    url = f"{api.https}/secure/customers/{cid}/balances/{balance['balanceId']}/transactions"
    items, cursor = [], None
    while True:
        async with partner.get(url, params={"limit": "2"} | ({"cursor": cursor} if cursor else {})) as r:
            page = await r.json()
        items += page["items"]
        cursor = page.get("nextCursor")
        if not cursor:
            break
    assert [t["reference"] for t in items] == [f"ref-{i}" for i in range(5)]
    assert [t["postedAfter"] for t in items] == [100, 300, 600, 1000, 1500]
    assert {(t["type"], t["direction"], t["kind"]) for t in items} == {("BALANCE_RELOAD", "CREDIT", "single")}


async def test_app_sees_only_its_own_balances(api):
    _, partner = await api.partner()
    alice = await register_customer(api, partner, verified=True)
    bob = await register_customer(api, partner, verified=True)
    alice_session = await pair_device(api, partner, alice["customerId"])
    bob_session = await pair_device(api, partner, bob["customerId"])
    async with api.client().post(f"{api.http}/customers/me/balances", json={"currency": "EUR"},
                                 headers=bearer(alice_session["sessionToken"])) as r:
        assert r.status == 201
        alices = await r.json()
    await reload(api, partner, alice["customerId"], alices["balanceId"], 700, "r")
    async with api.client().get(f"{api.http}/customers/me/balances/{alices['balanceId']}",
                                headers=bearer(alice_session["sessionToken"])) as r:
        assert (await r.json())["available"] == 700
    async with api.client().get(f"{api.http}/customers/me/balances/{alices['balanceId']}/transactions",
                                headers=bearer(alice_session["sessionToken"])) as r:
        assert len((await r.json())["items"]) == 1
    for path in (f"/customers/me/balances/{alices['balanceId']}",
                 f"/customers/me/balances/{alices['balanceId']}/transactions"):
        async with api.client().get(f"{api.http}{path}", headers=bearer(bob_session["sessionToken"])) as r:
            assert r.status == 404
    async with api.client().get(f"{api.http}/customers/me/balances", headers=bearer(bob_session["sessionToken"])) as r:
        assert (await r.json())["items"] == []


async def test_partners_cannot_touch_each_others_balances(api):
    _, partner_a = await api.partner()
    _, partner_b = await api.partner()
    cid = (await register_customer(api, partner_a, verified=True))["customerId"]
    balance = await open_balance(api, partner_a, cid)
    bid = balance["balanceId"]
    for method, path, body in (
        ("GET", f"/secure/customers/{cid}/balances", None),
        ("POST", f"/secure/customers/{cid}/balances", {"currency": "EUR"}),
        ("GET", f"/secure/customers/{cid}/balances/{bid}", None),
        ("POST", f"/secure/customers/{cid}/balances/{bid}/reload", {"amount": 5, "reference": "x"}),
        ("POST", f"/secure/customers/{cid}/balances/{bid}/block", None),
        ("GET", f"/secure/customers/{cid}/balances/{bid}/transactions", None),
        ("GET", f"/secure/balances/{bid}", None),
    ):
        async with partner_b.request(method, f"{api.https}{path}", json=body) as r:
            assert r.status == 404, (method, path, r.status)
    async with partner_a.get(f"{api.https}/secure/balances/{bid}") as r:
        assert (await r.json())["posted"] == 0  # nothing moved
    await assert_ledger_clean(api)
