"""Money between users over the real channels: balance to balance of one partner, in one currency
or converted at the rate in force with the program's conversion fee, as one linked batch."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from antaca_auth.verify import verify_ledger
from tests.api_harness import bearer, pair_device, register_customer
from tests.integration.test_cards import World


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


class Users:
    """Sender A (EUR balance, funded, paired app) and receiver B (EUR and PLN balances), customers
    of one partner with a EUR and a PLN program; the EUR program charges 2 % on conversions."""

    async def setup(self, api, jwe_key) -> Users:
        self.api = api
        self.w = w = await World().setup(api, jwe_key)
        status, pln = await self.admin("POST", "/admin/programs", {
            "partnerId": w.partner_id, "name": "Debit PLN", "binPrefix": "535599", "panLength": 16,
            "currency": "PLN", "fundingModel": "DEPOSIT", "validityMonths": 36})
        assert status == 201, pln
        status, _ = await self.admin("POST", f"/admin/programs/{w.program['programId']}/fees",
                                     {"schedule": {"currencyConversionBp": 200}})
        assert status == 201
        self.sender = w.balance
        await self.partner("POST", f"/secure/customers/{w.cid}/balances/{w.balance}/reload",
                           {"amount": 10_000, "reference": "initial"})
        receiver = await register_customer(api, w.partner, verified=True)
        self.receiver_id = receiver["customerId"]
        balances = f"/secure/customers/{self.receiver_id}/balances"
        self.receiver_eur = (await self.partner("POST", balances, {"currency": "EUR"}))["balanceId"]
        self.receiver_pln = (await self.partner("POST", balances, {"currency": "PLN"}))["balanceId"]
        return self

    async def admin(self, method, path, body=None):
        async with self.api.client().request(method, f"{self.api.http}{path}", json=body,
                                             headers=bearer(self.w.admin)) as r:
            return r.status, await r.json()

    async def partner(self, method, path, body=None):
        async with self.w.partner.request(method, f"{self.api.https}{path}", json=body) as r:
            assert r.status < 300, (path, await r.text())
            return await r.json()

    async def send(self, body: dict, customer_id: str | None = None, balance: str | None = None):
        path = (f"/secure/customers/{customer_id or self.w.cid}/balances/{balance or self.sender}"
                "/internal-transfers")
        async with self.w.partner.post(f"{self.api.https}{path}", json=body) as r:
            return r.status, await r.json()

    async def available(self, customer_id: str, balance: str) -> int:
        return (await self.partner("GET", f"/secure/customers/{customer_id}/balances/{balance}"))[
            "available"]

    async def history(self, customer_id: str, balance: str) -> list[tuple[str, str, int]]:
        page = await self.partner(
            "GET", f"/secure/customers/{customer_id}/balances/{balance}/transactions")
        return [(t["type"], t["direction"], t["amount"]) for t in page["items"]]


async def test_same_currency_transfer_is_in_both_histories_and_books_once(api, jwe_key):
    u = await Users().setup(api, jwe_key)
    body = {"receiverBalanceId": u.receiver_eur, "amount": 1_500, "reference": "rent-1"}
    status, sent = await u.send(body)
    assert status == 201, sent
    assert (sent["amount"], sent["receivedAmount"], sent["currency"], sent["receivedCurrency"],
            sent["rate"], sent["fee"], sent["replayed"]) == (
        1_500, 1_500, "EUR", "EUR", None, 0, False)
    assert await u.available(u.w.cid, u.sender) == 8_500
    assert await u.available(u.receiver_id, u.receiver_eur) == 1_500
    assert ("INTERNAL_TRANSFER", "DEBIT", 1_500) in await u.history(u.w.cid, u.sender)
    received = await u.history(u.receiver_id, u.receiver_eur)
    assert received == [("INTERNAL_TRANSFER", "CREDIT", 1_500)]

    status, again = await u.send(body)  # the same reference: replayed, nothing moves
    assert (status, again["replayed"], again["transferId"]) == (201, True, sent["transferId"])
    assert await u.available(u.w.cid, u.sender) == 8_500
    status, error = await u.send({**body, "amount": 1_600})
    assert (status, error["code"]) == (409, "IDEMPOTENCY_CONFLICT")
    async with api.services.pool.acquire() as conn:
        assert await verify_ledger(conn) == []


async def test_converted_transfer_from_the_app_with_its_fee_as_one_batch(api, jwe_key):
    u = await Users().setup(api, jwe_key)
    body = {"receiverBalanceId": u.receiver_pln, "amount": 1_000, "reference": "gift"}
    url = f"{api.http}/customers/me/balances/{u.sender}/internal-transfers"
    async with u.w.app.post(url, json=body, headers=u.w.me) as r:
        assert (r.status, (await r.json())["code"]) == (409, "RATE_UNAVAILABLE")
    status, _ = await u.admin("POST", "/admin/fx-rates",
                              {"base": "EUR", "quote": "PLN", "rate": "4.3125"})
    assert status == 201
    async with u.w.app.post(url, json=body, headers=u.w.me) as r:
        assert r.status == 201, await r.text()
        sent = await r.json()
    # 10.00 EUR at 4.3125 is 43.13 PLN (half up); the fee is 2 % of 10.00 EUR.
    assert (sent["receivedAmount"], sent["receivedCurrency"], sent["rate"], sent["fee"]) == (
        4_313, "PLN", "4.3125", 20)
    assert await u.available(u.w.cid, u.sender) == 10_000 - 1_000 - 20
    assert await u.available(u.receiver_id, u.receiver_pln) == 4_313
    sender_history = await u.history(u.w.cid, u.sender)
    assert sender_history[-2:] == [("INTERNAL_TRANSFER", "DEBIT", 1_000),
                                   ("FEE_TRANSACTION", "DEBIT", 20)]
    received = await u.history(u.receiver_id, u.receiver_pln)
    assert received == [("INTERNAL_TRANSFER", "CREDIT", 4_313)]
    async with api.services.pool.acquire() as conn:
        charge = await conn.fetchrow("SELECT fee_type, amount, state FROM fee_charges "
                                     "WHERE cause = $1", f"internal-transfer:{sent['transferId']}")
        assert await verify_ledger(conn) == []
    assert (charge["fee_type"], charge["amount"], charge["state"]) == (
        "CURRENCY_CONVERSION", 20, "PAID")

    # Amount and fee beyond the funds: the linked batch books nothing at all.
    status, error = await u.send({"receiverBalanceId": u.receiver_pln, "amount": 8_900,
                                  "reference": "too-much"})
    assert (status, error["code"]) == (409, "INSUFFICIENT_FUNDS")
    assert await u.available(u.w.cid, u.sender) == 8_980
    assert await u.available(u.receiver_id, u.receiver_pln) == 4_313


async def test_only_the_partners_own_customer_balances(api, jwe_key):
    u = await Users().setup(api, jwe_key)
    other = await Users().setup(api, jwe_key)  # another partner
    body = {"receiverBalanceId": other.receiver_eur, "amount": 100, "reference": "x"}
    status, error = await u.send(body)
    assert (status, error["code"]) == (404, "NOT_FOUND")
    status, error = await u.send({**body, "receiverBalanceId": u.sender})
    assert (status, error["code"]) == (400, "VALIDATION_ERROR")
    # Someone else's balance as the sender: the customer in the path must own it.
    status, error = await u.send({**body, "receiverBalanceId": u.sender}, customer_id=u.receiver_id,
                                 balance=u.receiver_eur)
    assert (status, error["code"]) == (409, "INSUFFICIENT_FUNDS")  # B's own, empty balance
    status, error = await u.send({**body, "receiverBalanceId": u.receiver_eur},
                                 customer_id=u.receiver_id, balance=u.sender)
    assert (status, error["code"]) == (404, "NOT_FOUND")
    # Another app user of the same partner cannot send from A's balance.
    session = await pair_device(api, u.w.partner, u.receiver_id, device_id="b-phone")
    async with u.w.app.post(f"{api.http}/customers/me/balances/{u.sender}/internal-transfers",
                            json={**body, "receiverBalanceId": u.receiver_eur},
                            headers=bearer(session["sessionToken"])) as r:
        assert (r.status, (await r.json())["code"]) == (404, "NOT_FOUND")
    await u.partner("POST", f"/secure/customers/{u.receiver_id}/balances/{u.receiver_eur}/block")
    status, error = await u.send({**body, "receiverBalanceId": u.receiver_eur})
    assert (status, error["code"]) == (409, "BALANCE_NOT_ACTIVE")
    assert await u.available(u.w.cid, u.sender) == 10_000
    assert str(uuid.UUID(u.sender)) == u.sender


async def test_crossing_transfers_neither_deadlock_nor_lose_money(api, jwe_key):
    """A to B and B to A at once, many times: the balances are locked in id order, so no deadlock
    (which would be a 500) and the totals add up."""
    u = await Users().setup(api, jwe_key)
    await u.partner("POST", f"/secure/customers/{u.receiver_id}/balances/{u.receiver_eur}/reload",
                    {"amount": 10_000, "reference": "initial"})

    async def send(index: int):
        if index % 2:
            return await u.send({"receiverBalanceId": u.receiver_eur, "amount": 100 + index,
                                 "reference": f"a-{index}"})
        return await u.send({"receiverBalanceId": u.sender, "amount": 100 + index,
                             "reference": f"b-{index}"}, customer_id=u.receiver_id,
                            balance=u.receiver_eur)

    answers = await asyncio.gather(*(send(i) for i in range(24)))
    assert [status for status, _ in answers] == [201] * 24
    a_to_b = sum(100 + i for i in range(24) if i % 2)
    b_to_a = sum(100 + i for i in range(24) if not i % 2)
    assert await u.available(u.w.cid, u.sender) == 10_000 - a_to_b + b_to_a
    assert await u.available(u.receiver_id, u.receiver_eur) == 10_000 + a_to_b - b_to_a
    async with api.services.pool.acquire() as conn:
        assert await verify_ledger(conn) == []
