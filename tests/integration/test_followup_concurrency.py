"""Follow-ups under concurrency, through the real API: many copies of one reversal, clearing or
force post sent at once all get the first answer and book the money once; reversals and clearings
of one authorization racing each other never release and capture more than it held."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.integration.test_authorizations import Payments

COPIES = 50  # identical messages sent at once
RACERS = 20  # reversals, and as many clearings, of one authorization at once
USER_FUNDS = 10_000
DEPOSIT = 50_000


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


async def send(p: Payments, path: str, body: dict) -> tuple[int, dict]:
    """(status, decoded body), whatever the status (a 500 included)."""
    async with p.network.post(f"{p.api.https}{path}", json=body) as r:
        return r.status, await r.json(content_type=None)


async def send_all(p: Payments, path: str, bodies: list[dict]) -> list[tuple[int, dict]]:
    """Post every body at once; (status, decoded body) per body, in order."""
    return await asyncio.gather(*(send(p, path, body) for body in bodies))


def assert_one_answer(answers: list[tuple[int, dict]], kind: str, amount: int) -> None:
    """Every copy got 200 with the same event and amount; exactly one was not a replay."""
    statuses = Counter(status for status, _ in answers)
    refused = [body for status, body in answers if status != 200]
    assert statuses == {200: COPIES}, (statuses, refused[:3])
    assert {body["eventId"] for _, body in answers} == {answers[0][1]["eventId"]}
    assert {(body["kind"], body["amount"]) for _, body in answers} == {(kind, amount)}
    assert sum(not body["replayed"] for _, body in answers) == 1


async def authorize(p: Payments, amount: int) -> str:
    """An approved authorization of `amount`; its message id."""
    body = p.request(amount=amount)
    status, answer = await p.send("/network/authorizations", body)
    assert (status, answer["decision"]) == (200, "APPROVED"), answer
    return body["messageId"]


async def event_count(p: Payments) -> int:
    async with p.api.services.pool.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM authorization_events")


@pytest.mark.parametrize("amount", [1500, None], ids=["partial", "full"])
async def test_identical_reversals_at_once_answer_the_first(api, jwe_key, amount):
    p = await Payments().setup(api, jwe_key, user_funds=USER_FUNDS, deposit=DEPOSIT)
    original = await authorize(p, 4000)
    body = {"messageId": "rev-same", "originalMessageId": original}
    if amount is not None:
        body["amount"] = amount
    answers = await send_all(p, "/network/reversals", [body] * COPIES)
    released = 4000 if amount is None else amount
    assert_one_answer(answers, "REVERSAL", released)
    user, deposit = await p.user_account(), await p.counters(p.deposit)
    assert (user.posted, user.balance.debits_pending) == (USER_FUNDS, 4000 - released)
    assert (deposit.posted, deposit.balance.debits_pending) == (DEPOSIT, 4000 - released)
    assert await event_count(p) == 1
    await p.assert_clean()


async def test_identical_clearings_at_once_answer_the_first(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=USER_FUNDS, deposit=DEPOSIT)
    original = await authorize(p, 4000)
    body = {"messageId": "clr-same", "originalMessageId": original, "amount": 3000}
    answers = await send_all(p, "/network/clearings", [body] * COPIES)
    assert_one_answer(answers, "CLEARING", 3000)
    user, deposit = await p.user_account(), await p.counters(p.deposit)
    assert (user.posted, user.balance.debits_pending) == (USER_FUNDS - 3000, 0)
    # The deposit paid the network and was repaid by the user's money: back where it was.
    assert (deposit.posted, deposit.balance.debits_pending) == (DEPOSIT, 0)
    assert await event_count(p) == 1
    await p.assert_clean()


async def test_identical_force_posts_at_once_answer_the_first(api, jwe_key):
    p = await Payments().setup(api, jwe_key, user_funds=USER_FUNDS, deposit=DEPOSIT)
    body = {"messageId": "force-same", "pan": p.card["pan"], "currency": "EUR", "amount": 700}
    answers = await send_all(p, "/network/clearings", [body] * COPIES)
    assert_one_answer(answers, "FORCE_POST", 700)
    user, deposit = await p.user_account(), await p.counters(p.deposit)
    assert (user.posted, user.balance.debits_pending) == (USER_FUNDS - 700, 0)
    assert (deposit.posted, deposit.balance.debits_pending) == (DEPOSIT, 0)
    assert await event_count(p) == 1
    await p.assert_clean()


async def test_reversals_and_clearings_of_one_authorization_race(api, jwe_key):
    """Each answer is 200 or a typed refusal; what was released and captured fits in the hold.

    Amounts are chosen so that a clearing is either within what is still held or beyond the
    tolerance (a 1,000 clearing fits 4,000 less any whole number of 300 reversals down to 1,000,
    and 700 * 1.2 < 1,000): an accepted clearing never captures above the hold."""
    hold, reversal, clearing = 4000, 300, 1000
    p = await Payments().setup(api, jwe_key, user_funds=USER_FUNDS, deposit=DEPOSIT)
    original = await authorize(p, hold)
    reversals = [("/network/reversals", {"messageId": f"rev-{i}", "originalMessageId": original,
                                         "amount": reversal}) for i in range(RACERS)]
    clearings = [("/network/clearings", {"messageId": f"clr-{i}", "originalMessageId": original,
                                         "amount": clearing}) for i in range(RACERS)]
    interleaved = [request for pair in zip(reversals, clearings, strict=True) for request in pair]
    answers = await asyncio.gather(*(send(p, path, body) for path, body in interleaved))
    typed_refusals = ((404, "NOT_FOUND"), (409, "FOLLOW_UP_REFUSED"))
    for status, body in answers:
        assert status == 200 or (status, body.get("code")) in typed_refusals, (status, body)
    accepted = [body for status, body in answers if status == 200]
    released = sum(body["amount"] for body in accepted if body["kind"] == "REVERSAL")
    captured = [body["amount"] for body in accepted if body["kind"] == "CLEARING"]
    assert len(captured) <= 1  # a clearing closes the authorization
    assert released + sum(captured) <= hold
    user, deposit = await p.user_account(), await p.counters(p.deposit)
    still_held = 0 if captured else hold - released
    assert (user.posted, user.balance.debits_pending) == (USER_FUNDS - sum(captured), still_held)
    assert (deposit.posted, deposit.balance.debits_pending) == (DEPOSIT, still_held)
    assert await event_count(p) == len(accepted)
    await p.assert_clean()
