"""Every decline the engine can answer, through the real engine against PostgreSQL: one card per row,
put in the state the row needs, one payment each, the answer's code, reason and action code.

tests/unit/test_decision.py checks the same table on the pure decision core; this one proves the engine's
reads (card, balance, program, deposit, zone keys, rates) feed it. A reason added to
`antaca_auth.authorization` without a row here fails `test_every_decline_reason_has_a_row`.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec
import psec
import pytest

from antaca_auth import authorization as rules
from antaca_auth.accounts import AccountKind, NewAccount
from antaca_auth.authorization import AuthorizationRequest, Decline, TxType
from antaca_auth.cardstate import LOCK_REASONS
from antaca_auth.engine import EngineSettings
from antaca_auth.pinblock import PinBlockFormat, ZoneKey
from antaca_auth.transfers import Transfer
from antaca_auth.zonekeys import store_zone_key
from bench.cards import BALANCE_FUNDS_MINOR_UNITS, DEPOSIT_FUNDS_MINOR_UNITS
from tests.integration.test_engine_deadlines import World

# The last hour of June 2030: cards expiring 3006 are still valid, 3005 ones are not.
NOW = datetime(2030, 6, 30, 23, 0, tzinfo=UTC)
PIN, WRONG_PIN = "4821", "1357"
APPROVED = None


@dataclass
class Row:
    name: str
    expected: Decline | None  # None: approved
    card: dict = field(default_factory=dict)  # card columns set before the payment
    request: dict = field(default_factory=dict)  # request fields changed (pin: a PIN block of it)
    balance_state: str | None = None
    network: str = "with key"  # or "without key": a network with no zone PIN key
    pin_under_another_key: bool = False
    sent_before: dict | None = None  # changes of a request sent first under the same message id


ROWS = [
    Row("approved", APPROVED),
    Row("unknown card", rules.UNKNOWN_CARD, request={"pan": "5355229999999999"}),
    Row("removed", rules.CARD_REMOVED, card={"state": "REMOVED"}),
    *[Row(f"locked {reason}", rules.locked(reason), card={"state": "LOCKED", "lock_reason": reason,
                                                          "state_before_lock": "ACTIVE"})
      for reason in LOCK_REASONS],
    # A never-activated card: DE39 57 and the product's action code for an inactive card, 1018.
    *[Row(f"state {state}", Decline("57", "CARD_NOT_ACTIVATED", "1018"), card={"state": state})
      for state in ("PENDING", "FAILED", "ORDERED", "INACTIVE")],
    Row("wrong expiry", rules.WRONG_EXPIRY, request={"expiry": "3011"}),
    Row("expired last month", rules.EXPIRED_CARD, card={"expiry": "3005"}, request={"expiry": "3005"}),
    Row("wrong CVC2 (last digit)", rules.WRONG_CVC2, request={"cvc2": "wrong"}),
    Row("e-commerce without CVC2", rules.CVC2_REQUIRED, request={"cvc2": None}),
    Row("the fifth CVC2 failure in the window", rules.SUSPECTED_CARD_TESTING,
        card={"verification_failures": 4, "verification_window_start": NOW - timedelta(minutes=1)},
        request={"cvc2": "wrong"}),
    Row("ATM without PIN", rules.PIN_REQUIRED, request={"type": TxType.ATM, "cvc2": None}),
    Row("PIN block, network without key", rules.PIN_KEY_MISSING, network="without key",
        request={"type": TxType.POS, "cvc2": None, "pin": PIN}),
    Row("PIN block under another key", rules.PIN_BLOCK_UNREADABLE, pin_under_another_key=True,
        request={"type": TxType.POS, "cvc2": None, "pin": PIN}),
    Row("right PIN", APPROVED, request={"type": TxType.POS, "cvc2": None, "pin": PIN}),
    Row("first wrong PIN", rules.WRONG_PIN, request={"type": TxType.POS, "cvc2": None, "pin": WRONG_PIN}),
    Row("second wrong PIN", rules.WRONG_PIN, card={"pin_failures": 1},
        request={"type": TxType.POS, "cvc2": None, "pin": WRONG_PIN}),
    Row("third wrong PIN", rules.PIN_TRIES_EXCEEDED, card={"pin_failures": 2},
        request={"type": TxType.ATM, "cvc2": None, "pin": WRONG_PIN}),
    Row("balance blocked", rules.BALANCE_BLOCKED, balance_state="BLOCKED"),
    Row("balance closed", rules.BALANCE_BLOCKED, balance_state="CLOSED"),
    Row("currency without a rate", rules.CURRENCY_NOT_SUPPORTED, request={"currency": "USD"}),
    Row("converted to nothing", rules.INVALID_AMOUNT, request={"currency": "JPY", "amount": 1}),
    Row("above the partner deposit", rules.INSUFFICIENT_DEPOSIT,
        request={"amount": DEPOSIT_FUNDS_MINOR_UNITS + 1}),
    Row("above the user's funds", rules.INSUFFICIENT_FUNDS, request={"amount": BALANCE_FUNDS_MINOR_UNITS + 1}),
    Row("a used message id, another amount", rules.DUPLICATE_TRANSMISSION, sent_before={"amount": 999}),
]

# Answered only when the engine cannot decide in time: the deadline tests hold the engine up on
# purpose, which a table row cannot do in a few milliseconds.
COVERED_ELSEWHERE = {
    rules.ISSUER_UNAVAILABLE.reason: "tests/integration/test_engine_deadlines.py::"
    "test_past_the_deadline_the_answer_is_a_stand_in_and_the_late_batch_holds_nothing",
    rules.STAND_IN_LIMIT_EXCEEDED.reason: "tests/integration/test_engine_deadlines.py::"
    "test_stand_in_approves_within_the_card_limit_where_the_program_allows_it",
}


def every_decline() -> set[Decline]:
    """Every decline `antaca_auth.authorization` defines, one per lock reason included."""
    defined = {value for value in vars(rules).values() if isinstance(value, Decline)}
    return defined | {rules.locked(reason) for reason in LOCK_REASONS}


def test_every_decline_reason_has_a_row():
    in_table = {row.expected for row in ROWS if row.expected is not None}
    elsewhere = {d for d in every_decline() if d.reason in COVERED_ELSEWHERE}
    assert every_decline() - in_table - elsewhere == set(), "a decline without a row in ROWS"
    for node in COVERED_ELSEWHERE.values():  # the tests named still exist
        path, function = node.split("::")
        module = path.removesuffix(".py").replace("/", ".")
        assert callable(getattr(__import__(module, fromlist=[function]), function)), node


class Table:
    """The deadline tests' World, with a clock at NOW, PINs and a second network without a key."""

    async def start(self, pool, ledger, n_cards: int) -> Table:
        self.world = w = await World().start(pool, ledger, EngineSettings(pipeline_depth=1), n_cards=n_cards)
        w.engine.clock = lambda: self.now
        self.now = NOW
        self.pool, self.keys = pool, w.keys
        self.zone_key = ZoneKey(PinBlockFormat.ISO_4, os.urandom(16))
        self.keyless_network = uuid.uuid4()
        async with pool.acquire() as conn:
            await store_zone_key(conn, w.keys, w.network, self.zone_key)
            await conn.execute("INSERT INTO networks (id, name) VALUES ($1, $2)", self.keyless_network,
                               self.keyless_network.hex)
            # A rate so small that one yen comes to nothing in euros.
            await conn.execute("INSERT INTO fx_rates (base, quote, rate, effective_from) "
                               "VALUES ('JPY', 'EUR', 0.000001, '2000-01-01')")
            for card in w.cards:
                salt, verification = w.keys.new_pin_record(card["card"], PIN)
                await conn.execute("UPDATE cards SET pin_salt = $2, pin_verification = $3 WHERE id = $1",
                                   card["card"], salt, verification)
        return self

    async def prepare(self, index: int, row: Row) -> None:
        card = self.world.cards[index]
        if row.card:
            columns = list(row.card)
            assignments = ", ".join(f"{column} = ${i + 2}" for i, column in enumerate(columns))
            await self.pool.execute(f"UPDATE cards SET {assignments} WHERE id = $1", card["card"],
                                    *row.card.values())
            card["expiry"] = row.card.get("expiry", card["expiry"])
        if row.balance_state:
            await self.pool.execute("UPDATE balances SET state = $2 WHERE id = $1", card["balance"],
                                    row.balance_state)

    def request(self, index: int, changes: dict, *, another_key: bool = False) -> AuthorizationRequest:
        card = self.world.cards[index]
        fields = {"message_id": uuid.uuid4().hex, "pan": card["pan"], "expiry": card["expiry"],
                  "amount": 1000, "currency": "EUR", "type": TxType.ECOM,
                  "cvc2": self.keys.cvc2(card["pan"], card["expiry"], 0)}
        changes = dict(changes)
        if changes.get("cvc2") == "wrong":  # the right CVC2 with its last digit changed
            right = fields["cvc2"]
            changes["cvc2"] = right[:-1] + str((int(right[-1]) + 1) % 10)
        if "pin" in changes:
            key = os.urandom(16) if another_key else self.zone_key.key
            changes["pin_block"] = psec.pinblock.encipher_pinblock_iso_4(
                key, changes.pop("pin"), card["pan"]).hex()
        return AuthorizationRequest(**{**fields, **changes})

    async def authorize(self, request: AuthorizationRequest, network: uuid.UUID | None = None):
        return await self.world.engine.authorize(network or self.world.network, request)


