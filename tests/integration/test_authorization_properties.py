"""Hypothesis: random streams of authorizations (concurrent), reversals, clearings, refunds,
expiries of holds, card locks and expired cards against a plain model of the product's rules;
the decisions, fees and amounts match it, every balance equals the model's, the ledger verifies.

The model (`Model`) is written from the product description and docs/authorization.md, not from
the code: the checks in the documented order (locked, expiry, CVC2, card testing, PIN and its
tries), fees by docs/fees.md's formula, conversion at the admin's rate rounded half up, and both
funding models (DEPOSIT: the partner deposit is charged too; CREDIT: only the user's funds).
"""

from __future__ import annotations

import asyncio
import copy
import math
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from antaca_auth import followups
from antaca_auth.accounts import AccountKind, NewAccount
from antaca_auth.authorization import AuthorizationRequest, TxType
from antaca_auth.cardkeys import CardKeys
from antaca_auth.charges import ensure_revenue_account
from antaca_auth.database import create_pool
from antaca_auth.engine import AuthorizationEngine, EngineSettings
from antaca_auth.fees import FeeSchedule, TransactionFee
from antaca_auth.ledger import Ledger
from antaca_auth.pinblock import PinBlockFormat, ZoneKey, encipher_pin
from antaca_auth.transfers import Transfer
from antaca_auth.verify import verify_ledger
from antaca_auth.zonekeys import store_zone_key
from bench.auth_bench import setup

HOLD_SECONDS = 100
CLEARING_TOLERANCE_PERCENT = 20  # the model's clearing rule assumes it
N_CARDS = 5  # setup alternates two partners: cards 0, 2, 4 on the DEPOSIT program, 1, 3 CREDIT
PIN, WRONG_PIN = "4321", "9999"
EXPIRY, WRONG_EXPIRY, PAST_EXPIRY = "3012", "3111", "2605"  # the clock is in June 2026
FOREIGN, FOREIGN_RATE = "USD", Fraction(92, 100)  # 1 USD = 0.92 EUR, both with 2 decimals
# Both programs price payments with this schedule; the model prices them with its own formula.
ECOM_FEE = dict(fixed=30, percent_bp=175, minimum=50, maximum=400)
POS_FEE = dict(fixed=10, percent_bp=90, minimum=0, maximum=None)
CONVERSION_BP = 100
SCHEDULE = FeeSchedule(ecom=TransactionFee(**ECOM_FEE), pos=TransactionFee(**POS_FEE),
                       currency_conversion_bp=CONVERSION_BP)
PIN_TRIES = 3  # the third wrong PIN in a row locks the card (reason 6)
CARD_TESTING_FAILURES = 5  # the fifth wrong CVC2 or expiry in the window locks it (reason 7)
LOCK_NAMES = {1: "CARD_LOST", 2: "CARD_STOLEN", 3: "PENDING_QUERY", 6: "PIN_TRIES_EXCEEDED",
              7: "SUSPECTED_FRAUD"}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def fee_of(spec: dict, amount: int) -> int:
    """docs/fees.md: the percentage rounded half up once, the fixed part added, then at least the
    minimum and at most the maximum."""
    fee = max(spec["fixed"] + half_up(Fraction(amount * spec["percent_bp"], 10_000)),
              spec["minimum"])
    return fee if spec["maximum"] is None else min(fee, spec["maximum"])


@dataclass
class ModelCard:
    credit: bool  # the CREDIT funding model: no partner deposit is charged
    user: int  # available funds
    expiry: str = EXPIRY
    lock: int | None = None  # lock reason
    pin_failures: int = 0
    verification_failures: int = 0


@dataclass(frozen=True)
class Payment:
    card: int
    amount: int
    kind: str  # ECOM, POS (with a PIN block), REFUND
    credential: str  # ok, wrong_cvc2 (ECOM, REFUND), wrong_pin (POS), wrong_expiry
    foreign: bool  # in USD (not for refunds)


@dataclass
class Hold:
    card: int
    held: int  # in EUR
    fee: int
    kind: str  # ECOM or POS: which fee a follow-up recomputes

    @property
    def spec(self) -> dict:
        return ECOM_FEE if self.kind == "ECOM" else POS_FEE


