"""The authorization engine over the network channel: approvals, every decline, follow-ups, the ledger."""

from __future__ import annotations

import asyncio
import os
import uuid

import psec
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from antaca_auth import decision
from antaca_auth.verify import verify_ledger
from tests.api_harness import bearer, create_network
from tests.integration.test_cards import World


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


class Payments:
    """A World with a funded balance, a virtual card, a funded partner deposit and a network client."""

    async def setup(self, api, jwe_key, *, user_funds=10_000, deposit=50_000, funding_model="DEPOSIT"):
        self.api = api
        self.w = w = await World().setup(api, jwe_key)
        if funding_model != "DEPOSIT":
            async with api.services.pool.acquire() as conn:
                await conn.execute("UPDATE card_programs SET funding_model = $2 WHERE id = $1",
                                   uuid.UUID(w.program["programId"]), funding_model)
            await self.fund_partner("CREDIT", user_funds)  # a CREDIT-model top-up charges the partner credit
        if user_funds:
            async with w.partner.post(f"{api.https}/secure/customers/{w.cid}/balances/{w.balance}/reload",
                                      json={"amount": user_funds, "reference": "initial"}) as r:
                assert r.status == 200
        self.deposit = await self.fund_deposit(deposit)
        self.card = await w.virtual()
        self.network_id, certificate = await create_network(api, w.admin,
                                                            f"net-{uuid.uuid4().hex[:6]}")
        self.network = api.client(cert=certificate)
        self.zone_key = os.urandom(16)  # the network's AES zone PIN key: PIN blocks in ISO 9564 format 4
        check_value = Cipher(algorithms.AES(self.zone_key), modes.ECB()).encryptor().update(bytes(16))[:3]
        status, answer = await w.jwe.request(
            api.client(), "PUT", f"{api.http}/admin/networks/{self.network_id}/pin-key",
            {"format": "ISO_4", "key": self.zone_key.hex(), "checkValue": check_value.hex().upper()},
            headers=bearer(w.admin))
        assert status == 200, answer
        return self

    def pin_block(self, pin: str) -> str:
        """The PIN as the network sends it, enciphered by psec (not Antaca's own encoder)."""
        return psec.pinblock.encipher_pinblock_iso_4(self.zone_key, pin, self.card["pan"]).hex().upper()

    async def fund_deposit(self, amount: int) -> uuid.UUID:
        """The partner's deposit balance, created and reloaded through the admin API."""
        return await self.fund_partner("DEPOSIT", amount)

    async def fund_partner(self, kind: str, amount: int) -> uuid.UUID:
        base = f"{self.api.http}/admin/partners/{self.w.partner_id}/balances"
        admin = self.api.client()
        async with admin.post(base, json={"kind": kind, "currency": "EUR"}, headers=bearer(self.w.admin)) as r:
            assert r.status in (201, 409), await r.text()
        async with admin.get(base, headers=bearer(self.w.admin)) as r:
            (balance,) = [b for b in (await r.json())["items"] if b["kind"] == kind]
        if amount:
            async with admin.post(f"{base}/{balance['balanceId']}/reload", headers=bearer(self.w.admin),
                                  json={"amount": amount, "bankReference": uuid.uuid4().hex}) as r:
                assert r.status == 200, await r.text()
        return uuid.UUID(balance["balanceId"])

    def request(self, **changes) -> dict:
        expiry = self.card["expiry"][3:] + self.card["expiry"][:2]
        body = {"messageId": uuid.uuid4().hex, "pan": self.card["pan"], "expiry": expiry, "amount": 1000,
                "currency": "EUR", "type": "ECOM", "cvc2": self.card["cvc2"], "mcc": "5411",
                "merchantName": "Shop", "merchantCountry": "PL"}
        if "pin" in changes:
            changes["pinBlock"] = self.pin_block(changes.pop("pin"))
        body.update(changes)
        return body

    async def send(self, path: str, body: dict):
        async with self.network.post(f"{self.api.https}{path}", json=body) as r:
            return r.status, await r.json()

    async def authorize(self, **changes):
        status, answer = await self.send("/network/authorizations", self.request(**changes))
        assert status == 200, answer
        return answer

    async def counters(self, account_id):
        (account,) = await self.api.services.ledger.lookup_accounts([account_id])
        return account

    async def user_account(self):
        return await self.counters(uuid.UUID(self.w.balance))

    async def assert_clean(self):
        async with self.api.services.pool.acquire() as conn:
            assert await verify_ledger(conn) == []