@pytest.fixture
async def table(pool, ledger):
    t = await Table().start(pool, ledger, n_cards=len(ROWS))
    yield t
    await t.world.engine.stop()


async def test_every_decline_through_the_engine(table):
    found = []
    for index, row in enumerate(ROWS):
        await table.prepare(index, row)
        request = table.request(index, row.request, another_key=row.pin_under_another_key)
        if row.sent_before is not None:
            first = msgspec.structs.replace(request, **row.sent_before)
            assert (await table.authorize(first)).decision == "APPROVED", row.name
        network = table.keyless_network if row.network == "without key" else None
        result = await table.authorize(request, network)
        found.append((row.name, result.decision, result.response_code, result.reason, result.action_code))
    expected = [(row.name, "DECLINED", row.expected.response_code, row.expected.reason,
                 row.expected.action_code) if row.expected else (row.name, "APPROVED", "00", "APPROVED", None)
                for row in ROWS]
    assert found == expected
    # Declines hold nothing: only the approvals (and the first of the duplicate pair) hold money.
    holds = await table.pool.fetchval("SELECT count(*) FROM transfers WHERE pending_id IS NULL "
                                      "AND code IN (10, 11)")
    approvals = sum(row.expected is None for row in ROWS) + sum(row.sent_before is not None for row in ROWS)
    assert holds == 2 * approvals
    await table.world.verified()


