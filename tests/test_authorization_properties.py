"""Hypothesis: random streams of authorizations (concurrent), reversals, clearings, refunds and
expiries against a pure model of the funding rules; the decisions match it and the ledger verifies."""

from __future__ import annotations

import asyncio
import copy
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from antaca_auth import followups
from antaca_auth.accounts import AccountKind, NewAccount
from antaca_auth.authorization import AuthorizationRequest, TxType
from antaca_auth.cardkeys import CardKeys
from antaca_auth.database import create_pool
from antaca_auth.engine import AuthorizationEngine, EngineSettings
from antaca_auth.ledger import Ledger
from antaca_auth.transfers import Transfer
from antaca_auth.verify import verify_ledger
from bench.auth_bench import setup

HOLD_SECONDS = 100
CLEARING_TOLERANCE_PERCENT = 20  # the model's clearing rule assumes it


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Model:
    """The DEPOSIT model's money rules, written plainly."""

    def __init__(self, user_funds: list[int], deposit: int) -> None:
        self.user = list(user_funds)  # available per card
        self.deposit = deposit  # available
        self.holds: dict[str, tuple[int, int]] = {}  # message id -> (card, held amount)

    def authorize(self, message_id: str, card: int, amount: int, kind: str, cvc_ok: bool) -> str:
        if not cvc_ok:
            return "WRONG_CVC2"
        if kind == "REFUND":
            self.user[card] += amount
            return "APPROVED"
        if self.deposit < amount:
            return "INSUFFICIENT_PARTNER_DEPOSIT"
        if self.user[card] < amount:
            return "INSUFFICIENT_FUNDS"
        self.deposit -= amount
        self.user[card] -= amount
        self.holds[message_id] = (card, amount)
        return "APPROVED"

    def reverse(self, message_id: str, amount: int | None) -> bool:
        if message_id not in self.holds:
            return False
        card, held = self.holds[message_id]
        amount = held if amount is None else amount
        if amount > held:
            return False
        self.deposit += amount
        self.user[card] += amount
        if amount == held:
            del self.holds[message_id]
        else:
            self.holds[message_id] = (card, held - amount)
        return True

    def clear(self, message_id: str, amount: int) -> bool:
        if message_id not in self.holds:
            return False
        card, held = self.holds[message_id]
        extra = amount - held
        limit = held + held * CLEARING_TOLERANCE_PERCENT // 100
        uncovered = extra > 0 and (self.deposit + held < extra or self.user[card] < extra)
        if amount > limit or uncovered:
            return False
        del self.holds[message_id]
        self.deposit += held  # the deposit is repaid by the user's posted funds
        self.user[card] += held - amount
        return True

    def expire(self) -> None:
        for message_id in list(self.holds):
            self.reverse(message_id, None)


