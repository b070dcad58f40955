"""Sandbox simulation over the real partner channel: each /secure/simulate route runs the real
network path and answers what the network would hear; without ANTACA_SANDBOX the routes do not
exist; another partner's card or message is unknown; the PAN never reaches the partner."""

from __future__ import annotations

import json
import uuid

import pytest

from antaca_api.settings import Settings
from antaca_auth.verify import verify_ledger
from tests.api_harness import running_api
from tests.integration.test_authorizations import Payments

SIMULATE = ("authorizations", "reversals", "clearings", "refunds")
PIN = "4821"


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


@pytest.fixture
async def sandbox_api(pool, key_material, database_url):
    async with running_api(pool, key_material, database_url, Settings(sandbox=True)) as server:
        yield server


async def simulate(api, p, kind: str, **body) -> tuple[int, dict]:
    async with p.w.partner.post(f"{api.https}/secure/simulate/{kind}", json=body) as r:
        return r.status, await r.json()


async def available(p) -> int:
    return (await p.user_account()).available


def no_card_data(p, *answers) -> None:
    text = json.dumps(answers)
    assert p.card["pan"] not in text and p.card["pan"][-10:] not in text


async def test_without_the_flag_the_routes_do_not_exist(api):
    _, partner = await api.partner()
    for kind in SIMULATE:
        async with partner.post(f"{api.https}/secure/simulate/{kind}",
                                json={"cardId": str(uuid.uuid4()), "amount": 100}) as r:
            assert r.status == 404, kind
            assert (await r.json())["message"] == "no such endpoint"


async def test_authorization_then_clearing_moves_the_money(sandbox_api, jwe_key):
    api = sandbox_api
    p = await Payments().setup(api, jwe_key, user_funds=10_000, deposit=50_000)
    card_id = p.card["cardId"]
    status, answer = await simulate(api, p, "authorizations", cardId=card_id, amount=2500,
                                    currency="EUR", merchantName="Coffee")
    assert status == 200, answer
    assert (answer["decision"], answer["responseCode"], answer["approvedAmount"]) == \
        ("APPROVED", "00", 2500)
    assert answer["messageId"].startswith(uuid.UUID(card_id).hex + "-")
    assert answer["availableAfter"] == 7500 == await available(p)
    status, cleared = await simulate(api, p, "clearings", cardId=card_id, amount=2500,
                                     originalMessageId=answer["messageId"])
    assert status == 200, cleared
    assert (cleared["kind"], cleared["amount"], cleared["authorizationId"]) == \
        ("CLEARING", 2500, answer["authorizationId"])
    account = (await p.user_account()).balance
    assert (account.debits_posted, account.debits_pending) == (2500, 0)
    # The partner's own transaction list shows it as any network payment.
    async with p.w.partner.get(f"{api.https}/secure/transactions") as r:
        (row,) = [t for t in (await r.json())["items"]
                  if t["authorizationId"] == answer["authorizationId"]]
    assert (row["merchantName"], row["decision"]) == ("Coffee", "APPROVED")
    no_card_data(p, answer, cleared)
    await p.assert_clean()


async def test_declines_are_the_real_ones(sandbox_api, jwe_key):
    api = sandbox_api
    p = await Payments().setup(api, jwe_key, user_funds=1_000, deposit=50_000)
    card_id = p.card["cardId"]
    status, answer = await simulate(api, p, "authorizations", cardId=card_id, amount=5_000,
                                    currency="EUR")
    assert (status, answer["decision"], answer["reason"]) == \
        (200, "DECLINED", "INSUFFICIENT_FUNDS")
    wrong_cvc2 = "000" if p.card["cvc2"] != "000" else "001"
    status, answer = await simulate(api, p, "authorizations", cardId=card_id, amount=100,
                                    currency="EUR", cvc2=wrong_cvc2)
    assert (answer["decision"], answer["reason"]) == ("DECLINED", "WRONG_CVC2")
    status, answer = await simulate(api, p, "authorizations", cardId=card_id, amount=100,
                                    currency="EUR", type="ATM")
    assert (answer["decision"], answer["reason"]) == ("DECLINED", "PIN_REQUIRED")
    assert await available(p) == 1_000
    await p.assert_clean()


async def test_a_pin_goes_as_an_enciphered_pin_block(sandbox_api, jwe_key, caplog):
    api = sandbox_api
    p = await Payments().setup(api, jwe_key, user_funds=10_000, deposit=50_000)
    card_id, w = p.card["cardId"], p.w
    status, _ = await w.app_jwe("POST", f"/customers/me/cards/{card_id}/pin", {"pin": PIN})
    assert status == 204
    url = f"{api.https}/secure/simulate/authorizations"
    atm = {"cardId": card_id, "amount": 2000, "currency": "EUR", "type": "ATM"}
    status, answer = await w.jwe.request(w.partner, "POST", url, {**atm, "pin": PIN})
    assert status == 200, answer
    assert (answer["decision"], answer["approvedAmount"]) == ("APPROVED", 2000)
    status, answer = await w.jwe.request(w.partner, "POST", url, {**atm, "pin": "1111"})
    assert (answer["decision"], answer["reason"]) == ("DECLINED", "WRONG_PIN")
    # A PIN in a plain body is refused before anything is sent.
    status, refused = await simulate(api, p, "authorizations", **atm, pin=PIN)
    assert (status, refused["code"]) == (400, "ENCRYPTION_REQUIRED")
    assert PIN not in caplog.text and p.card["pan"] not in caplog.text
    assert await available(p) == 8_000