async def test_approval_holds_user_funds_and_the_deposit_once(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    body = p.request(amount=2500)
    status, answer = await p.send("/network/authorizations", body)
    assert (answer["decision"], answer["responseCode"], answer["approvedAmount"], answer["availableAfter"]) == (
        "APPROVED", "00", 2500, 7500)
    status, again = await p.send("/network/authorizations", body)
    assert again == answer  # the same message id: the original answer, nothing held twice
    user = await p.user_account()
    assert (user.posted, user.available) == (10_000, 7_500)
    deposit = await p.counters(p.deposit)
    assert deposit.balance.debits_pending == 2500 and deposit.available == 47_500
    await p.assert_clean()


async def test_declines_with_their_codes(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=3000, deposit=10_000)
    cases = [
        ({"pan": "5355220000000000"}, "14", None, "UNKNOWN_CARD"),
        ({"expiry": "9901"}, "54", None, "WRONG_EXPIRY"),
        ({"cvc2": "000" if p.card["cvc2"] != "000" else "001"}, "N7", None, "WRONG_CVC2"),
        ({"amount": 3001}, "51", None, "INSUFFICIENT_FUNDS"),
        ({"currency": "USD"}, "57", None, "CURRENCY_NOT_SUPPORTED"),
        ({"type": "ATM"}, "55", None, "PIN_REQUIRED"),
    ]
    for changes, code, action, reason in cases:
        body = p.request(**changes)
        status, answer = await p.send("/network/authorizations", body)
        assert status == 200, answer
        assert (answer["decision"], answer["responseCode"], answer["actionCode"], answer["reason"]) == (
            "DECLINED", code, action, reason), changes
        # The same message again is answered exactly as the first time, the balance's currency
        # and available amount included.
        assert await p.send("/network/authorizations", body) == (200, answer), changes
        # The currency names the available amount, and comes only with one.
        assert answer["balanceCurrency"] == (None if answer["availableAfter"] is None else "EUR")
    user, deposit = await p.user_account(), await p.counters(p.deposit)
    assert user.balance.debits_pending == 0 and deposit.balance.debits_pending == 0  # a decline holds nothing
    await p.assert_clean()


async def test_insufficient_partner_deposit_then_top_up(api, jwe_key):
    p = await Payments().setup(api, jwe_key, deposit=500)
    answer = await p.authorize(amount=800)
    assert (answer["responseCode"], answer["reason"]) == ("51", "INSUFFICIENT_PARTNER_DEPOSIT")
    assert (await p.user_account()).balance.debits_pending == 0  # the user's hold was undone with it
    await p.fund_deposit(1000)
    assert (await p.authorize(amount=800))["decision"] == "APPROVED"
    await p.assert_clean()


@pytest.mark.parametrize(("reason", "code", "action"), [(1, "41", "2008"), (2, "43", "2009"), (3, "62", "1000"),
                                                       (4, "62", "1016"), (7, "62", "1002"), (8, "62", "1011")])
async def test_locked_cards_answer_their_action_code(api, jwe_key, reason, code, action):
    p = await Payments().setup(api, jwe_key)
    status, _ = await p.w.app_plain("POST", f"/customers/me/cards/{p.card['cardId']}/lock", {"reason": reason})
    assert status == 200
    answer = await p.authorize()
    assert (answer["decision"], answer["responseCode"], answer["actionCode"]) == ("DECLINED", code, action)


async def test_three_wrong_pins_lock_the_card(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    status, _ = await p.w.app_jwe("POST", f"/customers/me/cards/{p.card['cardId']}/pin", {"pin": "4821"})
    assert status == 204
    assert (await p.authorize(type="POS", pin="4821"))["decision"] == "APPROVED"
    for expected in ("WRONG_PIN", "WRONG_PIN"):
        assert (await p.authorize(type="POS", pin="1357"))["reason"] == expected
    third = await p.authorize(type="POS", pin="1357")
    assert (third["responseCode"], third["actionCode"]) == ("75", "1006")
    after = await p.authorize(type="POS", pin="4821")  # even the right PIN now
    assert (after["decision"], after["actionCode"]) == ("DECLINED", "1006")
    status, card = await p.w.app_plain("GET", f"/customers/me/cards/{p.card['cardId']}/status")
    assert (card["status"], card["lockReason"]) == ("LOCKED", 6)


async def test_a_clear_pin_is_refused_and_nothing_is_stored(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    body = p.request(type="POS", cvc2=None)
    body["pin"] = "4821"
    status, answer = await p.send("/network/authorizations", body)
    assert (status, answer["code"]) == (400, "CLEAR_PIN_REFUSED")
    assert "4821" not in answer["message"]
    assert await api.services.pool.fetchval("SELECT count(*) FROM authorizations") == 0


async def test_a_pin_block_under_another_key_is_unreadable_and_counts_no_wrong_pin(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    status, _ = await p.w.app_jwe("POST", f"/customers/me/cards/{p.card['cardId']}/pin", {"pin": "4821"})
    assert status == 204
    foreign = psec.pinblock.encipher_pinblock_iso_4(os.urandom(16), "4821", p.card["pan"]).hex()
    for _ in range(4):
        answer = await p.authorize(type="POS", cvc2=None, pinBlock=foreign)
        assert (answer["responseCode"], answer["reason"]) == ("81", "PIN_BLOCK_UNREADABLE")
    assert (await p.authorize(type="POS", cvc2=None, pin="4821"))["decision"] == "APPROVED"
    # The network's key changes (the engine keeps keys for seconds; setting one empties the cache):
    # blocks under the new key read at once, blocks under the old one no longer do.
    old_key, p.zone_key = p.zone_key, os.urandom(16)
    check_value = Cipher(algorithms.AES(p.zone_key), modes.ECB()).encryptor().update(bytes(16))[:3]
    status, _ = await p.w.jwe.request(
        api.client(), "PUT", f"{api.http}/admin/networks/{p.network_id}/pin-key",
        {"format": "ISO_4", "key": p.zone_key.hex(), "checkValue": check_value.hex().upper()},
        headers=bearer(p.w.admin))
    assert status == 200
    assert (await p.authorize(type="POS", cvc2=None, pin="4821"))["decision"] == "APPROVED"
    stale = psec.pinblock.encipher_pinblock_iso_4(old_key, "4821", p.card["pan"]).hex()
    assert (await p.authorize(type="POS", cvc2=None, pinBlock=stale))["reason"] == "PIN_BLOCK_UNREADABLE"


async def test_card_testing_locks_the_card_after_five_wrong_cvc2_or_expiry(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    wrong_cvc2 = "000" if p.card["cvc2"] != "000" else "001"
    answers = [await p.authorize(cvc2=wrong_cvc2) for _ in range(3)]
    answers.append(await p.authorize(expiry="0101"))
    fifth = await p.authorize(cvc2=wrong_cvc2)
    assert [a["reason"] for a in answers] == ["WRONG_CVC2"] * 3 + ["WRONG_EXPIRY"]
    assert (fifth["responseCode"], fifth["reason"], fifth["actionCode"]) == ("59", "SUSPECTED_CARD_TESTING", "1002")
    right = await p.authorize()
    assert (right["decision"], right["responseCode"], right["actionCode"]) == ("DECLINED", "62", "1002")
    status, card = await p.w.app_plain("GET", f"/customers/me/cards/{p.card['cardId']}/status")
    assert (card["status"], card["lockReason"]) == ("LOCKED", 7)
    events = await api.services.pool.fetch(
        "SELECT event, actor, reason FROM card_events WHERE card_id = $1 AND event = 'LOCKED'",
        uuid.UUID(p.card["cardId"]))
    assert [(e["actor"], e["reason"]) for e in events] == [("system", 7)]
    await p.assert_clean()


async def test_ecommerce_without_cvc2_is_declined_unless_the_program_allows_it(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    answer = await p.authorize(cvc2=None)
    assert (answer["responseCode"], answer["reason"]) == ("N7", "CVC2_REQUIRED")
    url = f"{api.http}/admin/programs/{p.w.program['programId']}/authorization-rules"
    async with api.client().put(url, headers=bearer(p.w.admin),
                                json={"standInMode": "DECLINE", "ecommerceWithoutCvc2": True}) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["ecommerceWithoutCvc2"] is True
    assert (await p.authorize(cvc2=None))["decision"] == "APPROVED"
    async with api.client().put(url, headers=bearer(p.w.admin), json={"standInMode": "SOMETIMES"}) as r:
        assert r.status == 400


async def test_a_network_deadline_is_its_own_and_past_it_the_answer_is_a_stand_in(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    url = f"{api.http}/admin/networks/{p.network_id}"
    async with api.client().patch(url, headers=bearer(p.w.admin), json={"authorizationDeadlineMs": 60}) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["authorizationDeadlineMs"] == 60
    async with api.client().patch(url, headers=bearer(p.w.admin), json={"authorizationDeadlineMs": 20}) as r:
        assert r.status == 400
    body = p.request()
    async with api.services.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", p.deposit)  # the engine waits
        status, answer = await p.send("/network/authorizations", body)
    assert (status, answer["responseCode"], answer["standIn"]) == (200, "91", True)
    for _ in range(200):  # the stand-in is recorded, and the batch behind it held nothing
        row = await api.services.pool.fetchrow(
            "SELECT decision, stand_in, user_hold_id FROM authorizations WHERE message_id = $1", body["messageId"])
        if row is not None and row["stand_in"]:
            break
        await asyncio.sleep(0.01)
    assert (row["decision"], row["stand_in"], row["user_hold_id"]) == ("DECLINED", True, None)
    assert (await p.user_account()).balance.debits_pending == 0
    await p.assert_clean()


async def test_a_message_id_reused_for_another_payment_is_answered_94(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    body = p.request(amount=1200)
    first = (await p.send("/network/authorizations", body))[1]
    status, duplicate = await p.send("/network/authorizations", {**body, "amount": 1300})
    assert (status, duplicate["responseCode"], duplicate["reason"]) == (200, "94", "DUPLICATE_TRANSMISSION")
    assert (await p.send("/network/authorizations", body))[1] == first
    assert (await p.user_account()).balance.debits_pending == 1200


async def test_removed_card_and_blocked_balance(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    async with p.w.partner.post(f"{api.https}/secure/customers/{p.w.cid}/balances/{p.w.balance}/block") as r:
        assert r.status == 200
    assert (await p.authorize())["reason"] == "BALANCE_BLOCKED"
    await p.w.app_plain("DELETE", f"/customers/me/cards/{p.card['cardId']}")
    assert (await p.authorize())["reason"] == "CARD_REMOVED"


async def test_reversals_and_clearings(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    first = p.request(amount=4000)
    assert (await p.send("/network/authorizations", first))[1]["decision"] == "APPROVED"
    status, partial = await p.send("/network/reversals", {"messageId": "rev-1", "originalMessageId": first["messageId"],
                                                          "amount": 1000})
    assert status == 200 and partial["amount"] == 1000
    assert (await p.user_account()).balance.debits_pending == 3000
    status, again = await p.send("/network/reversals", {"messageId": "rev-1", "originalMessageId": first["messageId"],
                                                        "amount": 1000})
    assert again["replayed"] is True and (await p.user_account()).balance.debits_pending == 3000
    status, cleared = await p.send("/network/clearings", {"messageId": "clr-1", "originalMessageId": first["messageId"],
                                                          "amount": 2500})
    assert status == 200
    user = await p.user_account()
    assert (user.balance.debits_pending, user.posted) == (0, 7500)  # the rest of the hold was released

    second = p.request(amount=1000)
    await p.send("/network/authorizations", second)
    status, body = await p.send("/network/clearings", {"messageId": "clr-2", "originalMessageId": second["messageId"],
                                                       "amount": 1300})
    assert (status, body["code"]) == (409, "FOLLOW_UP_REFUSED")  # beyond the 20% tolerance
    status, body = await p.send("/network/clearings", {"messageId": "clr-3", "originalMessageId": second["messageId"],
                                                       "amount": 1150})
    assert status == 200
    assert (await p.user_account()).posted == 7500 - 1150
    deposit = await p.counters(p.deposit)
    assert deposit.balance.debits_pending == 0 and deposit.posted == 50_000 - 2500 - 1150 + 2500 + 1150
    status, body = await p.send("/network/reversals", {"messageId": "rev-9", "originalMessageId": "nope"})
    assert status == 404

    refund = await p.authorize(type="REFUND", amount=300)
    assert refund["decision"] == "APPROVED" and (await p.user_account()).posted == 7500 - 1150 + 300
    async with p.w.partner.get(f"{api.https}/secure/customers/{p.w.cid}/transactions") as r:
        history = (await r.json())["items"]
    assert [h["type"] for h in history] == ["ECOM", "ECOM", "REFUND"]
    assert [e["kind"] for e in history[0]["events"]] == ["REVERSAL", "CLEARING"]
    await p.assert_clean()


async def test_malformed_requests_leave_no_trace(api, jwe_key):
    p = await Payments().setup(api, jwe_key)
    for changes in ({"amount": -5}, {"amount": 0}, {"amount": 2**63}, {"pan": "12ab"}, {"currency": "euro"},
                    {"expiry": "2913"}, {"type": "WIRE"}, {"messageId": ""}):
        status, body = await p.send("/network/authorizations", p.request(**changes))
        assert status == 400 and body["code"] == "VALIDATION_ERROR", changes
    body = p.request()
    del body["amount"]
    assert (await p.send("/network/authorizations", body))[0] == 400
    async with api.services.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM authorizations") == 0
    assert (await p.user_account()).balance.debits_pending == 0


async def test_concurrent_authorizations_never_overdraw(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=100_000, deposit=20_000)
    answers = await asyncio.gather(*(p.authorize(amount=900) for _ in range(40)))
    approved = [a for a in answers if a["decision"] == "APPROVED"]
    assert len(approved) == 20_000 // 900
    assert {a["reason"] for a in answers if a["decision"] == "DECLINED"} == {"INSUFFICIENT_PARTNER_DEPOSIT"}
    deposit = await p.counters(p.deposit)
    assert deposit.balance.debits_pending == 900 * len(approved) and deposit.available >= 0
    await p.assert_clean()


async def test_credit_model_holds_only_user_funds(api, jwe_key):
    p = await Payments().setup(api, jwe_key, deposit=0, funding_model="CREDIT")
    answer = await p.authorize(amount=700)
    assert answer["decision"] == "APPROVED" and answer["availableAfter"] == 9300
    assert (await p.counters(p.deposit)).balance.debits_pending == 0
    await p.assert_clean()


async def test_force_post_and_clearing_batch(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=5000, deposit=50_000)
    auth = p.request(amount=1000)
    await p.send("/network/authorizations", auth)
    status, batch = await p.send("/network/clearings/batch", {"items": [
        {"messageId": "b-1", "originalMessageId": auth["messageId"], "amount": 1000},
        {"messageId": "b-2", "pan": p.card["pan"], "currency": "EUR", "amount": 700},
        {"messageId": "b-3", "pan": p.card["pan"], "currency": "EUR", "amount": 999_999},
        {"messageId": "b-4", "pan": "5355220000000000", "currency": "EUR", "amount": 1},
        {"messageId": "b-5", "amount": 1},
    ]})
    assert status == 200
    outcome = {i["messageId"]: (i["result"]["kind"] if i["result"] else i["error"]["code"]) for i in batch["items"]}
    assert outcome == {"b-1": "CLEARING", "b-2": "FORCE_POST", "b-3": "FOLLOW_UP_REFUSED", "b-4": "NOT_FOUND",
                       "b-5": "VALIDATION_ERROR"}
    user = await p.user_account()
    assert (user.posted, user.balance.debits_pending) == (5000 - 1000 - 700, 0)
    status, replay = await p.send("/network/clearings", {"messageId": "b-2", "pan": p.card["pan"], "currency": "EUR",
                                                         "amount": 700})
    assert replay["replayed"] is True and (await p.user_account()).posted == 3300
    await p.assert_clean()


async def test_approvals_and_declines_are_written_by_the_set_based_path(api, jwe_key, monkeypatch):
    """A payment that fits and one the balances as read cannot cover both stay on the ledger's one-call
    path; one the engine believed covered but the ledger refuses (funds gone in between) falls back to
    the sequential path and is declined with nothing held."""
    p = await Payments().setup(api, jwe_key)
    ledger = api.services.authorization_ledger  # the engine's, on its own pool
    sequential = []
    original = ledger.write_batch

    async def counting(conn, transfers, **kwargs):
        sequential.append(len(transfers))
        return await original(conn, transfers, **kwargs)

    monkeypatch.setattr(ledger, "write_batch", counting)
    approved = await p.authorize(amount=4000)
    assert (approved["decision"], approved["availableAfter"]) == ("APPROVED", 6000)
    declined = await p.authorize(amount=6500)
    assert (declined["decision"], declined["reason"]) == ("DECLINED", "INSUFFICIENT_FUNDS")
    assert sequential == []
    monkeypatch.setattr(decision, "_funds", lambda row, plan: None)  # as if the read were stale
    refused = await p.authorize(amount=6500)
    assert (refused["decision"], refused["reason"], refused["availableAfter"]) == (
        "DECLINED", "INSUFFICIENT_FUNDS", None)
    assert sequential == [2]  # the deposit charge and the user's hold, decided one by one
    user = await p.user_account()
    assert user.available == 6000
    await p.assert_clean()


async def test_a_clearing_at_exactly_the_tolerance_passes_and_one_above_is_refused(api, jwe_key):
    """The service's default tolerance, 20 %, rounded down: a hold of 1,000 clears at 1,200 and not
    1,201; one of 1,001 at 1,201 (1,001 + 200.2 rounded down) and not 1,202. A refused clearing
    books nothing and leaves the hold to clear."""
    p = await Payments().setup(api, jwe_key, user_funds=10_000)
    posted = 10_000
    for held, limit in ((1000, 1200), (1001, 1201)):
        authorization = p.request(amount=held)
        assert (await p.send("/network/authorizations", authorization))[1]["decision"] == "APPROVED"
        original = authorization["messageId"]
        status, body = await p.send("/network/clearings", {"messageId": uuid.uuid4().hex,
                                                           "originalMessageId": original, "amount": limit + 1})
        assert (status, body["code"]) == (409, "FOLLOW_UP_REFUSED"), (held, body)
        user = await p.user_account()
        assert (user.posted, user.balance.debits_pending) == (posted, held)  # nothing booked
        status, body = await p.send("/network/clearings", {"messageId": uuid.uuid4().hex,
                                                           "originalMessageId": original, "amount": limit})
        assert (status, body["kind"], body["amount"]) == (200, "CLEARING", limit), body
        posted -= limit
        user = await p.user_account()
        assert (user.posted, user.balance.debits_pending) == (posted, 0)
    await p.assert_clean()