operation = st.one_of(
    st.tuples(st.just("auth"), st.lists(st.tuples(st.integers(0, 2), st.integers(1, 4000),
                                                  st.sampled_from(["ECOM", "ECOM", "POS", "REFUND"]),
                                                  st.sampled_from([True] * 5 + [False])), min_size=1, max_size=8)),
    st.tuples(st.just("reverse"), st.tuples(st.integers(0, 40), st.one_of(st.none(), st.integers(1, 4000)))),
    st.tuples(st.just("clear"), st.tuples(st.integers(0, 40), st.integers(1, 5000))),
    st.tuples(st.just("expire"), st.just(None)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=st.lists(operation, min_size=1, max_size=12),
       funds=st.lists(st.integers(0, 8000), min_size=3, max_size=3), deposit=st.integers(0, 15000))
def test_authorization_streams_match_the_model(database_url, steps, funds, deposit):
    asyncio.run(run(database_url, steps, funds, deposit))


async def run(dsn: str, steps, funds, deposit) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=6)
    clock = Clock()
    ledger = Ledger(pool, clock=clock)
    keys = CardKeys.generate()
    try:
        cards = await setup(pool, ledger, keys, 1, n_cards=3)
        await level(pool, ledger, cards, funds, deposit)
        engine = AuthorizationEngine(pool, ledger, keys, EngineSettings(batch_size_max=8, batch_wait_seconds=0.002,
                                                                   hold_seconds=HOLD_SECONDS), clock=clock)
        await engine.start()
        follow_ups = followups.FollowUps(pool, ledger, keys, hold_seconds=HOLD_SECONDS,
                                         clearing_tolerance_percent=CLEARING_TOLERANCE_PERCENT)
        network = uuid.uuid4()
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO networks (id, name) VALUES ($1, $2)", network, network.hex)
        model = Model(funds, deposit)
        messages: list[str] = []
        for kind, arg in steps:
            if kind == "auth":
                requests = []
                for card, amount, tx, cvc_ok in arg:
                    c = cards[card]
                    cvc = c["cvc2"] if cvc_ok else f"{(int(c['cvc2']) + 1) % 1000:03d}"
                    requests.append((card, AuthorizationRequest(
                        message_id=uuid.uuid4().hex, pan=c["pan"], expiry=c["expiry"], amount=amount,
                        currency="EUR", type=TxType(tx), cvc2=cvc), cvc_ok))
                answers = await asyncio.gather(*(engine.authorize(network, r) for _, r, _ in requests))
                got = {r.message_id: a.reason for (_, r, _), a in zip(requests, answers, strict=True)}
                groups, stored = await batches(pool, requests)
                assert stored == got  # what a replay of the message would answer is what was answered
                model = replay(model, requests, got, groups)
                messages.extend(r.message_id for _, r, _ in requests)
            elif kind in ("reverse", "clear") and messages:
                index, amount = arg
                original = messages[index % len(messages)]
                call = (follow_ups.reverse(network, uuid.uuid4().hex, original, amount)
                        if kind == "reverse" else
                        follow_ups.clear(network, uuid.uuid4().hex, original, amount))
                try:
                    await call
                    ok = True
                except (followups.AuthorizationNotFound, followups.FollowUpRefused):
                    ok = False
                assert ok == (model.reverse(original, amount) if kind == "reverse" else model.clear(original, amount))
            elif kind == "expire":
                clock.now += timedelta(seconds=HOLD_SECONDS + 1)
                await ledger.expire_pending()
                model.expire()
            available = [a.available for a in await ledger.lookup_accounts([c["balance"] for c in cards])]
            assert available == model.user
            (dep,) = await ledger.lookup_accounts([cards[0]["deposit"]])
            assert dep.available == model.deposit
        await engine.stop()
        async with pool.acquire() as conn:
            assert await verify_ledger(conn) == []
    finally:
        await pool.close()


async def batches(pool, requests) -> tuple[list[list[str]], dict[str, str]]:
    """The engine batches the requests went in (rows of one batch share its transaction), each in
    decision order (the order between batches is the hot deposit lock's, which no row records), and
    each request's stored reason."""
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT message_id, xmin::text AS tx, reason FROM authorizations "
                                "WHERE message_id = ANY($1) ORDER BY seq", [r.message_id for _, r, _ in requests])
    groups: dict[str, list[str]] = {}
    for r in rows:
        groups.setdefault(r["tx"], []).append(r["message_id"])
    return list(groups.values()), {r["message_id"]: r["reason"] for r in rows}


def replay(model: Model, requests, got: dict[str, str], groups: list[list[str]]) -> Model:
    """The model after the requests, replayed batch by batch in an order of the batches that gives
    every answer the engine gave; there must be one (the batches ran one after another)."""
    by_id = {r.message_id: (card, r, cvc_ok) for card, r, cvc_ok in requests}

    def search(state: Model, remaining: list[list[str]]) -> Model | None:
        if not remaining:
            return state
        for i, group in enumerate(remaining):  # depth first: a batch that fits next, then the rest
            trial = copy.deepcopy(state)
            if all(trial.authorize(m, by_id[m][0], by_id[m][1].amount, str(by_id[m][1].type), by_id[m][2]) == got[m]
                   for m in group):
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