async def test_reversal_and_refund(sandbox_api, jwe_key):
    api = sandbox_api
    p = await Payments().setup(api, jwe_key, user_funds=10_000, deposit=50_000)
    card_id = p.card["cardId"]
    _, answer = await simulate(api, p, "authorizations", cardId=card_id, amount=4000,
                               currency="EUR")
    status, reversed_ = await simulate(api, p, "reversals", cardId=card_id, amount=1500,
                                       originalMessageId=answer["messageId"])
    assert status == 200, reversed_
    assert (reversed_["kind"], reversed_["amount"]) == ("REVERSAL", 1500)
    assert await available(p) == 10_000 - 2500
    status, rest = await simulate(api, p, "reversals", cardId=card_id,
                                  originalMessageId=answer["messageId"])
    assert (status, rest["amount"]) == (200, 2500)
    assert await available(p) == 10_000
    status, refund = await simulate(api, p, "refunds", cardId=card_id, amount=300,
                                    currency="EUR")
    assert status == 200, refund
    assert (refund["decision"], refund["approvedAmount"]) == ("APPROVED", 300)
    # A refund is booked at once: there is no hold left to clear, as on the network channel.
    account = (await p.user_account()).balance
    assert account.credits_posted == 10_300
    status, cleared = await simulate(api, p, "clearings", cardId=card_id, amount=300,
                                     originalMessageId=refund["messageId"])
    assert (status, cleared["code"]) == (409, "FOLLOW_UP_REFUSED")
    # A force post: a clearing without an authorization.
    status, forced = await simulate(api, p, "clearings", cardId=card_id, amount=700,
                                    currency="EUR")
    assert (status, forced["kind"], forced["amount"]) == (200, "FORCE_POST", 700)
    status, error = await simulate(api, p, "clearings", cardId=card_id, amount=700)
    assert (status, error["code"]) == (400, "VALIDATION_ERROR")
    assert "pan" not in error["message"]
    # An authorization of type REFUND is the refund route's message.
    status, also = await simulate(api, p, "authorizations", cardId=card_id, amount=200,
                                  currency="EUR", type="REFUND")
    assert (status, also["decision"]) == (200, "APPROVED")
    assert (await p.user_account()).balance.credits_posted == 10_500
    no_card_data(p, answer, reversed_, rest, refund, cleared, forced)
    async with api.services.pool.acquire() as conn:
        assert await verify_ledger(conn) == []


async def test_another_partners_card_or_message_is_unknown(sandbox_api, jwe_key):
    api = sandbox_api
    p = await Payments().setup(api, jwe_key, user_funds=10_000, deposit=50_000)
    q = await Payments().setup(api, jwe_key, user_funds=10_000, deposit=50_000)
    _, answer = await simulate(api, p, "authorizations", cardId=p.card["cardId"], amount=1000,
                               currency="EUR")
    assert answer["decision"] == "APPROVED"
    for kind, body in (("authorizations", {"amount": 100, "currency": "EUR"}),
                       ("refunds", {"amount": 100, "currency": "EUR"}),
                       ("reversals", {"originalMessageId": answer["messageId"]}),
                       ("clearings", {"amount": 100, "originalMessageId": answer["messageId"]})):
        for card_id in (p.card["cardId"], str(uuid.uuid4())):
            status, error = await simulate(api, q, kind, cardId=card_id, **body)
            assert (status, error["code"]) == (404, "NOT_FOUND"), (kind, error)
    # Q's own card with P's message id: not Q's authorization.
    for kind, body in (("reversals", {}), ("clearings", {"amount": 1000})):
        status, error = await simulate(api, q, kind, cardId=q.card["cardId"],
                                       originalMessageId=answer["messageId"], **body)
        assert (status, error["code"]) == (404, "NOT_FOUND"), (kind, error)
    assert await available(p) == 9_000


async def test_a_retried_simulation_with_its_key_runs_once(sandbox_api, jwe_key):
    api = sandbox_api
    p = await Payments().setup(api, jwe_key, user_funds=10_000, deposit=50_000)
    body = {"cardId": p.card["cardId"], "amount": 1000, "currency": "EUR"}
    answers = []
    for _ in range(2):
        async with p.w.partner.post(f"{api.https}/secure/simulate/refunds", json=body,
                                    headers={"Idempotency-Key": "sim-1"}) as r:
            answers.append((r.status, await r.json(), r.headers.get("Idempotent-Replayed")))
    assert answers[0][0] == answers[1][0] == 200 and answers[0][1] == answers[1][1]
    assert answers[1][2] == "true"
    assert await available(p) == 11_000
