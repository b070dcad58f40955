"""Authorization throughput: a naive baseline against the micro-batching engine.

    python -m bench.auth_bench [--seconds N]

Scenarios (each gets an equal share of N seconds):
- naive_hot: one database transaction per authorization (the deposit and user holds as one
  linked ledger call), so every authorization takes the partner deposit's row lock in turn;
- engine_hot: in-process engine calls, one DEPOSIT-model program whose deposit account takes
  every authorization, spread over 10,000 cards;
- engine_spread: the same over 100 programs (100 partners, 100 deposit accounts).
Durable PostgreSQL (synchronous_commit=on). The last line is one JSON object. In every scenario
the throughput comes from a closed loop and the latency from an open loop at 80% of that throughput
(bench.stats.closed_then_open): closed-loop latency at saturation only restates the number of callers.
- http_hot, http_spread: end to end over HTTPS (mutual TLS) to `antaca serve` running in its
  own process, from a client process (bench.http_load): closed loop for throughput, open loop
  at 80% of it for latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from pathlib import Path

import uvloop

from antaca_auth.accounts import AccountKind, NewAccount
from antaca_auth.authorization import AuthorizationRequest, TxType
from antaca_auth.cardkeys import CardKeys
from antaca_auth.database import create_pool
from antaca_auth.engine import AuthorizationEngine, EngineSettings
from antaca_auth.settlement import settlement_account
from antaca_auth.ledger import Ledger
from antaca_auth.pans import generate_pan
from antaca_auth.transfers import Transfer, TransferKind
from bench.database import bench_database
from bench.stats import CpuMeter, closed_then_open

N_CARDS = 10_000
N_PROGRAMS = 100
CALLERS = 1024  # concurrent in-process callers (a network sends many at once)
NAIVE_CALLERS = 16


async def setup(pool, ledger: Ledger, keys: CardKeys, programs: int, n_cards: int = N_CARDS) -> list[dict]:
    """Partners with funded deposits, programs, customers with funded balances and ACTIVE cards."""
    partners = [uuid.uuid4() for _ in range(programs)]
    bank = uuid.uuid4()
    await ledger.create_accounts([NewAccount(id=bank, currency="EUR", kind=AccountKind.EXTERNAL_FUNDING),
                                  NewAccount(id=settlement_account("EUR"), currency="EUR",
                                             kind=AccountKind.NETWORK_SETTLEMENT)])
    deposits = {p: uuid.uuid4() for p in partners}
    program_ids = {p: uuid.uuid4() for p in partners}
    async with pool.acquire() as conn:
        await conn.executemany("INSERT INTO partners (id, name) VALUES ($1, 'bench')", [(p,) for p in partners])
        await ledger.create_accounts([NewAccount(id=d, currency="EUR", kind=AccountKind.PARTNER_DEPOSIT,
                                                 debits_must_not_exceed_credits=True) for d in deposits.values()])
        await conn.executemany(
            "INSERT INTO partner_accounts (partner_id, currency, kind, account_id) VALUES ($1, 'EUR', 'partner_deposit', $2)",
            list(deposits.items()))
        await conn.executemany(
            """INSERT INTO card_programs (id, partner_id, name, bin_prefix, pan_length, currency, processor,
                   funding_model, validity_months) VALUES ($1, $2, 'bench', '535522', 16, 'EUR', 'simulated',
                   'DEPOSIT', 36)""", [(program_ids[p], p) for p in partners])
    await ledger.create_transfers([Transfer(id=uuid.uuid4(), code=2, debit_account_id=bank, credit_account_id=d,
                                            amount=10**15, currency="EUR") for d in deposits.values()])
    cards = []
    pans: set[str] = set()  # random draws collide now and then (birthday bound): keep them unique
    for start in range(0, n_cards, 1000):
        chunk = []
        for i in range(start, min(n_cards, start + 1000)):
            partner = partners[i % programs]
            pan = generate_pan("535522", 16)
            while pan in pans:
                pan = generate_pan("535522", 16)
            pans.add(pan)
            chunk.append({"partner": partner, "program": program_ids[partner], "customer": uuid.uuid4(),
                          "balance": uuid.uuid4(), "card": uuid.uuid4(), "pan": pan, "expiry": "3012"})
        await ledger.create_accounts([NewAccount(id=c["balance"], currency="EUR", kind=AccountKind.USER_BALANCE,
                                                 debits_must_not_exceed_credits=True) for c in chunk])
        await ledger.create_transfers([Transfer(id=uuid.uuid4(), code=1, debit_account_id=bank,
                                                credit_account_id=c["balance"], amount=10**12, currency="EUR")
                                       for c in chunk])
        async with pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                """INSERT INTO customers (id, partner_id, external_id, first_name, last_name, email, phone,
                       birth_date, address, country, kyc_status)
                   VALUES ($1, $2, $3, 'B', 'B', 'b@b.io', '+48123456789', '1990-01-01', '{}', 'PL', 'VERIFIED')""",
                [(c["customer"], c["partner"], str(c["customer"])) for c in chunk])
            await conn.executemany(
                "INSERT INTO balances (id, partner_id, customer_id, account_id, currency) VALUES ($1, $2, $3, $1, 'EUR')",
                [(c["balance"], c["partner"], c["customer"]) for c in chunk])
            rows = []
            for c in chunk:
                key_id, sealed = keys.encrypt_pan(c["card"], c["pan"])
                rows.append((c["card"], c["program"], c["partner"], c["balance"], c["customer"], key_id, sealed,
                             keys.fingerprint(c["pan"]), c["pan"][:6], c["pan"][-4:], c["expiry"]))
            await conn.executemany(
                """INSERT INTO cards (id, program_id, partner_id, balance_id, customer_id, kind, state, pan_key_id,
                       pan_ciphertext, pan_fingerprint, bin, last4, expiry)
                   VALUES ($1, $2, $3, $4, $5, 'VIRTUAL', 'ACTIVE', $6, $7, $8, $9, $10, $11)""", rows)
        for c in chunk:
            c["cvc2"] = keys.cvc2(c["pan"], c["expiry"], 0)
            c["deposit"] = deposits[c["partner"]]
        cards.extend(chunk)
    return cards


def request(card: dict) -> AuthorizationRequest:
    return AuthorizationRequest(message_id=uuid.uuid4().hex, pan=card["pan"], expiry=card["expiry"],
                                amount=random.randint(100, 5000), currency="EUR", type=TxType.ECOM,
                                cvc2=card["cvc2"], mcc="5411", merchant_name="bench")


async def measured(call, cards: list[dict], seconds: float, callers: int) -> dict:
    """Throughput closed-loop, latency open-loop at 80% of it (bench.stats.closed_then_open)."""
    async def one() -> None:
        assert await call(random.choice(cards))

    return await closed_then_open(one, seconds, callers)


async def over_http(dsn: str, pool, keys: CardKeys, cards: list[dict], seconds: float) -> dict:
    """Serve on this database in a child process and load it from another one."""
    from antaca_api.pki import CertificateAuthority, issue_client_certificate
    from tests.api_harness import free_port, make_csr

    work = Path(tempfile.mkdtemp(prefix="antaca-http-bench-"))
    (work / "card-keys.json").write_text(keys.to_json())
    ca, _ = CertificateAuthority.load_or_create(work)
    network = uuid.uuid4()
    csr, key_pem = make_csr()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO networks (id, name) VALUES ($1, $2)", network, f"http-{network.hex}")
        issued = await issue_client_certificate(conn, ca, csr, "network", network)
    (work / "net.crt").write_text(issued.pem)
    (work / "net.key").write_bytes(key_pem)
    (work / "cards.json").write_text(json.dumps([{k: c[k] for k in ("pan", "expiry", "cvc2")} for c in cards]))
    port, tls_port = free_port(), free_port()
    env = dict(os.environ, ANTACA_DATABASE_URL=dsn, ANTACA_KEY_DIR=str(work), ANTACA_PORT=str(port),
               ANTACA_TLS_PORT=str(tls_port))
    server = subprocess.Popen([sys.executable, "-m", "antaca_api.cli", "serve"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    break
            except OSError:
                await asyncio.sleep(0.1)
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.http_load", f"https://127.0.0.1:{tls_port}/network/authorizations",
            str(work / "net.crt"), str(work / "net.key"), str(ca.cert_path), str(work / "cards.json"),
            str(seconds), stdout=asyncio.subprocess.PIPE)
        out, _ = await client.communicate()
        return json.loads(out.decode().strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


async def main(seconds: float) -> dict:
    keys = CardKeys.generate()
    figures: dict = {}
    share = seconds / 4
    for name, programs in (("hot", 1), ("spread", N_PROGRAMS)):
        async with bench_database() as dsn:
            pool = await create_pool(dsn, min_size=4, max_size=32)
            ledger = Ledger(pool)
            cards = await setup(pool, ledger, keys, programs)
            if programs == 1:
                async def naive(card: dict) -> bool:
                    amount = random.randint(100, 5000)
                    hold = [Transfer(id=uuid.uuid4(), kind=TransferKind.PENDING, code=10,
                                     debit_account_id=card["deposit"], credit_account_id=settlement_account("EUR"),
                                     amount=amount, currency="EUR", timeout=86400, linked=True),
                            Transfer(id=uuid.uuid4(), kind=TransferKind.PENDING, code=11,
                                     debit_account_id=card["balance"], credit_account_id=card["deposit"],
                                     amount=amount, currency="EUR", timeout=86400)]
                    return all(r.ok for r in await ledger.create_transfers(hold))

                figures["naive_hot"] = await measured(naive, cards, share, NAIVE_CALLERS)
                print("naive_hot", json.dumps(figures["naive_hot"]), flush=True)
            engine = AuthorizationEngine(pool, ledger, keys, EngineSettings(batch_size_max=512, batch_wait_seconds=0.002,
                                                                                  writers=4))
            await engine.start()
            network = uuid.uuid4()
            async with pool.acquire() as conn:
                await conn.execute("INSERT INTO networks (id, name) VALUES ($1, $2)", network, f"bench-{name}")

            with CpuMeter() as cpu:
                async def via_engine(card: dict) -> bool:
                    cpu.ops += 1
                    return (await engine.authorize(network, request(card))).decision == "APPROVED"

                figures[f"engine_{name}"] = await measured(via_engine, cards, share, CALLERS)
            print(f"engine_{name}", json.dumps(figures[f"engine_{name}"]), flush=True)
            # Where the CPU goes: this process (callers and engine) and PostgreSQL, per authorization.
            print(f"engine_{name} cpu per authorization", json.dumps(cpu.per_op_us()), flush=True)
            await engine.stop()
            figures[f"http_{name}"] = await over_http(dsn, pool, keys, cards, share / 2)
            print(f"http_{name}", json.dumps(figures[f"http_{name}"]), flush=True)
            await pool.close()
    figures["engine_vs_naive"] = round(figures["engine_hot"]["auths_per_s"] / figures["naive_hot"]["auths_per_s"], 1)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="total measuring time (default 60)")
    args = parser.parse_args()
    print(json.dumps(uvloop.run(main(args.seconds))))