@dataclass
class Model:
    """The money and card rules, written plainly."""

    cards: list[ModelCard]
    deposit: int  # the DEPOSIT partner's available deposit
    holds: dict[str, Hold] = field(default_factory=dict)
    priced: dict[str, tuple[int, int]] = field(default_factory=dict)  # approved: billing, fee

    def authorize(self, message_id: str, p: Payment) -> str:
        card = self.cards[p.card]
        if card.lock is not None:
            return f"CARD_LOCKED_{LOCK_NAMES[card.lock]}"
        if p.credential == "wrong_expiry":
            return self.verification_failed(card, "WRONG_EXPIRY")
        if card.expiry < "2606":  # valid to the end of its month; the clock is in June 2026
            return "EXPIRED_CARD"
        if p.credential == "wrong_cvc2":
            return self.verification_failed(card, "WRONG_CVC2")
        if p.kind == "POS":
            if p.credential == "wrong_pin":
                card.pin_failures += 1
                if card.pin_failures >= PIN_TRIES:
                    card.lock = 6
                    return "PIN_TRIES_EXCEEDED"
                return "WRONG_PIN"
            card.pin_failures = 0  # a right PIN resets the count, whatever follows
        if p.kind == "REFUND":
            card.user += p.amount
            return "APPROVED"
        billing = half_up(p.amount * FOREIGN_RATE) if p.foreign else p.amount
        fee = fee_of(ECOM_FEE if p.kind == "ECOM" else POS_FEE, billing)
        if p.foreign:
            fee += half_up(Fraction(billing * CONVERSION_BP, 10_000))
        if not card.credit and self.deposit < billing:
            return "INSUFFICIENT_PARTNER_DEPOSIT"
        if card.user < billing + fee:
            return "INSUFFICIENT_FUNDS"
        if not card.credit:
            self.deposit -= billing
        card.user -= billing + fee
        self.holds[message_id] = Hold(p.card, billing, fee, p.kind)
        self.priced[message_id] = (billing, fee)
        return "APPROVED"

    def verification_failed(self, card: ModelCard, reason: str) -> str:
        card.verification_failures += 1
        if card.verification_failures >= CARD_TESTING_FAILURES:
            card.lock = 7
            return "SUSPECTED_CARD_TESTING"
        return reason

    def reverse(self, message_id: str, amount: int | None) -> bool:
        hold = self.holds.get(message_id)
        if hold is None:
            return False
        amount = hold.held if amount is None else amount
        if amount > hold.held:
            return False
        card = self.cards[hold.card]
        rest = hold.held - amount
        fee_rest = min(fee_of(hold.spec, rest), hold.fee) if rest else 0
        if not card.credit:
            self.deposit += amount
        card.user += amount + hold.fee - fee_rest
        if rest:
            self.holds[message_id] = Hold(hold.card, rest, fee_rest, hold.kind)
        else:
            del self.holds[message_id]
        return True

    def clear(self, message_id: str, amount: int) -> bool:
        hold = self.holds.get(message_id)
        if hold is None:
            return False
        card = self.cards[hold.card]
        fee = fee_of(hold.spec, amount)  # recomputed on the captured amount
        extra, extra_fee = amount - hold.held, fee - hold.fee
        limit = hold.held + hold.held * CLEARING_TOLERANCE_PERCENT // 100
        short = card.user < max(extra, 0) + max(extra_fee, 0)
        if extra > 0 and not card.credit:
            short = short or self.deposit + hold.held < extra
        if amount > limit or short:
            return False
        del self.holds[message_id]
        if not card.credit:
            self.deposit += hold.held  # the deposit is repaid by the user's posted funds
        card.user += hold.held + hold.fee - amount - fee
        return True

    def expire(self) -> None:
        for message_id in list(self.holds):
            self.reverse(message_id, None)


payments = st.builds(
    Payment, card=st.integers(0, N_CARDS - 1), amount=st.integers(1, 4000),
    kind=st.sampled_from(["ECOM", "ECOM", "POS", "REFUND"]),
    credential=st.sampled_from(["ok"] * 6 + ["wrong_cvc2", "wrong_pin", "wrong_expiry"]),
    foreign=st.sampled_from([False, False, False, True]))
