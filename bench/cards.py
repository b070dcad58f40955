"""The authorization benches' data: partners, programs, funded cards.

`setup` creates the cards (every bench and several tests use it).
"""

from __future__ import annotations

import uuid

import asyncpg

from antaca_auth.accounts import AccountKind, NewAccount
from antaca_auth.cardkeys import CardKeys
from antaca_auth.codes import TransferCode
from antaca_auth.ledger import Ledger
from antaca_auth.pans import generate_pan
from antaca_auth.settlement import settlement_account
from antaca_auth.transfers import Transfer

N_CARDS = 10_000
CHUNK_CARDS = 1000  # cards created per transaction
DEPOSIT_FUNDS_MINOR_UNITS = 10**15
BALANCE_FUNDS_MINOR_UNITS = 10**12


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
