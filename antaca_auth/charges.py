"""Fee charges: one-off fees (balance and card creation), the recurring card fee job, unpaid-fee
collection, money transfer fees, and revenue reports. The arithmetic lives in antaca_auth.fees.

Every charge is a `fee_charges` row whose (fee type, cause) is unique, so a charge happens once
however often the code that makes it runs; its money is a ledger transfer from the user's balance
to the program's fee revenue account whose id is the charge's id. A fee the balance cannot cover
is recorded UNPAID and collected, oldest first, when money arrives.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from antaca_auth import events
from antaca_auth import fees as pricing
from antaca_auth.accounts import AccountKind, NewAccount
from antaca_auth.activity import card_activity, midnight
from antaca_auth.codes import TransferCode
from antaca_auth.fees import FeeSchedule, FeeType
from antaca_auth.invariants import require
from antaca_auth.ledger import Ledger
from antaca_auth.periodic import every
from antaca_auth.transfers import ResultCode, Transfer

log = logging.getLogger(__name__)

CHARGE_NAMESPACE = uuid.UUID("a3f1c7e2-58b4-4d09-9e6a-1b2c3d4e5f60")


CARD_CREATION = {"VIRTUAL": FeeType.VIRTUAL_CARD_CREATION, "PHYSICAL": FeeType.PHYSICAL_CARD_CREATION}

IN_FORCE = """
    SELECT id, schedule FROM fee_schedules WHERE program_id = $1 AND effective_from <= $2
    ORDER BY effective_from DESC LIMIT 1"""


def charge_id(fee_type: FeeType, cause: str) -> uuid.UUID:
    """A charge's id, which is also its ledger transfer's id: the same cause can only pay once."""
    return uuid.uuid5(CHARGE_NAMESPACE, f"{fee_type}:{cause}")


async def schedule_in_force(conn: asyncpg.Connection, program_id: uuid.UUID | None,
                            at: datetime) -> tuple[uuid.UUID, FeeSchedule] | None:
    """The program's schedule version applying at `at`, or None (no fees)."""
    if program_id is None:
        return None
    row = await conn.fetchrow(IN_FORCE, program_id, at)
    return None if row is None else (row["id"], pricing.decode_schedule(row["schedule"]))


async def ensure_revenue_account(ledger: Ledger, conn: asyncpg.Connection, program_id: uuid.UUID,
                                 currency: str) -> uuid.UUID:
    account_id = pricing.fee_revenue_account(program_id, currency)
    await ledger.create_accounts_in(conn, [NewAccount(id=account_id, currency=currency, kind=AccountKind.FEE_REVENUE,
                                                      owner_ref=f"program:{program_id}")])
    return account_id


@dataclass(frozen=True)
class Charge:
    id: uuid.UUID
    fee_type: FeeType
    amount: int
    state: str  # PAID, UNPAID or WAIVED


INSERT_CHARGE = """
    INSERT INTO fee_charges (id, program_id, schedule_id, fee_type, cause, balance_id, card_id, amount, currency,
                             state, waiver)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
    ON CONFLICT (fee_type, cause) DO NOTHING RETURNING id"""

INSERT_PAID = """
    INSERT INTO fee_charges (id, program_id, schedule_id, fee_type, cause, balance_id, card_id, amount, currency,
                             state, transfer_id, paid_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'PAID', $10, now())"""

MARK_PAID = """
    UPDATE fee_charges SET state = 'PAID', transfer_id = id, paid_at = now()
    WHERE id = ANY($1::uuid[]) AND state = 'UNPAID'"""


async def record_paid(conn: asyncpg.Connection, *, charge: uuid.UUID, program_id: uuid.UUID, schedule_id: uuid.UUID,
                      fee_type: FeeType, cause: str, balance_id: uuid.UUID, card_id: uuid.UUID | None, amount: int,
                      currency: str, transfer_id: uuid.UUID) -> None:
    """Record a fee that the caller's own ledger transfer paid, in the caller's transaction."""
    await conn.execute(INSERT_PAID, charge, program_id, schedule_id, str(fee_type), cause, balance_id, card_id, amount,
                       currency, transfer_id)
    await events.record_fees_charged(conn, [charge])


async def charge_flat(conn: asyncpg.Connection, ledger: Ledger, *, program_id: uuid.UUID | None, fee_type: FeeType,
                      cause: str, balance_id: uuid.UUID, account_id: uuid.UUID, currency: str,
                      card_id: uuid.UUID | None, at: datetime) -> Charge | None:
    """Charge a one-off fee in the caller's transaction: paid, unpaid, waived, or None (no such fee)."""
    found = await schedule_in_force(conn, program_id, at)
    if found is None:
        return None
    schedule_id, schedule = found
    amount = pricing.flat_fee(schedule, fee_type)
    if amount == 0:
        return None
    waiver = pricing.waiver_for(schedule, fee_type, {})
    return (await _charge(conn, ledger, [(card_id, balance_id, account_id, cause, waiver)], program_id=program_id,
                          schedule_id=schedule_id, fee_type=fee_type, amount=amount, currency=currency))[0]