# Wrong CVC2s, expiries or PINs on one card at once: the card-testing and PIN-tries counters
# need several on the same card, which independent draws seldom give.
guesses = st.builds(lambda card, credential, count: [
    Payment(card, 100, "POS" if credential == "wrong_pin" else "ECOM", credential, False)
] * count, st.integers(0, N_CARDS - 1),
    st.sampled_from(["wrong_cvc2", "wrong_pin", "wrong_expiry"]), st.integers(1, 6))
payment_groups = st.lists(payments, min_size=1, max_size=8)
card_changes = st.one_of(
    st.tuples(st.just("lock"), st.tuples(st.integers(0, N_CARDS - 1), st.sampled_from([1, 2, 3]))),
    st.tuples(st.just("unlock"), st.integers(0, N_CARDS - 1)),
    st.tuples(st.just("expire_card"), st.integers(0, N_CARDS - 1)),
)
operation = st.one_of(
    # Payments three times as often as anything else: follow-ups need approvals to work on.
    *[st.tuples(st.just("auth"), payment_groups)] * 3,
    st.tuples(st.just("auth"), guesses),
    st.tuples(st.just("reverse"), st.tuples(st.integers(0, 40),
                                            st.one_of(st.none(), st.integers(1, 4000)))),
    st.tuples(st.just("clear"), st.tuples(st.integers(0, 40), st.integers(1, 5000))),
    st.tuples(st.just("expire"), st.just(None)),
    card_changes,
)


def normalized(p: Payment) -> Payment:
    """A wrong credential the payment does not carry (a PIN on e-commerce, a CVC2 on POS) is a
    right one; refunds are in EUR."""
    carried = {"ok": True, "wrong_expiry": True, "wrong_pin": p.kind == "POS",
               "wrong_cvc2": p.kind != "POS"}
    credential = p.credential if carried[p.credential] else "ok"
    return Payment(p.card, p.amount, p.kind, credential, p.foreign and p.kind != "REFUND")


# 100 streams of up to 12 steps: each runs its own cards, engine and network on one database in
# about half a second, so this is ~1 minute; fewer rarely reach the third wrong PIN or the fifth
# card-testing failure on one card, which need several groups on the same card.
# function_scoped_fixture: the database is the test's, not the example's; each example makes its
# own partners, cards and network and checks only those, so examples cannot see each other.
@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(operation, min_size=2, max_size=12),
       # Enough for a few payments each (up to 4,000 plus fees), so that streams approve and
       # have holds to follow up; declines for funds come as the money runs out. (Hypothesis
       # favours the bounds: from 0, most streams declined everything.)
       funds=st.lists(st.integers(1000, 8000), min_size=N_CARDS, max_size=N_CARDS),
       deposit=st.integers(2000, 15000))
def test_authorization_streams_match_the_model(database_url, steps, funds, deposit):
    asyncio.run(run(database_url, steps, funds, deposit))


