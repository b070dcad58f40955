"""Deadlines, stand-in and shutdown of the authorization engine, against a real PostgreSQL.

The engine is held up on purpose: a test transaction locks the partner deposit's ledger row (the
batch's ledger write waits on it, holds written but not committed) or keeps an authorization row
uncommitted under a message id (the batch's insert waits on the unique key).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid

import msgspec
import psec
import pytest

from antaca_auth.accounts import AccountKind, NewAccount
from antaca_auth.authorization import AuthorizationRequest, TxType
from antaca_auth.cardkeys import CardKeys
from antaca_auth.engine import AuthorizationEngine, EngineSettings
from antaca_auth.pinblock import PinBlockFormat, ZoneKey
from antaca_auth.transfers import Transfer
from antaca_auth.verify import verify_ledger
from antaca_auth.zonekeys import store_zone_key
from bench.auth_bench import setup

SHORT = EngineSettings(deadline_seconds=0.4, stand_in_reserve_seconds=0.1, pipeline_depth=1,
                       shutdown_grace_seconds=0.2)


class World:
    async def start(self, pool, ledger, settings: EngineSettings = SHORT, n_cards: int = 4):
        self.pool, self.ledger, self.keys = pool, ledger, CardKeys.generate()
        self.cards = await setup(pool, ledger, self.keys, 1, n_cards=n_cards)
        self.network = uuid.uuid4()
        await pool.execute("INSERT INTO networks (id, name) VALUES ($1, $2)", self.network, self.network.hex)
        self.engine = AuthorizationEngine(pool, ledger, self.keys, settings)
        await self.engine.start()
        return self

    def request(self, card: int = 0, *, message_id: str | None = None, amount: int = 1000) -> AuthorizationRequest:
        c = self.cards[card]
        return AuthorizationRequest(message_id=message_id or uuid.uuid4().hex, pan=c["pan"], expiry=c["expiry"],
                                    amount=amount, currency="EUR", type=TxType.ECOM, cvc2=c["cvc2"])

    def authorize(self, request: AuthorizationRequest, **options) -> asyncio.Task:
        return asyncio.create_task(self.engine.authorize(self.network, request, **options))

    @contextlib.asynccontextmanager
    async def deposit_locked(self):
        """The partner deposit's ledger row locked: a batch's ledger write waits until the block ends."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", self.cards[0]["deposit"])
            yield

    @contextlib.asynccontextmanager
    async def message_held(self, message_id: str):
        """An uncommitted authorization row under `message_id`: a batch inserting it waits on the key."""
        async with self.pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute(
                """INSERT INTO authorizations (id, network_id, message_id, type, amount, currency, decision,
                       response_code, reason) VALUES ($1, $2, $3, 'ECOM', 1, 'EUR', 'DECLINED', '05', 'TEST')""",
                uuid.uuid4(), self.network, message_id)
            try:
                yield
            finally:
                await transaction.rollback()

    async def settled(self) -> None:
        """Wait until no batch is in flight and every stand-in is recorded."""
        for _ in range(500):
            if not self.engine._busy and not self.engine._records and self.engine.queue.empty():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the engine did not settle")

    async def row(self, message_id: str):
        return await self.pool.fetchrow(
            """SELECT decision, response_code, reason, stand_in, user_hold_id, deposit_hold_id
               FROM authorizations WHERE network_id = $1 AND message_id = $2""", self.network, message_id)

    async def holds_for(self, message_id: str) -> int:
        return await self.pool.fetchval("SELECT count(*) FROM transfers WHERE reference = $1", message_id)

    async def deposit_available(self) -> int:
        return await self.pool.fetchval(
            "SELECT credits_posted - debits_posted - debits_pending FROM accounts WHERE id = $1",
            self.cards[0]["deposit"])

    async def verified(self) -> None:
        async with self.pool.acquire() as conn:
            assert await verify_ledger(conn) == []


@pytest.fixture
async def world(pool, ledger):
    w = await World().start(pool, ledger)
    yield w
    await w.engine.stop()