async def test_a_card_is_valid_to_the_last_day_of_its_expiry_month(table):
    await table.prepare(0, Row("expires in June 2030", APPROVED, card={"expiry": "3006"}))
    table.now = datetime(2030, 6, 30, 23, 59, 59, tzinfo=UTC)
    last_day = await table.authorize(table.request(0, {}))
    table.now = datetime(2030, 7, 1, 0, 0, tzinfo=UTC)
    day_after = await table.authorize(table.request(0, {}))
    assert (last_day.decision, last_day.response_code) == ("APPROVED", "00")
    assert (day_after.decision, day_after.response_code, day_after.reason) == ("DECLINED", "54", "EXPIRED_CARD")


async def test_exactly_the_funds_available_is_approved_one_more_declined(table):
    """The user's funds and the partner deposit, each at its exact boundary."""
    w = table.world
    user_left, deposit_left = 5000, 7000
    drain = uuid.uuid4()
    await w.ledger.create_accounts([NewAccount(id=drain, currency="EUR", kind=AccountKind.EXTERNAL_FUNDING)])
    (funds,) = await w.ledger.lookup_accounts([w.cards[0]["balance"]])
    await w.ledger.create_transfers([Transfer(id=uuid.uuid4(), code=1, debit_account_id=w.cards[0]["balance"],
                                              credit_account_id=drain, currency="EUR",
                                              amount=funds.balance.credits_posted - user_left)])
    one_more = await table.authorize(table.request(0, {"amount": user_left + 1}))
    exact = await table.authorize(table.request(0, {"amount": user_left}))
    assert (one_more.reason, exact.decision, exact.available_after) == ("INSUFFICIENT_FUNDS", "APPROVED", 0)
    (deposit,) = await w.ledger.lookup_accounts([w.cards[0]["deposit"]])
    await w.ledger.create_transfers([Transfer(id=uuid.uuid4(), code=2, debit_account_id=w.cards[0]["deposit"],
                                              credit_account_id=drain, currency="EUR",
                                              amount=deposit.available - deposit_left)])
    one_more = await table.authorize(table.request(1, {"amount": deposit_left + 1}))
    exact = await table.authorize(table.request(1, {"amount": deposit_left}))
    assert (one_more.reason, exact.decision) == ("INSUFFICIENT_PARTNER_DEPOSIT", "APPROVED")
    assert await w.deposit_available() == 0
    await w.verified()


async def test_a_converted_amount_is_rounded_half_up(table):
    """One penny at 2.5 euros a pound is 2.5 cents: held as 3 (half up), not 2 (half to even)."""
    await table.pool.execute("INSERT INTO fx_rates (base, quote, rate, effective_from) "
                             "VALUES ('GBP', 'EUR', 2.5, '2000-01-01')")
    result = await table.authorize(table.request(0, {"currency": "GBP", "amount": 1}))
    assert (result.decision, result.billing_amount) == ("APPROVED", 3)


async def test_another_payment_under_a_message_id_in_flight_is_answered_94_at_once(table):
    """The second copy arrives while the first is being decided: with another amount it is a
    duplicate transmission naming the first, never the first's approval."""
    request = table.request(0, {})
    other = msgspec.structs.replace(request, amount=request.amount + 1)
    first, second = await asyncio.gather(table.authorize(request), table.authorize(other))
    assert (first.decision, second.response_code, second.reason) == (
        "APPROVED", "94", "DUPLICATE_TRANSMISSION")
    assert second.authorization_id == first.authorization_id
    assert await table.world.holds_for(request.message_id) == 2  # the first payment's, once
