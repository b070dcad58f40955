"""Summary balances: the admin figures equal the ledger recomputed from its transfers, per partner too."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections import defaultdict

import asyncpg
import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from antaca_api import summaries
from antaca_api.balances import partner_account
from antaca_api.routing import Role
from antaca_auth.accounts import AccountKind, NewAccount
from antaca_auth.codes import TransferCode
from antaca_auth.database import create_pool
from antaca_auth.ledger import Ledger
from antaca_auth.transfers import Transfer, TransferKind
from antaca_auth.verify import verify_ledger
from tests.api_harness import bearer, pair_device, register_customer
from tests.integration.test_balances import open_balance, reload

K = TransferKind
ADDRESS = {"line1": "Main 1", "city": "Warsaw", "postalCode": "00-001", "country": "PL"}


# --- the expected figures, recomputed from the transfers -------------------------------------


async def recomputed_counters(conn: asyncpg.Connection) -> dict[uuid.UUID, list[int]]:
    """Each account's [debits_posted, credits_posted, debits_pending, credits_pending] from the transfers alone."""
    rows = await conn.fetch("SELECT id, kind, debit_account_id, credit_account_id, amount, pending_id FROM transfers")
    resolved = {r["pending_id"] for r in rows if r["pending_id"] is not None}
    counters: dict[uuid.UUID, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in rows:
        if r["kind"] in ("single", "post_pending"):
            counters[r["debit_account_id"]][0] += r["amount"]
            counters[r["credit_account_id"]][1] += r["amount"]
        elif r["kind"] == "pending" and r["id"] not in resolved:
            counters[r["debit_account_id"]][2] += r["amount"]
            counters[r["credit_account_id"]][3] += r["amount"]
    return counters


async def expected(conn: asyncpg.Connection, partner_id: uuid.UUID | None = None) -> dict:
    """The summaries' wire form, built from the transfers (not from the accounts' counters)."""
    counters = await recomputed_counters(conn)
    owner = {r["account_id"]: r["partner_id"] for r in await conn.fetch(
        "SELECT account_id, partner_id FROM balances UNION ALL SELECT account_id, partner_id FROM partner_accounts")}
    accounts = await conn.fetch("SELECT id, kind, currency FROM accounts")
    zero = {"posted": 0, "available": 0}
    by_currency: dict[str, dict] = {}
    for a in accounts:
        if a["kind"] not in ("user_balance", "corporate_balance", "partner_deposit", "partner_credit"):
            continue
        if partner_id is not None and owner.get(a["id"]) != partner_id:
            continue
        dp, cp, dpe, _ = counters[a["id"]]
        posted, available = cp - dp, cp - dp - dpe  # all four kinds are credit-normal
        s = by_currency.setdefault(a["currency"], {
            "currency": a["currency"],
            "users": {"posted": 0, "available": 0, "customers": 0, "corporations": 0, "count": 0},
            "partners": {"deposit": dict(zero), "credit": dict(zero)}, "wallet": dict(zero)})
        if a["kind"] in ("user_balance", "corporate_balance"):
            part = s["users"]
            part["count"] += 1
            part["customers" if a["kind"] == "user_balance" else "corporations"] += posted
        else:
            part = s["partners"]["deposit" if a["kind"] == "partner_deposit" else "credit"]
        part["posted"] += posted
        part["available"] += available
        s["wallet"]["posted"] += posted
        s["wallet"]["available"] += available
    return {"items": [by_currency[c] for c in sorted(by_currency)]}


# --- through the API --------------------------------------------------------------------------


async def get_json(api, path: str, token: str) -> tuple[int, dict]:
    async with api.client().get(f"{api.http}{path}", headers=bearer(token)) as r:
        return r.status, await r.json()


async def corporate_balance(api, admin: str, partner, currency: str) -> dict:
    async with partner.post(f"{api.https}/lifecycle/v1/corporations", json={
            "name": "Acme", "registrationNumber": uuid.uuid4().hex[:8], "country": "PL", "address": ADDRESS}) as r:
        assert r.status == 201, await r.text()
        corporation = (await r.json())["dcCorporationId"]
    async with api.client().post(f"{api.http}/admin/corporations/{corporation}/kyb", json={"status": "APPROVED"},
                                 headers=bearer(admin)) as r:
        assert r.status == 200, await r.text()
    async with partner.post(f"{api.https}/secure/balances",
                            json={"dcCorporationId": corporation, "currency": currency}) as r:
        assert r.status == 201, await r.text()
        return await r.json()


async def move(ledger: Ledger, kind: K, amount: int | None, currency: str, dr=None, cr=None, pending=None) -> uuid.UUID:
    transfer_id = uuid.uuid4()
    (result,) = await ledger.create_transfers([Transfer(
        id=transfer_id, kind=kind, debit_account_id=dr, credit_account_id=cr, amount=amount, currency=currency,
        pending_id=pending, code=TransferCode.CARD_PAYMENT)])
    assert result.ok, result
    return transfer_id


async def partner_money(api, partner_id: str, kind: AccountKind, currency: str, amount: int) -> uuid.UUID:
    """The partner's deposit or credit account, loaded from its external funding account."""
    ledger, pid = api.services.ledger, uuid.UUID(partner_id)
    async with api.services.pool.acquire() as conn, conn.transaction():
        account = await partner_account(conn, ledger, pid, currency, kind)
        funding = await partner_account(conn, ledger, pid, currency, AccountKind.EXTERNAL_FUNDING)
    (result,) = await ledger.create_transfers([Transfer(
        id=uuid.uuid4(), debit_account_id=funding, credit_account_id=account, amount=amount, currency=currency,
        code=TransferCode.PARTNER_RELOAD)])
    assert result.ok, result
    return account


async def account_of(api, balance_id: str) -> uuid.UUID:
    return await api.services.pool.fetchval("SELECT account_id FROM balances WHERE id = $1", uuid.UUID(balance_id))


async def test_summaries_equal_the_ledger_recomputed_from_transfers(api):
    admin = await api.admin_token()
    a_id, partner_a = await api.partner(admin)
    b_id, partner_b = await api.partner(admin)
    ledger = api.services.ledger
    network = {c: uuid.uuid4() for c in ("EUR", "USD")}
    await ledger.create_accounts([NewAccount(id=i, currency=c, kind=AccountKind.NETWORK_SETTLEMENT)
                                  for c, i in network.items()])

    # Partner A: two customers (EUR, EUR + JPY), a corporation (EUR), a deposit and a credit balance.
    alice = (await register_customer(api, partner_a, verified=True))["customerId"]
    bob = (await register_customer(api, partner_a, verified=True))["customerId"]
    alice_eur = await open_balance(api, partner_a, alice)
    bob_eur, bob_jpy = await open_balance(api, partner_a, bob), await open_balance(api, partner_a, bob, "JPY")
    for customer, balance, amount in ((alice, alice_eur, 10_000), (bob, bob_eur, 2_500), (bob, bob_jpy, 700)):
        status, body = await reload(api, partner_a, customer, balance["balanceId"], amount, f"r-{amount}")
        assert status == 200, body
    corp = await corporate_balance(api, admin, partner_a, "EUR")
    async with api.services.pool.acquire() as conn:
        a_funding = await partner_account(conn, ledger, uuid.UUID(a_id), "EUR", AccountKind.EXTERNAL_FUNDING)
    corp_account = await account_of(api, corp["balanceId"])
    await move(ledger, K.SINGLE, 5_000, "EUR", a_funding, corp_account)
    a_deposit = await partner_money(api, a_id, AccountKind.PARTNER_DEPOSIT, "EUR", 50_000)
    await partner_money(api, a_id, AccountKind.PARTNER_CREDIT, "EUR", 20_000)

    # Partner B: one customer (EUR, USD) and a USD deposit.
    carol = (await register_customer(api, partner_b, verified=True))["customerId"]
    carol_eur, carol_usd = await open_balance(api, partner_b, carol), await open_balance(api, partner_b, carol, "USD")
    for balance, amount in ((carol_eur, 4_000), (carol_usd, 300)):
        status, body = await reload(api, partner_b, carol, balance["balanceId"], amount, "r")
        assert status == 200, body
    b_deposit = await partner_money(api, b_id, AccountKind.PARTNER_DEPOSIT, "USD", 9_000)

    # Spending, open holds, a partial capture and a void.
    alice_acc, bob_acc = await account_of(api, alice_eur["balanceId"]), await account_of(api, bob_eur["balanceId"])
    carol_usd_acc = await account_of(api, carol_usd["balanceId"])
    await move(ledger, K.SINGLE, 1_000, "EUR", alice_acc, network["EUR"])
    await move(ledger, K.PENDING, 2_000, "EUR", alice_acc, network["EUR"])  # stays open
    captured = await move(ledger, K.PENDING, 500, "EUR", bob_acc, network["EUR"])
    await move(ledger, K.POST_PENDING, 300, "EUR", pending=captured)  # 300 posted, 200 released
    await move(ledger, K.PENDING, 1_500, "EUR", a_deposit, network["EUR"])  # stays open
    voided = await move(ledger, K.PENDING, 100, "USD", carol_usd_acc, network["USD"])
    await move(ledger, K.VOID_PENDING, None, "USD", pending=voided)
    await move(ledger, K.PENDING, 50, "USD", b_deposit, network["USD"])  # stays open

    status, whole = await get_json(api, "/admin/summaries", admin)
    assert status == 200, whole
    _, of_a = await get_json(api, f"/admin/partners/{a_id}/summaries", admin)
    _, of_b = await get_json(api, f"/admin/partners/{b_id}/summaries", admin)
    async with api.services.pool.acquire() as conn:
        assert await verify_ledger(conn) == []
        assert whole == await expected(conn)
        assert of_a == await expected(conn, uuid.UUID(a_id))
        assert of_b == await expected(conn, uuid.UUID(b_id))

    # The same figures worked out by hand, so the recomputation above cannot share a mistake.
    eur = whole["items"][0]
    assert [i["currency"] for i in whole["items"]] == ["EUR", "JPY", "USD"]
    assert eur["users"] == {"posted": 10_000 + 2_500 + 5_000 + 4_000 - 1_000 - 300,
                            "available": 20_200 - 2_000, "customers": 15_200, "corporations": 5_000, "count": 4}
    assert eur["partners"] == {"deposit": {"posted": 50_000, "available": 48_500},
                               "credit": {"posted": 20_000, "available": 20_000}}
    assert eur["wallet"] == {"posted": 20_200 + 70_000, "available": 18_200 + 68_500}
    # Partner isolation: A has no USD; B's EUR is carol's alone; A and B add up to the whole.
    assert [i["currency"] for i in of_a["items"]] == ["EUR", "JPY"]
    assert [i["currency"] for i in of_b["items"]] == ["EUR", "USD"]
    assert of_b["items"][0]["users"] == {"posted": 4_000, "available": 4_000, "customers": 4_000,
                                         "corporations": 0, "count": 1}
    assert of_b["items"][0]["partners"]["deposit"] == {"posted": 0, "available": 0}
    assert of_b["items"][1]["partners"]["deposit"] == {"posted": 9_000, "available": 8_950}
    assert of_a["items"][0]["users"]["posted"] + of_b["items"][0]["users"]["posted"] == eur["users"]["posted"]
    assert of_a["items"][0]["wallet"]["available"] + of_b["items"][0]["wallet"]["available"] \
        == eur["wallet"]["available"]


async def test_a_partner_without_money_has_no_figures_and_an_unknown_one_is_404(api):
    admin = await api.admin_token()
    partner_id = await api.new_partner(admin)
    assert await get_json(api, f"/admin/partners/{partner_id}/summaries", admin) == (200, {"items": []})
    assert await get_json(api, "/admin/summaries", admin) == (200, {"items": []})
    for unknown in (uuid.uuid4(), "not-a-uuid"):
        status, body = await get_json(api, f"/admin/partners/{unknown}/summaries", admin)
        assert (status, body["code"]) == (404, "NOT_FOUND")


async def test_every_admin_role_may_read_and_no_other_channel(api):
    for role in Role:
        assert (await get_json(api, "/admin/summaries", await api.admin_token(role)))[0] == 200
    partner_id, partner = await api.partner()
    customer = await register_customer(api, partner, verified=True)
    session = (await pair_device(api, partner, customer["customerId"]))["sessionToken"]
    paths = ("/admin/summaries", f"/admin/partners/{partner_id}/summaries")
    for path in paths:
        async with api.client().get(f"{api.http}{path}") as r:  # no credentials
            assert r.status == 401
        assert (await get_json(api, path, session))[0] == 401  # a customer's session is no admin token
        async with partner.get(f"{api.https}{path}") as r:  # nor is a partner's client certificate
            assert r.status == 401


# --- random movements, compared with the recomputation ------------------------------------------

CURRENCIES = ("EUR", "JPY")
# Per example: two partners, each with a customer and a corporate balance and a deposit and a credit
# account in each currency: 16 accounts that the movements pick from by index.
N_ACCOUNTS = 2 * len(CURRENCIES) * 4

movement = st.tuples(
    st.sampled_from(["fund", "spend", "hold", "post", "void"]),
    st.integers(0, N_ACCOUNTS - 1),
    st.integers(1, 5_000),
)


async def make_world(conn: asyncpg.Connection, ledger: Ledger) -> tuple[list[uuid.UUID], list[tuple], dict]:
    """Two fresh partners with their accounts: (partner ids, [(account, currency, funding)], network per currency)."""
    partners, owned = [uuid.uuid4(), uuid.uuid4()], []
    network = {c: uuid.uuid4() for c in CURRENCIES}
    await ledger.create_accounts_in(conn, [NewAccount(id=i, currency=c, kind=AccountKind.NETWORK_SETTLEMENT)
                                           for c, i in network.items()])
    for pid in partners:
        await conn.execute("INSERT INTO partners (id, name) VALUES ($1, 'P')", pid)
        for currency in CURRENCIES:
            funding = await partner_account(conn, ledger, pid, currency, AccountKind.EXTERNAL_FUNDING)
            for kind in (AccountKind.USER_BALANCE, AccountKind.CORPORATE_BALANCE):
                # As open_balance does: the balance row and its never-negative account share the id.
                owner = uuid.uuid4()
                if kind is AccountKind.USER_BALANCE:
                    await conn.execute(
                        """INSERT INTO customers (id, partner_id, external_id, first_name, last_name, email, phone,
                                                  birth_date, address, country)
                           VALUES ($1, $2, $3, 'A', 'B', 'a@b.c', '+48123456789', '1990-01-01', $4, 'PL')""",
                        owner, pid, str(owner), ADDRESS)
                else:
                    await conn.execute(
                        """INSERT INTO corporations (id, partner_id, name, registration_number, country, address)
                           VALUES ($1, $2, 'C', $3, 'PL', $4)""", owner, pid, str(owner), ADDRESS)
                account = uuid.uuid4()
                await ledger.create_accounts_in(conn, [NewAccount(id=account, currency=currency, kind=kind,
                                                                  debits_must_not_exceed_credits=True)])
                await conn.execute(
                    f"""INSERT INTO balances (id, partner_id, {'customer_id' if kind is AccountKind.USER_BALANCE
                                                              else 'corporation_id'}, account_id, currency)
                        VALUES ($1, $2, $3, $1, $4)""", account, pid, owner, currency)
                owned.append((account, currency, funding))
            for kind in (AccountKind.PARTNER_DEPOSIT, AccountKind.PARTNER_CREDIT):
                owned.append((await partner_account(conn, ledger, pid, currency, kind), currency, funding))
    return partners, owned, network


async def fund_all(ledger: Ledger, owned: list[tuple]) -> None:
    """A first load on every account, so that most generated spending and holds go through."""
    results = await ledger.create_transfers([
        Transfer(id=uuid.uuid4(), code=TransferCode.BALANCE_RELOAD, debit_account_id=funding,
                 credit_account_id=account, amount=5_000, currency=currency) for account, currency, funding in owned])
    assert all(r.ok for r in results), results


async def play(database_url: str, movements: list[tuple[str, int, int]]) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        ledger = Ledger(pool)
        async with pool.acquire() as conn:
            async with conn.transaction():
                partners, owned, network = await make_world(conn, ledger)
            await fund_all(ledger, owned)
            holds: list[tuple[uuid.UUID, int]] = []  # open holds and their amounts
            for op, index, amount in movements:
                account, currency, funding = owned[index]
                transfer = Transfer(id=uuid.uuid4(), code=TransferCode.CARD_PAYMENT, currency=currency, amount=amount,
                                    debit_account_id=account, credit_account_id=network[currency])
                if op == "fund":
                    transfer = msgspec.structs.replace(transfer, debit_account_id=funding, credit_account_id=account)
                elif op == "hold":
                    transfer = msgspec.structs.replace(transfer, kind=K.PENDING)
                elif op in ("post", "void"):
                    if not holds:
                        continue
                    pending, held = holds.pop(index % len(holds))
                    # A post captures part of the hold, or all of it (amount omitted); a void releases it.
                    captured = None if op == "void" or amount % 3 == 0 else 1 + amount % held
                    transfer = Transfer(id=uuid.uuid4(), code=TransferCode.CARD_PAYMENT, pending_id=pending,
                                        kind=K.POST_PENDING if op == "post" else K.VOID_PENDING, amount=captured)
                # Refusals (no funds, a capture above its hold) are part of the game: nothing is written.
                (result,) = await ledger.create_transfers([transfer])
                if op == "hold" and result.ok:
                    holds.append((transfer.id, amount))
            assert await verify_ledger(conn) == []
            whole = summaries.assemble(await summaries.global_totals(conn))
            assert wire(whole) == await expected(conn)
            for pid in partners:
                assert wire(summaries.assemble(await summaries.partner_totals(conn, pid))) == await expected(conn, pid)
            # Every balance and partner account has one partner: all partners together are the whole
            # (this example's and the earlier ones', which share the database).
            every = [t for pid in await conn.fetch("SELECT id FROM partners")
                     for t in await summaries.partner_totals(conn, pid["id"])]
            assert summaries.assemble(every) == whole
    finally:
        await pool.close()


def wire(body: summaries.BalanceSummaries) -> dict:
    """What the endpoint would send."""
    return json.loads(msgspec.json.encode(body))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(movements=st.lists(movement, min_size=5, max_size=30))
def test_random_movements_summaries_match_the_recomputation(database_url, movements):
    asyncio.run(play(database_url, movements))


# --- the benchmark script ---------------------------------------------------------------------


def test_summary_bench_prints_its_figures():
    env = {k: v for k, v in os.environ.items() if k != "ANTACA_DATABASE_URL"}  # its own durable cluster
    done = subprocess.run([sys.executable, "-m", "bench.summary_bench", "--accounts", "2000", "--runs", "3"],
                          check=False, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["accounts"] == 2000 and figures["partners"] == 10
    for name in ("global", "partner_large", "partner_medium", "partner_small"):
        assert 0 < figures[name]["p50_ms"] <= figures[name]["max_ms"], name
    assert figures["partner_large"]["accounts"] > figures["partner_medium"]["accounts"] \
        > figures["partner_small"]["accounts"] > 0
