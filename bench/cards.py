"""The authorization benches' data: partners, programs, funded cards, and what a mix needs.

`setup` creates the cards (every bench and several tests use it); `prepare_traffic` gives them the
roles of a mix (bench.traffic) and the database what that mix needs; `create_network` makes the
network that sends the payments, with its zone PIN key.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg

from antaca_auth.accounts import AccountKind, NewAccount
from antaca_auth.cardkeys import CardKeys
from antaca_auth.charges import ensure_revenue_account
from antaca_auth.codes import TransferCode
from antaca_auth.fees import FeeSchedule, TransactionFee
from antaca_auth.ledger import Ledger
from antaca_auth.pans import generate_pan
from antaca_auth.settlement import settlement_account
from antaca_auth.transfers import Transfer
from antaca_auth.zonekeys import store_zone_key
from bench.traffic import (
    AMOUNT_MIN_MINOR_UNITS,
    FOREIGN_CURRENCY,
    HOME_CURRENCY,
    PIN,
    Mix,
    Role,
    Traffic,
)

N_CARDS = 10_000
CHUNK_CARDS = 1000  # cards created per transaction
DEPOSIT_FUNDS_MINOR_UNITS = 10**15
BALANCE_FUNDS_MINOR_UNITS = 10**12
# What a POOR card keeps: less than the smallest payment, so every payment declines for funds.
POOR_BALANCE_MINOR_UNITS = AMOUNT_MIN_MINOR_UNITS // 2
# The realistic mix's fees: e-commerce 1 %, POS a fixed 0.10 plus 0.5 %, conversion 1 %.
FEE_SCHEDULE = FeeSchedule(ecom=TransactionFee(percent_bp=100),
                           pos=TransactionFee(fixed=10, percent_bp=50),
                           currency_conversion_bp=100)
FOREIGN_RATE = Decimal("0.92")  # 1 USD in EUR
RATES_FROM = datetime(2020, 1, 1, tzinfo=UTC)


async def setup(pool, ledger: Ledger, keys: CardKeys, programs: int,
                n_cards: int = N_CARDS) -> list[dict]:
    """Partners with funded deposits, programs, customers with funded balances and ACTIVE cards."""
    partners = [uuid.uuid4() for _ in range(programs)]
    bank = uuid.uuid4()
    await ledger.create_accounts([
        NewAccount(id=bank, currency="EUR", kind=AccountKind.EXTERNAL_FUNDING),
        NewAccount(id=settlement_account("EUR"), currency="EUR",
                   kind=AccountKind.NETWORK_SETTLEMENT)])
    deposits = {p: uuid.uuid4() for p in partners}
    program_ids = {p: uuid.uuid4() for p in partners}
    async with pool.acquire() as conn:
        await conn.executemany("INSERT INTO partners (id, name) VALUES ($1, 'bench')",
                               [(p,) for p in partners])
        await ledger.create_accounts([
            NewAccount(id=d, currency="EUR", kind=AccountKind.PARTNER_DEPOSIT,
                       debits_must_not_exceed_credits=True) for d in deposits.values()])
        await conn.executemany(
            """INSERT INTO partner_accounts (partner_id, currency, kind, account_id)
               VALUES ($1, 'EUR', 'partner_deposit', $2)""", list(deposits.items()))
        await conn.executemany(
            """INSERT INTO card_programs (id, partner_id, name, bin_prefix, pan_length, currency,
                   processor, funding_model, validity_months)
               VALUES ($1, $2, 'bench', '535522', 16, 'EUR', 'simulated', 'DEPOSIT', 36)""",
            [(program_ids[p], p) for p in partners])
    await ledger.create_transfers([
        Transfer(id=uuid.uuid4(), code=TransferCode.PARTNER_RELOAD, debit_account_id=bank,
                 credit_account_id=d, amount=DEPOSIT_FUNDS_MINOR_UNITS, currency="EUR")
        for d in deposits.values()])
    cards = []
    pans: set[str] = set()  # random draws collide now and then (birthday bound): keep them unique
    for start in range(0, n_cards, CHUNK_CARDS):
        chunk = []
        for i in range(start, min(n_cards, start + CHUNK_CARDS)):
            partner = partners[i % programs]
            pan = generate_pan("535522", 16)
            while pan in pans:
                pan = generate_pan("535522", 16)
            pans.add(pan)
            chunk.append({"partner": partner, "program": program_ids[partner],
                          "customer": uuid.uuid4(), "balance": uuid.uuid4(), "card": uuid.uuid4(),
                          "pan": pan, "expiry": "3012"})
        await ledger.create_accounts([
            NewAccount(id=c["balance"], currency="EUR", kind=AccountKind.USER_BALANCE,
                       debits_must_not_exceed_credits=True) for c in chunk])
        await ledger.create_transfers([
            Transfer(id=uuid.uuid4(), code=TransferCode.BALANCE_RELOAD, debit_account_id=bank,
                     credit_account_id=c["balance"], amount=BALANCE_FUNDS_MINOR_UNITS,
                     currency="EUR") for c in chunk])
        async with pool.acquire() as conn, conn.transaction():
            await insert_cards(conn, keys, chunk)
        for c in chunk:
            c["cvc2"] = keys.cvc2(c["pan"], c["expiry"], 0)
            c["deposit"] = deposits[c["partner"]]
        cards.extend(chunk)
    return cards


async def insert_cards(conn: asyncpg.Connection, keys: CardKeys, chunk: list[dict]) -> None:
    """The customers, balances and ACTIVE virtual cards of `chunk` (their accounts exist)."""
    await conn.executemany(
        """INSERT INTO customers (id, partner_id, external_id, first_name, last_name, email, phone,
               birth_date, address, country, kyc_status)
           VALUES ($1, $2, $3, 'B', 'B', 'b@b.io', '+48123456789', '1990-01-01', '{}', 'PL',
                   'VERIFIED')""",
        [(c["customer"], c["partner"], str(c["customer"])) for c in chunk])
    await conn.executemany(
        """INSERT INTO balances (id, partner_id, customer_id, account_id, currency)
           VALUES ($1, $2, $3, $1, 'EUR')""",
        [(c["balance"], c["partner"], c["customer"]) for c in chunk])
    rows = []
    for c in chunk:
        key_id, sealed = keys.encrypt_pan(c["card"], c["pan"])
        rows.append((c["card"], c["program"], c["partner"], c["balance"], c["customer"], key_id,
                     sealed, keys.fingerprint(c["pan"]), c["pan"][:6], c["pan"][-4:], c["expiry"]))
    await conn.executemany(
        """INSERT INTO cards (id, program_id, partner_id, balance_id, customer_id, kind, state,
               pan_key_id, pan_ciphertext, pan_fingerprint, bin, last4, expiry)
           VALUES ($1, $2, $3, $4, $5, 'VIRTUAL', 'ACTIVE', $6, $7, $8, $9, $10, $11)""", rows)


async def prepare_traffic(pool, ledger: Ledger, keys: CardKeys, cards: list[dict],
                          mix: Mix) -> Traffic:
    """The mix's roles on these cards (bench.traffic), and what the realistic mix needs in the
    database: the POOR cards' funds moved out through the ledger, every card's PIN record, a fee
    schedule and its revenue account on every program, and the USD to EUR rate."""
    traffic = Traffic.new(mix, cards)
    if mix is Mix.APPROVE:
        return traffic
    await drain(ledger, traffic.of_role(Role.POOR))
    programs = sorted({c["program"] for c in cards})
    async with pool.acquire() as conn, conn.transaction():
        records = [(c["card"], *keys.new_pin_record(c["card"], PIN)) for c in cards]
        await conn.execute(
            """UPDATE cards c SET pin_salt = v.salt, pin_verification = v.verification
               FROM unnest($1::uuid[], $2::bytea[], $3::bytea[]) AS v (id, salt, verification)
               WHERE c.id = v.id""", *map(list, zip(*records, strict=True)))
        for program in programs:
            await ensure_revenue_account(ledger, conn, program, HOME_CURRENCY)
        await conn.executemany(
            """INSERT INTO fee_schedules (id, program_id, version, effective_from, schedule)
               VALUES ($1, $2, 1, $3, $4)""",
            [(uuid.uuid4(), program, RATES_FROM, FEE_SCHEDULE) for program in programs])
        await conn.execute(
            "INSERT INTO fx_rates (base, quote, rate, effective_from) VALUES ($1, $2, $3, $4)",
            FOREIGN_CURRENCY, HOME_CURRENCY, FOREIGN_RATE, RATES_FROM)
    return traffic


async def drain(ledger: Ledger, cards: list[dict]) -> None:
    """Spend all but POOR_BALANCE_MINOR_UNITS of these cards' balances elsewhere (an outgoing
    transfer to an external account): their counters move as the ledger moves them."""
    if not cards:
        return
    elsewhere = uuid.uuid4()
    await ledger.create_accounts([NewAccount(id=elsewhere, currency=HOME_CURRENCY,
                                             kind=AccountKind.EXTERNAL_FUNDING)])
    results = await ledger.create_transfers([
        Transfer(id=uuid.uuid4(), code=TransferCode.MONEY_TRANSFER, debit_account_id=c["balance"],
                 credit_account_id=elsewhere,
                 amount=BALANCE_FUNDS_MINOR_UNITS - POOR_BALANCE_MINOR_UNITS,
                 currency=HOME_CURRENCY) for c in cards])
    assert all(r.ok for r in results), results


async def create_network(conn: asyncpg.Connection, keys: CardKeys, traffic: Traffic,
                         name: str) -> uuid.UUID:
    """A card network sending the traffic, with the traffic's zone PIN key stored for it."""
    network = uuid.uuid4()
    await conn.execute("INSERT INTO networks (id, name) VALUES ($1, $2)", network, name)
    if traffic.zone_key is not None:
        await store_zone_key(conn, keys, network, traffic.zone_key)
    return network