async def _charge(conn: asyncpg.Connection, ledger: Ledger, targets: list, *, program_id: uuid.UUID,
                  schedule_id: uuid.UUID, fee_type: FeeType, amount: int, currency: str) -> list[Charge]:
    """Record and pay a fee of `amount` for each (card, balance, account, cause, waiver) not charged yet."""
    revenue = await ensure_revenue_account(ledger, conn, program_id, currency)
    charges, transfers = [], []
    for card_id, balance_id, account_id, cause, waiver in targets:
        cid = charge_id(fee_type, cause)
        state = "WAIVED" if waiver is not None else "UNPAID"
        if await conn.fetchval(INSERT_CHARGE, cid, program_id, schedule_id, str(fee_type), cause, balance_id, card_id,
                               amount, currency, state, waiver.name if waiver else None) is None:
            continue  # charged before: exactly once per cause
        charges.append(Charge(cid, fee_type, amount, state))
        if waiver is None:
            transfers.append(Transfer(id=cid, code=pricing.FEE_RULES[fee_type].transfer_code, debit_account_id=account_id,
                                      credit_account_id=revenue, amount=amount, currency=currency,
                                      reference=cause[:256]))
    if not transfers:
        return charges
    results = (await ledger.write_batch(conn, transfers)).results
    paid = {r.id for r in results if r.code is ResultCode.OK}
    await conn.execute(MARK_PAID, list(paid))
    await events.record_fees_charged(conn, list(paid))
    return [Charge(c.id, c.fee_type, c.amount, "PAID" if c.id in paid else c.state) for c in charges]


async def refund_flat(conn: asyncpg.Connection, ledger: Ledger, fee_type: FeeType, cause: str) -> None:
    """Give a one-off fee back (its cause did not happen): a paid fee is refunded, an unpaid one dropped."""
    row = await conn.fetchrow(
        """SELECT fc.id, fc.state, fc.amount, fc.currency, fc.program_id, b.account_id
           FROM fee_charges fc JOIN balances b ON b.id = fc.balance_id
           WHERE fc.fee_type = $1 AND fc.cause = $2 FOR UPDATE OF fc""", str(fee_type), cause)
    if row is None or row["state"] in ("WAIVED", "REFUNDED"):
        return
    if row["state"] == "UNPAID":
        await conn.execute("UPDATE fee_charges SET state = 'WAIVED', waiver = 'cause failed' WHERE id = $1", row["id"])
        return
    refund = Transfer(id=uuid.uuid5(CHARGE_NAMESPACE, f"refund:{row['id']}"), code=TransferCode.FEE_REFUND,
                      debit_account_id=pricing.fee_revenue_account(row["program_id"], row["currency"]),
                      credit_account_id=row["account_id"], amount=row["amount"], currency=row["currency"],
                      reference=cause[:256])
    (result,) = (await ledger.write_batch(conn, [refund])).results
    require(result.code in (ResultCode.OK, ResultCode.EXISTS), f"a fee refund was refused: {result.code}")
    await conn.execute("UPDATE fee_charges SET state = 'REFUNDED' WHERE id = $1", row["id"])


UNPAID = """
    SELECT fc.id, fc.fee_type, fc.amount, fc.currency, fc.program_id, fc.cause, b.account_id
    FROM fee_charges fc JOIN balances b ON b.id = fc.balance_id
    WHERE fc.balance_id = $1 AND fc.state = 'UNPAID'
    ORDER BY fc.seq
    FOR UPDATE OF fc SKIP LOCKED"""