async def test_past_the_deadline_the_answer_is_a_stand_in_and_the_late_batch_holds_nothing(world):
    before = await world.deposit_available()
    loop = asyncio.get_running_loop()
    request = world.request()
    async with world.deposit_locked():  # the batch writes its holds only once this ends
        start = loop.time()
        result = await world.authorize(request)
        waited = loop.time() - start
    assert (result.decision, result.response_code, result.reason, result.stand_in) == (
        "DECLINED", "91", "ISSUER_UNAVAILABLE", True)
    assert 0.25 <= waited < 0.4  # at the stand-in time: deadline less the reserve
    await world.settled()
    row = await world.row(request.message_id)
    assert (row["decision"], row["response_code"], row["stand_in"], row["user_hold_id"]) == (
        "DECLINED", "91", True, None)
    assert await world.holds_for(request.message_id) == 0
    assert await world.deposit_available() == before
    again = await world.authorize(request)  # a retransmission: the answer given, again
    assert again == result
    assert world.engine.statistics()["stand_in_deadline"] == 1
    assert (await world.authorize(world.request())).decision == "APPROVED"  # the engine carries on
    await world.verified()


async def test_a_batch_committing_after_some_callers_timed_out_holds_only_for_the_others(pool, ledger):
    w = await World().start(pool, ledger, EngineSettings(deadline_seconds=5, stand_in_reserve_seconds=0.1,
                                                         batching="writers", writers=1,
                                                         batch_wait_seconds=0.05))
    try:
        early, patient = w.request(0), w.request(1)
        async with w.deposit_locked():
            hurried = w.authorize(early, deadline_seconds=0.4)
            waiting = w.authorize(patient)
            first = await hurried
            await asyncio.sleep(0.05)
            assert not waiting.done()
        second = await waiting
        assert (first.response_code, first.stand_in) == ("91", True)
        assert (second.decision, second.stand_in) == ("APPROVED", False)
        await w.settled()
        assert await w.holds_for(early.message_id) == 0
        assert await w.holds_for(patient.message_id) == 2  # the deposit charge and the user's hold
        assert (await w.row(early.message_id))["response_code"] == "91"
        await w.verified()
    finally:
        await w.engine.stop()


async def test_a_full_queue_answers_new_requests_by_stand_in_at_once(pool, ledger):
    w = await World().start(pool, ledger, EngineSettings(deadline_seconds=5, pipeline_depth=1, queue_size_max=2))
    loop = asyncio.get_running_loop()
    try:
        async with w.deposit_locked():
            taken = w.authorize(w.request(0))
            await asyncio.sleep(0.05)  # the writer has it, and waits on the deposit
            queued = [w.authorize(w.request(i)) for i in (1, 2)]
            await asyncio.sleep(0.01)
            start = loop.time()
            refused = await asyncio.gather(*(w.authorize(w.request(3)) for _ in range(3)))
            assert loop.time() - start < 0.2
        assert {(r.response_code, r.stand_in) for r in refused} == {("91", True)}
        assert [r.decision for r in await asyncio.gather(taken, *queued)] == ["APPROVED"] * 3
        assert w.engine.statistics()["stand_in_queue_full"] == 3
        await w.settled()
        assert await pool.fetchval("SELECT count(*) FROM authorizations WHERE stand_in") == 3
        await w.verified()
    finally:
        await w.engine.stop()


async def test_stop_answers_everything_queued_and_loses_nothing(world):
    async with world.deposit_locked():
        in_batch = world.authorize(world.request(0))
        await asyncio.sleep(0.05)
        queued = [world.authorize(world.request(i % 4)) for i in range(10)]
        await asyncio.sleep(0.01)
        stopping = asyncio.create_task(world.engine.stop())
        answered = await asyncio.gather(*queued)  # stood in when the grace period ends
        assert {(r.response_code, r.stand_in) for r in answered} == {("91", True)}
        # The batch in flight waits on the deposit past its stand-in time: answered by stand-in, and
        # stop() waits for the batch itself.
        first = await in_batch
        assert (first.response_code, first.stand_in) == ("91", True)
        assert not stopping.done()
    await stopping
    assert world.engine.statistics()["stand_in_shutdown"] == 10
    late = await world.authorize(world.request(1))  # after stop: stood in, never queued
    assert late.response_code == "91"
    assert await world.pool.fetchval("SELECT count(*) FROM authorizations WHERE stand_in") == 11
    assert await world.pool.fetchval("SELECT count(*) FROM transfers WHERE code IN (10, 11)") == 0
    await world.verified()