async def run(dsn: str, steps, funds, deposit) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=6)
    clock = Clock()
    ledger = Ledger(pool, clock=clock)
    keys = CardKeys.generate()
    try:
        cards = await setup(pool, ledger, keys, 2, n_cards=N_CARDS)
        credit = [c["partner"] != cards[0]["partner"] for c in cards]
        await level(pool, ledger, cards, funds, deposit)
        network, zone_key = await prepare(pool, ledger, keys, cards)
        (credit_deposit,) = await ledger.lookup_accounts([cards[1]["deposit"]])
        engine = AuthorizationEngine(pool, ledger, keys, EngineSettings(
            batch_size_max=8, batch_wait_seconds=0.002, hold_seconds=HOLD_SECONDS), clock=clock)
        await engine.start()
        follow_ups = followups.FollowUps(pool, ledger, keys, hold_seconds=HOLD_SECONDS,
                                         clearing_tolerance_percent=CLEARING_TOLERANCE_PERCENT)
        model = Model([ModelCard(c, f) for c, f in zip(credit, funds, strict=True)], deposit)
        # Approved payments in EUR: follow-ups work on them (a follow-up of a decline is only a
        # 404; those of converted payments, rounded part by part, the model does not write).
        # Once reversed or cleared they stay here: a second follow-up finds nothing.
        follow_able: list[str] = []
        for kind, arg in steps:
            if kind == "auth":
                requests = [(normalized(p), uuid.uuid4().hex) for p in arg]
                sent = [request(cards[p.card], model.cards[p.card].expiry, p, m, zone_key)
                        for p, m in requests]
                answers = await asyncio.gather(*(engine.authorize(network, r) for r in sent))
                got = {r.message_id: a.reason for r, a in zip(sent, answers, strict=True)}
                groups, stored = await batches(pool, sent)
                assert stored == got  # a replay of the message would answer what was answered
                model = replay(model, dict((m, p) for p, m in requests), got, groups)
                for r, a in zip(sent, answers, strict=True):
                    if a.decision == "APPROVED" and r.type is not TxType.REFUND:
                        assert (a.billing_amount, a.fee) == model.priced[r.message_id], r
                follow_able.extend(r.message_id for r, a in zip(sent, answers, strict=True)
                                   if a.decision == "APPROVED" and r.currency == "EUR"
                                   and r.type is not TxType.REFUND)
            elif kind in ("reverse", "clear") and follow_able:
                index, amount = arg
                original = follow_able[index % len(follow_able)]
                call = (follow_ups.reverse(network, uuid.uuid4().hex, original, amount)
                        if kind == "reverse" else
                        follow_ups.clear(network, uuid.uuid4().hex, original, amount))
                try:
                    await call
                    ok = True
                except (followups.AuthorizationNotFound, followups.FollowUpRefused):
                    ok = False
                assert ok == (model.reverse(original, amount) if kind == "reverse"
                              else model.clear(original, amount)), (kind, original, amount)
            elif kind == "expire":
                clock.now += timedelta(seconds=HOLD_SECONDS + 1)
                await ledger.expire_pending()
                model.expire()
            elif kind == "lock":
                card, reason = arg
                await pool.execute("UPDATE cards SET state = 'LOCKED', lock_reason = $2 "
                                   "WHERE id = $1", cards[card]["card"], reason)
                model.cards[card].lock = reason
            elif kind == "unlock":
                await pool.execute("UPDATE cards SET state = 'ACTIVE', lock_reason = NULL "
                                   "WHERE id = $1", cards[arg]["card"])
                model.cards[arg].lock = None
            elif kind == "expire_card":
                await pool.execute("UPDATE cards SET expiry = $2 WHERE id = $1",
                                   cards[arg]["card"], PAST_EXPIRY)
                model.cards[arg].expiry = PAST_EXPIRY
            available = [a.available for a in
                         await ledger.lookup_accounts([c["balance"] for c in cards])]
            assert available == [c.user for c in model.cards], (kind, arg, available, model)
            deposits = await ledger.lookup_accounts([cards[0]["deposit"], cards[1]["deposit"]])
            assert deposits[0].available == model.deposit
            assert deposits[1].available == credit_deposit.available  # CREDIT: never charged
        await engine.stop()
        async with pool.acquire() as conn:
            assert await verify_ledger(conn) == []
    finally:
        await pool.close()


async def prepare(pool, ledger: Ledger, keys: CardKeys, cards) -> tuple[uuid.UUID, ZoneKey]:
    """The second program on CREDIT, both priced by SCHEDULE, the USD rate, every card's PIN, and
    a network with its zone PIN key."""
    network = uuid.uuid4()
    zone_key = ZoneKey(PinBlockFormat.ISO_4, os.urandom(16))
    programs = sorted({c["program"] for c in cards}, key=lambda p: p != cards[0]["program"])
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE card_programs SET funding_model = 'CREDIT' WHERE id = $1",
                           programs[1])
        for program in programs:
            await ensure_revenue_account(ledger, conn, program, "EUR")
            await conn.execute(
                """INSERT INTO fee_schedules (id, program_id, version, effective_from, schedule)
                   VALUES ($1, $2, 1, $3, $4)""",
                uuid.uuid4(), program, datetime(2020, 1, 1, tzinfo=UTC), SCHEDULE)
        await conn.execute(
            """INSERT INTO fx_rates (base, quote, rate, effective_from) VALUES ($1, 'EUR', $2, $3)
               ON CONFLICT DO NOTHING""",
            FOREIGN, Decimal(FOREIGN_RATE.numerator) / FOREIGN_RATE.denominator,
            datetime(2020, 1, 1, tzinfo=UTC))
        for c in cards:
            salt, verification = keys.new_pin_record(c["card"], PIN)
            await conn.execute(
                "UPDATE cards SET pin_salt = $2, pin_verification = $3 WHERE id = $1",
                c["card"], salt, verification)
        await conn.execute("INSERT INTO networks (id, name) VALUES ($1, $2)", network, network.hex)
        await store_zone_key(conn, keys, network, zone_key)
    return network, zone_key