async def collect_unpaid(pool: asyncpg.Pool, ledger: Ledger, balance_id: uuid.UUID) -> int:
    """Collect a balance's unpaid fees, oldest first, as far as its available money goes; how many."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(UNPAID, balance_id)
        if not rows:
            return 0
        transfers = [Transfer(id=r["id"], code=pricing.FEE_RULES[FeeType(r["fee_type"])].transfer_code,
                              debit_account_id=r["account_id"],
                              credit_account_id=pricing.fee_revenue_account(r["program_id"], r["currency"]),
                              amount=r["amount"], currency=r["currency"], reference=r["cause"][:256])
                     for r in rows]
        results = (await ledger.write_batch(conn, transfers)).results
        paid = [r.id for r in results if r.code is ResultCode.OK]
        await conn.execute(MARK_PAID, paid)
        await events.record_fees_charged(conn, paid)  # charged now that they are paid
        return len(paid)


async def collect_all(pool: asyncpg.Pool, ledger: Ledger) -> int:
    """Collect unpaid fees on every balance that has money available now (the periodic sweep)."""
    balances = await pool.fetch(
        """SELECT DISTINCT fc.balance_id FROM fee_charges fc
           JOIN balances b ON b.id = fc.balance_id JOIN accounts a ON a.id = b.account_id
           WHERE fc.state = 'UNPAID'
             AND credit_normal_available(a.credits_posted, a.debits_posted, a.debits_pending) > 0""")
    total = 0
    for r in balances:
        total += await collect_unpaid(pool, ledger, r["balance_id"])
    return total


# A card locked for good as replaced (reason 8) is no longer live: its successor pays the fee.
RECURRING_CARDS = """
    SELECT c.id, c.balance_id, b.account_id, c.seq
    FROM cards c JOIN balances b ON b.id = c.balance_id
    WHERE c.program_id = $1 AND c.state IN ('ACTIVE', 'LOCKED', 'INACTIVE')
      AND c.lock_reason IS DISTINCT FROM 8 AND c.created_at < $2 AND c.seq > $3
    ORDER BY c.seq LIMIT $4"""


async def charge_recurring(pool: asyncpg.Pool, ledger: Ledger, at: datetime, *, chunk: int = 500) -> list[Charge]:
    """Charge every live card its recurring fee for the period containing `at`, once per card and period
    (a second run, or two at once, charges nothing more)."""
    done: list[Charge] = []
    programs = await pool.fetch("SELECT DISTINCT f.program_id, p.currency FROM fee_schedules f "
                                "JOIN card_programs p ON p.id = f.program_id")
    for program in programs:
        async with pool.acquire() as conn:
            found = await schedule_in_force(conn, program["program_id"], at)
        if found is None or found[1].card_recurring is None:
            continue
        schedule_id, schedule = found
        period = schedule.card_recurring.period
        start, end = pricing.period_bounds(period, at.date())
        previous = pricing.previous_period(period, at.date())
        after = 0
        while True:
            async with pool.acquire() as conn, conn.transaction():
                cards = await conn.fetch(RECURRING_CARDS, program["program_id"], midnight(end), after, chunk)
                if not cards:
                    break
                after = cards[-1]["seq"]
                facts = (await card_activity(conn, [c["id"] for c in cards], *previous)
                         if pricing.has_waivers(schedule, FeeType.CARD_RECURRING) else {})
                targets = [(c["id"], c["balance_id"], c["account_id"], f"card:{c['id']}:{period}:{start.isoformat()}",
                            pricing.waiver_for(schedule, FeeType.CARD_RECURRING, facts.get(c["id"], {})))
                           for c in cards]
                done += await _charge(conn, ledger, targets, program_id=program["program_id"],
                                      schedule_id=schedule_id, fee_type=FeeType.CARD_RECURRING,
                                      amount=schedule.card_recurring.amount, currency=program["currency"])
    return done


async def run_fee_worker(pool: asyncpg.Pool, ledger: Ledger, interval: float, clock) -> None:
    """Charge recurring fees and collect unpaid ones every `interval` seconds, surviving errors."""
    async def one_pass() -> str | None:
        charged = await charge_recurring(pool, ledger, clock())
        collected = await collect_all(pool, ledger)
        return f"{len(charged)} recurring charged, {collected} unpaid collected" if charged or collected else None

    await every(interval, one_pass, "fee pass")


REVENUE_BY_FEE_TYPE = """
    SELECT fee_type,
           coalesce(sum(amount) FILTER (WHERE state IN ('PAID', 'REFUNDED')), 0) AS paid,
           count(*) FILTER (WHERE state IN ('PAID', 'REFUNDED')) AS paid_count,
           coalesce(sum(amount) FILTER (WHERE state = 'UNPAID'), 0) AS unpaid,
           count(*) FILTER (WHERE state = 'UNPAID') AS unpaid_count,
           count(*) FILTER (WHERE state = 'WAIVED') AS waived_count,
           coalesce(sum(amount) FILTER (WHERE state = 'REFUNDED'), 0) AS refunded
    FROM fee_charges WHERE program_id = $1 GROUP BY fee_type ORDER BY fee_type"""

# The revenue account is credit-normal: posted is what was collected, pending what open
# authorizations hold for it.
REVENUE_ACCOUNT = """
    SELECT credits_posted - debits_posted AS posted, credits_pending AS held
    FROM accounts WHERE id = $1"""


async def revenue_of(conn: asyncpg.Connection, program_id: uuid.UUID,
                     currency: str) -> tuple[list[asyncpg.Record], asyncpg.Record | None]:
    """A program's charges summed by fee type, and its revenue account's posted and held money."""
    rows = await conn.fetch(REVENUE_BY_FEE_TYPE, program_id)
    account = await conn.fetchrow(REVENUE_ACCOUNT, pricing.fee_revenue_account(program_id, currency))
    return rows, account
