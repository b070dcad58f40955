"""Idempotency keys over HTTP and mutual TLS: a replayed answer, a key reused for another request,
concurrent retries that create one card, released keys after a refusal, and expiry."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from antaca_api import idempotency
from tests.api_harness import JweClient, bearer, register_customer

BIN = "535523"


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


class World:
    """An admin, a partner with a EUR program, a verified customer with a balance."""

    async def setup(self, api, jwe_key):
        self.api = api
        self.admin = await api.admin_token()
        self.partner_id, self.partner = await api.partner(self.admin)
        program = {"partnerId": self.partner_id, "name": "Debit EUR", "binPrefix": BIN,
                   "panLength": 16, "currency": "EUR", "fundingModel": "DEPOSIT",
                   "validityMonths": 36, "processorConfig": {}}
        async with api.client().post(f"{api.http}/admin/programs", headers=bearer(self.admin),
                                     json=program) as r:
            assert r.status == 201, await r.text()
        self.customer = await register_customer(api, self.partner, verified=True)
        self.cid = self.customer["customerId"]
        async with self.partner.post(f"{api.https}/secure/customers/{self.cid}/balances",
                                     json={"currency": "EUR"}) as r:
            self.balance = (await r.json())["balanceId"]
        async with api.client().get(f"{api.http}/public-key") as r:
            self.jwe = JweClient((await r.json())["pem"], jwe_key)
        return self

    async def issue(self, key: str | None, body: dict | None = None, session=None):
        """A virtual card order (JWE) with the key: (status, headers, raw answer, opened answer)."""
        headers = {"Public-Key": self.jwe.public_header, "Encrypted-Request": "true"}
        if key is not None:
            headers[idempotency.HEADER] = key
        url = f"{self.api.https}/secure/customers/{self.cid}/cards/virtual"
        sealed = self.jwe.seal(body or {"balanceId": self.balance})
        async with (session or self.partner).post(url, json=sealed, headers=headers) as r:
            raw = await r.read()
            answer = await r.json()
            opened = self.jwe.open(answer) if r.status == 201 else answer
            return r.status, r.headers, raw, opened

    async def card_count(self) -> int:
        async with self.api.services.pool.acquire() as conn:
            return await conn.fetchval("SELECT count(*) FROM cards WHERE customer_id = $1",
                                       uuid.UUID(self.cid))


async def test_a_retry_gets_the_first_answer_again_and_no_second_card(api, jwe_key):
    w = await World().setup(api, jwe_key)
    status, headers, raw, card = await w.issue("order-1")
    assert status == 201 and idempotency.REPLAYED_HEADER not in headers
    status, headers, raw_again, again = await w.issue("order-1")  # a new JWE envelope, same request
    assert (status, headers[idempotency.REPLAYED_HEADER]) == (201, "true")
    assert raw_again == raw and again["cardId"] == card["cardId"] and again["pan"] == card["pan"]
    assert await w.card_count() == 1
    # Without a key every request runs; another key is another request.
    assert (await w.issue(None))[0] == 201 and (await w.issue("order-2"))[0] == 201
    assert await w.card_count() == 3
    async with api.services.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT response FROM idempotency_keys WHERE key = 'order-1'")
    assert card["pan"].encode() not in stored and raw not in stored  # sealed at rest


async def test_the_same_key_for_another_request_is_refused(api, jwe_key):
    w = await World().setup(api, jwe_key)
    assert (await w.issue("k"))[0] == 201
    async with w.partner.post(f"{api.https}/secure/customers/{w.cid}/balances",
                              json={"currency": "PLN"}) as r:
        other_balance = (await r.json())["balanceId"]
    status, headers, _, body = await w.issue("k", {"balanceId": other_balance})
    assert (status, body["code"]) == (409, "IDEMPOTENCY_KEY_REUSED")
    assert idempotency.REPLAYED_HEADER not in headers
    # The same key on another route is another request too.
    async with w.partner.post(f"{api.https}/secure/customers", headers={idempotency.HEADER: "k"},
                              json={"externalId": "x", "firstName": "A", "lastName": "B",
                                    "email": "a@example.com", "phone": "+48123456789",
                                    "birthDate": "1990-01-01", "country": "PL",
                                    "address": {"line1": "Main 1", "city": "Warsaw",
                                                "postalCode": "00-001", "country": "PL"}}) as r:
        assert (r.status, (await r.json())["code"]) == (409, "IDEMPOTENCY_KEY_REUSED")
    assert await w.card_count() == 1
    # Keys are per caller: another partner's "k" is its own (404 here: not its customer).
    _, other_partner = await api.partner(w.admin)
    status, _, _, body = await w.issue("k", session=other_partner)
    assert (status, body["code"]) == (404, "NOT_FOUND")


async def test_a_refused_request_releases_its_key(api, jwe_key):
    w = await World().setup(api, jwe_key)
    status, _, _, body = await w.issue("r", {"balanceId": str(uuid.uuid4())})
    assert (status, body["code"]) == (404, "NOT_FOUND")
    status, headers, _, _ = await w.issue("r")
    assert status == 201 and idempotency.REPLAYED_HEADER not in headers
    assert await w.card_count() == 1
    too_long = "k" * (idempotency.key_length_max + 1)
    status, _, _, body = await w.issue(too_long)
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")
    assert await w.card_count() == 1


async def test_concurrent_retries_create_exactly_one_card(api, jwe_key):
    w = await World().setup(api, jwe_key)
    answers = await asyncio.gather(*(w.issue("same") for _ in range(8)))
    created = [a for a in answers if a[0] == 201 and idempotency.REPLAYED_HEADER not in a[1]]
    assert len(created) == 1
    for status, headers, _, body in answers:
        if status == 201:
            assert body["cardId"] == created[0][3]["cardId"]
        else:
            assert (status, body["code"]) == (409, "IDEMPOTENCY_KEY_IN_PROGRESS")
    assert await w.card_count() == 1
    status, headers, _, body = await w.issue("same")
    assert (status, headers[idempotency.REPLAYED_HEADER], body["cardId"]) == (
        201, "true", created[0][3]["cardId"])


async def test_keys_expire_and_the_sweeper_deletes_them(api, jwe_key):
    w = await World().setup(api, jwe_key)
    assert (await w.issue("old"))[0] == 201 and (await w.issue("fresh"))[0] == 201
    pool = api.services.pool
    await pool.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' "
                       "WHERE key = 'old'")
    # An expired key is free again: the same request runs anew.
    status, headers, _, _ = await w.issue("old")
    assert status == 201 and idempotency.REPLAYED_HEADER not in headers
    assert await w.card_count() == 3
    await pool.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' "
                       "WHERE key = 'old'")
    now = api.services.clock()
    assert await idempotency.sweep_expired(pool, now) == 1
    assert await pool.fetchval("SELECT array_agg(key) FROM idempotency_keys") == ["fresh"]
    # The background job does the same pass on its interval.
    await pool.execute("UPDATE idempotency_keys SET expires_at = $1", now - timedelta(seconds=1))
    job = asyncio.create_task(idempotency.run_sweeper(pool, api.services.clock, interval=0.05))
    try:
        for _ in range(100):
            if await pool.fetchval("SELECT count(*) FROM idempotency_keys") == 0:
                break
            await asyncio.sleep(0.05)
    finally:
        job.cancel()
    assert await pool.fetchval("SELECT count(*) FROM idempotency_keys") == 0


async def test_administrators_keys_and_a_money_movement(api, jwe_key):
    """An administrator's create and a partner's reload (200, moves money) replay the same way;
    two administrators' equal keys are two keys."""
    w = await World().setup(api, jwe_key)
    admin = api.client()
    key = {idempotency.HEADER: "onboard-1"}
    answers = []
    for token in (w.admin, w.admin, await api.admin_token()):
        async with admin.post(f"{api.http}/admin/partners", json={"name": "Twice"},
                              headers=bearer(token) | key) as r:
            answers.append((r.status, r.headers.get(idempotency.REPLAYED_HEADER),
                            (await r.json())["id"]))
    assert [a[:2] for a in answers] == [(201, None), (201, "true"), (201, None)]
    assert answers[0][2] == answers[1][2] != answers[2][2]
    async with api.services.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM partners WHERE name = 'Twice'") == 2
        audited = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'POST /admin/partners'")
    assert audited == 3  # the replay ran nothing, so it audited nothing: 2 + the World's own

    url = f"{api.https}/secure/customers/{w.cid}/balances/{w.balance}/reload"
    results = []
    for reference in ("r-1", "r-1", "r-2"):
        async with w.partner.post(url, json={"amount": 700, "reference": reference},
                                  headers={idempotency.HEADER: "reload-1"}) as r:
            results.append((r.status, r.headers.get(idempotency.REPLAYED_HEADER),
                            await r.json()))
    assert [(s, replayed) for s, replayed, _ in results] == [(200, None), (200, "true"), (409, None)]
    assert results[0][2] == results[1][2] and results[2][2]["code"] == "IDEMPOTENCY_KEY_REUSED"
    async with w.partner.get(f"{api.https}/secure/customers/{w.cid}/balances/{w.balance}") as r:
        assert (await r.json())["posted"] == 700