async def test_stand_in_approves_within_the_card_limit_where_the_program_allows_it(pool, ledger):
    w = await World().start(pool, ledger, EngineSettings(deadline_seconds=5, pipeline_depth=1, queue_size_max=1))
    try:
        await pool.execute("UPDATE card_programs SET stand_in_mode = 'APPROVE', stand_in_limit = 2500")
        assert (await w.authorize(w.request(0, amount=100))).decision == "APPROVED"  # the card is known
        blocked = w.request(1, message_id="held-" + uuid.uuid4().hex)
        async with w.message_held(blocked.message_id):  # the writer's batch waits on this key
            stuck = w.authorize(blocked)
            await asyncio.sleep(0.05)
            queued = w.authorize(w.request(2))
            await asyncio.sleep(0.01)
            within = await w.authorize(w.request(0, amount=1500))  # the queue is full: stand-in
            beyond = await w.authorize(w.request(0, amount=1500))
        assert (within.decision, within.stand_in, within.response_code) == ("APPROVED", True, "00")
        assert (beyond.decision, beyond.reason, beyond.response_code) == (
            "DECLINED", "STAND_IN_LIMIT_EXCEEDED", "91")
        assert [r.decision for r in await asyncio.gather(stuck, queued)] == ["APPROVED", "APPROVED"]
        card = await pool.fetchrow("SELECT stand_in_amount, stand_in_day FROM cards WHERE id = $1",
                                   w.cards[0]["card"])
        assert card["stand_in_amount"] == 1500
        holds = await pool.fetchval(
            """SELECT count(*) FROM authorizations a JOIN transfers t ON t.id IN (a.user_hold_id, a.deposit_hold_id)
               WHERE a.stand_in AND a.decision = 'APPROVED'""")
        assert holds == 2
        await w.verified()
    finally:
        await w.engine.stop()


async def test_a_message_id_reused_for_another_payment_is_a_duplicate_transmission(world):
    request = world.request(0)
    first = await world.authorize(request)
    other = AuthorizationRequest(**{**{f: getattr(request, f) for f in request.__struct_fields__},
                                    "amount": request.amount + 1})
    duplicate = await world.authorize(other)
    assert (duplicate.decision, duplicate.response_code, duplicate.reason) == (
        "DECLINED", "94", "DUPLICATE_TRANSMISSION")
    assert duplicate.authorization_id == first.authorization_id
    assert await world.authorize(request) == first  # the same payment again: the original answer
    row = await world.row(request.message_id)
    assert (row["decision"], row["response_code"]) == ("APPROVED", "00")
    assert await world.holds_for(request.message_id) == 2
    assert world.engine.statistics()["duplicate_transmissions"] == 1


@pytest.mark.parametrize("batching", ["pipelined", "writers"])
async def test_concurrent_wrong_pins_count_every_one_and_lock_on_the_third(pool, ledger, batching):
    """24 wrong PINs at once over concurrent batches: each batch locks the cards its plan counts and
    decides again if another batch changed them, so exactly two answer WRONG_PIN and one locks."""
    w = await World().start(pool, ledger, EngineSettings(batching=batching, pipeline_depth=4, writers=4,
                                                         batch_size_max=3, batch_wait_seconds=0.001))
    try:
        zone_key = ZoneKey(PinBlockFormat.ISO_4, os.urandom(16))
        async with pool.acquire() as conn:
            await store_zone_key(conn, w.keys, w.network, zone_key)
            salt, verification = w.keys.new_pin_record(w.cards[0]["card"], "4821")
            await conn.execute("UPDATE cards SET pin_salt = $2, pin_verification = $3 WHERE id = $1",
                               w.cards[0]["card"], salt, verification)
        block = psec.pinblock.encipher_pinblock_iso_4(zone_key.key, "1357", w.cards[0]["pan"]).hex()
        requests = [AuthorizationRequest(message_id=uuid.uuid4().hex, pan=w.cards[0]["pan"], expiry="3012",
                                         amount=100, currency="EUR", type=TxType.POS, pin_block=block)
                    for _ in range(24)]
        answers = await asyncio.gather(*(w.authorize(r) for r in requests))
        reasons = sorted(a.reason for a in answers)
        assert reasons.count("WRONG_PIN") == 2 and reasons.count("PIN_TRIES_EXCEEDED") == 1
        assert reasons.count("CARD_LOCKED_PIN_TRIES_EXCEEDED") == 21
        card = await pool.fetchrow("SELECT state, lock_reason, pin_failures FROM cards WHERE id = $1",
                                   w.cards[0]["card"])
        assert tuple(card) == ("LOCKED", 6, 3)
    finally:
        await w.engine.stop()