def request(card: dict, expiry: str, p: Payment, message_id: str,
            zone_key: ZoneKey) -> AuthorizationRequest:
    """The network's message for a payment: right credentials but the one `p` names wrong."""
    common = dict(message_id=message_id, pan=card["pan"], amount=p.amount,
                  expiry=WRONG_EXPIRY if p.credential == "wrong_expiry" else expiry,
                  currency=FOREIGN if p.foreign else "EUR", type=TxType(p.kind))
    if p.kind == "POS":
        pin = WRONG_PIN if p.credential == "wrong_pin" else PIN
        return AuthorizationRequest(pin_block=encipher_pin(zone_key, pin, card["pan"]).hex(),
                                    **common)
    cvc = card["cvc2"] if p.credential != "wrong_cvc2" else f"{(int(card['cvc2']) + 1) % 1000:03d}"
    return AuthorizationRequest(cvc2=cvc, **common)


async def batches(pool, requests) -> tuple[list[list[str]], dict[str, str]]:
    """The engine batches the requests went in (rows of one batch share its transaction), each in
    decision order (the order between batches is the hot deposit lock's, which no row records), and
    each request's stored reason."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT message_id, xmin::text AS tx, reason FROM authorizations "
            "WHERE message_id = ANY($1) ORDER BY seq", [r.message_id for r in requests])
    groups: dict[str, list[str]] = {}
    for r in rows:
        groups.setdefault(r["tx"], []).append(r["message_id"])
    return list(groups.values()), {r["message_id"]: r["reason"] for r in rows}


def replay(model: Model, payments: dict[str, Payment], got: dict[str, str],
           groups: list[list[str]]) -> Model:
    """The model after the payments, replayed batch by batch in an order of the batches that gives
    every answer the engine gave; there must be one (the batches ran one after another)."""
    def search(state: Model, remaining: list[list[str]]) -> Model | None:
        if not remaining:
            return state
        for i, group in enumerate(remaining):  # depth first: a batch that fits next, then the rest
            trial = copy.deepcopy(state)
            if all(trial.authorize(m, payments[m]) == got[m] for m in group):
                found = search(trial, remaining[:i] + remaining[i + 1:])
                if found is not None:
                    return found
        return None

    found = search(model, groups)
    assert found is not None, f"no order of the batches {groups} explains the answers {got}"
    return found


async def level(pool, ledger: Ledger, cards, funds, deposit) -> None:
    """Bring the setup's generous balances to the example's amounts."""
    sink = uuid.uuid4()
    await ledger.create_accounts([NewAccount(id=sink, currency="EUR", kind=AccountKind.EXTERNAL_FUNDING)])
    moves = []
    for c, target in zip(cards, funds, strict=True):
        (account,) = await ledger.lookup_accounts([c["balance"]])
        moves.append(Transfer(id=uuid.uuid4(), code=1, debit_account_id=c["balance"], credit_account_id=sink,
                              amount=account.available - target, currency="EUR"))
    (dep,) = await ledger.lookup_accounts([cards[0]["deposit"]])
    moves.append(Transfer(id=uuid.uuid4(), code=2, debit_account_id=cards[0]["deposit"], credit_account_id=sink,
                          amount=dep.available - deposit, currency="EUR"))
    assert all(r.ok for r in await ledger.create_transfers(moves))