async def test_a_batch_of_approvals_and_every_decline_kind_stays_on_the_ledger_fast_path(pool, ledger):
    w = await World().start(pool, ledger, EngineSettings(batching="writers", writers=1, batch_wait_seconds=0.1),
                            n_cards=8)
    try:
        drain = uuid.uuid4()  # the user of card 1 keeps 500 of its funds
        await ledger.create_accounts([NewAccount(id=drain, currency="EUR", kind=AccountKind.EXTERNAL_FUNDING)])
        (funds,) = await ledger.lookup_accounts([w.cards[1]["balance"]])
        await ledger.create_transfers([Transfer(id=uuid.uuid4(), code=1, debit_account_id=w.cards[1]["balance"],
                                                credit_account_id=drain, currency="EUR",
                                                amount=funds.balance.credits_posted - 500)])
        zone_key = ZoneKey(PinBlockFormat.ISO_4, os.urandom(16))
        async with pool.acquire() as conn:
            await store_zone_key(conn, w.keys, w.network, zone_key)
            await conn.execute("UPDATE cards SET state = 'LOCKED', lock_reason = 3 WHERE id = $1", w.cards[2]["card"])
            await conn.execute("UPDATE cards SET expiry = '2001' WHERE id = $1", w.cards[3]["card"])
        wrong_cvc2 = "000" if w.cards[4]["cvc2"] != "000" else "001"
        requests = {
            "APPROVED": w.request(0),
            "INSUFFICIENT_FUNDS": w.request(1, amount=600),
            "CARD_LOCKED_PENDING_QUERY": w.request(2),
            "EXPIRED_CARD": AuthorizationRequest(
                message_id=uuid.uuid4().hex, pan=w.cards[3]["pan"], expiry="2001", amount=100, currency="EUR",
                type=TxType.ECOM, cvc2=w.keys.cvc2(w.cards[3]["pan"], "2001", 0)),
            "WRONG_CVC2": msgspec.structs.replace(w.request(4), cvc2=wrong_cvc2),
            "PIN_REQUIRED": msgspec.structs.replace(w.request(5), type=TxType.ATM, cvc2=None),
            "WRONG_PIN": msgspec.structs.replace(
                w.request(6), type=TxType.POS, cvc2=None,
                pin_block=psec.pinblock.encipher_pinblock_iso_4(zone_key.key, "1357", w.cards[6]["pan"]).hex()),
            "UNKNOWN_CARD": msgspec.structs.replace(w.request(7), pan="5355229999999999"),
        }
        answers = await asyncio.gather(*(w.authorize(r) for r in requests.values()))
        assert [a.reason for a in answers] == list(requests)
        assert dict(ledger.paths) == {"set_based": 1}  # one batch, written by one call
        await w.verified()
    finally:
        await w.engine.stop()


async def test_copies_of_one_message_in_flight_get_one_decision(world):
    """Two copies of a message at once are one decision, whatever happens to it: both stood in here
    (the deposit is locked past the deadline), and nothing held when the batch goes on."""
    request = world.request()
    async with world.deposit_locked():
        first, second = await asyncio.gather(world.authorize(request), world.authorize(request))
        other = AuthorizationRequest(**{**{f: getattr(request, f) for f in request.__struct_fields__},
                                        "amount": request.amount + 1})
    assert first == second and first.response_code == "91"
    await world.settled()
    assert await world.holds_for(request.message_id) == 0
    assert (await world.authorize(request)) == first
    assert (await world.authorize(other)).response_code == "94"
    row = await world.row(request.message_id)
    assert (row["decision"], row["response_code"]) == ("DECLINED", "91")


async def test_a_request_stood_in_while_its_batch_gathered_is_not_decided_again(pool, ledger):
    w = await World().start(pool, ledger, EngineSettings(batching="writers", writers=1,
                                                         batch_wait_seconds=0.5))
    try:
        first = await w.authorize(w.request(), deadline_seconds=0.3)  # stood in during the wait
        await w.settled()
        assert first.response_code == "91"
        assert w.engine.statistics()["stand_in_deadline"] == 1
        assert await pool.fetchval("SELECT count(*) FROM authorizations") == 1
        assert await pool.fetchval("SELECT count(*) FROM transfers WHERE code IN (10, 11)") == 0
    finally:
        await w.engine.stop()


async def test_requests_after_stop_are_answered_even_where_stand_in_would_approve(pool, ledger):
    w = await World().start(pool, ledger)
    await pool.execute("UPDATE card_programs SET stand_in_mode = 'APPROVE', stand_in_limit = 10000")
    assert (await w.authorize(w.request())).decision == "APPROVED"  # the engine knows the card
    await w.engine.stop()
    late = await asyncio.wait_for(w.authorize(w.request()), 2)
    assert (late.response_code, late.stand_in) == ("91", True)
