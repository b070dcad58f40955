"""Authorization throughput: a naive baseline against the micro-batching engine.

    python -m bench.auth_bench [--seconds N] [--only http_hot,auth_under_abuse]

Scenarios (each gets its share of N seconds, SCENARIO_WEIGHTS; `--only` runs some of them):
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
- auth_under_abuse: http_hot's load in an open loop at half its closed-loop rate while other
  clients (bench.abuse_load, their own process) flood administrator sign-in with wrong passwords
  and send JWE requests: {"p99_ms", "p50_ms", "stand_in_share", "abuse_requests_per_s",
  "abuse_refused_share"}. Nothing else the service does may push an authorization past its deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import uvloop

from antaca_auth.authorization import AuthorizationRequest, TxType
from antaca_auth.cardkeys import CardKeys
from antaca_auth.database import create_pool
from antaca_auth.engine import AuthorizationEngine, EngineSettings
from antaca_auth.settlement import settlement_account
from antaca_auth.ledger import Ledger
from antaca_auth.transfers import Transfer, TransferKind
from bench.cards import setup  # setup: tests use it too
from bench.database import bench_database
from bench.stats import CpuMeter, closed_then_open, postmaster_pid

N_PROGRAMS = 100
CALLERS = 1024  # concurrent in-process callers (a network sends many at once)
NAIVE_CALLERS = 16
# auth_under_abuse: the issue measured eight wrong-password clients; JWE clients come on top.
SIGN_IN_ABUSERS = 8
JWE_ABUSERS = 4
ABUSED_RATE_SHARE = 0.5  # of http_hot's closed-loop rate: a busy network, not a saturated server


def request(card: dict) -> AuthorizationRequest:
    return AuthorizationRequest(message_id=uuid.uuid4().hex, pan=card["pan"], expiry=card["expiry"],
                                amount=random.randint(100, 5000), currency="EUR", type=TxType.ECOM,
                                cvc2=card["cvc2"], mcc="5411", merchant_name="bench")


async def measured(call, cards: list[dict], seconds: float, callers: int) -> dict:
    """Throughput closed-loop, latency open-loop at 80% of it (bench.stats.closed_then_open)."""
    async def one() -> None:
        assert await call(random.choice(cards))

    return await closed_then_open(one, seconds, callers)


@contextlib.asynccontextmanager
async def serving(dsn: str, pool, keys: CardKeys, cards: list[dict]) -> AsyncIterator[Served]:
    """`antaca serve` on this database in a child process, and a network certificate to load it."""
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
        yield Served(work, ca.cert_path, f"http://127.0.0.1:{port}",
                     f"https://127.0.0.1:{tls_port}")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class Served:
    work: Path
    ca_path: Path
    http: str
    https: str

    async def load(self, seconds: float, *options: str) -> dict:
        """Network authorizations from a client process (bench.http_load) with these options."""
        client = await self.connected_load(seconds, *options)
        out, _ = await client.communicate()
        return json.loads(out.decode().strip().splitlines()[-1])

    async def connected_load(self, seconds: float, *options: str) -> asyncio.subprocess.Process:
        """The client process, started; with `--on-go`, connected and waiting for a stdin line."""
        w = self.work
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.http_load", f"{self.https}/network/authorizations",
            str(w / "net.crt"), str(w / "net.key"), str(self.ca_path), str(w / "cards.json"),
            str(seconds), *options, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        if "--on-go" in options:
            assert (await client.stdout.readline()).strip() == b"connected"
        return client


async def over_http(dsn: str, pool, keys: CardKeys, cards: list[dict], seconds: float) -> dict:
    """Serve on this database in a child process and load it from another one."""
    async with serving(dsn, pool, keys, cards) as served:
        return await served.load(seconds)


async def under_abuse(dsn: str, pool, keys: CardKeys, cards: list[dict], seconds: float) -> dict:
    """http_hot's load at half its closed-loop rate while abusive clients flood the heavy paths.

    A third of the time each: the closed loop sets the rate; the open loop at ABUSED_RATE_SHARE of
    it runs alone (the reference, printed); then again while bench.abuse_load's clients, in their
    own process, sign in with wrong passwords and send JWE requests.
    """
    from antaca_api.admins import create_admin_user
    from antaca_api.routing import Role

    email = f"abused-{uuid.uuid4().hex[:8]}@bench.example"
    async with pool.acquire() as conn:
        await create_admin_user(conn, email, uuid.uuid4().hex, Role.ADMIN)
    async with serving(dsn, pool, keys, cards) as served:
        closed = await served.load(seconds / 3, "--closed")
        rate = str(closed["auths_per_s"] * ABUSED_RATE_SHARE)
        alone = await served.load(seconds / 3, "--rate", rate)
        # The load's connections are open before the abuse starts (a swamped server would
        # otherwise still be in their TLS handshakes when the abuse ends), and its schedule
        # starts once the abusers run.
        client = await served.connected_load(seconds / 3, "--rate", rate, "--on-go")
        abusers = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.abuse_load", served.http, email, str(SIGN_IN_ABUSERS),
            str(JWE_ABUSERS), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert (await abusers.stdout.readline()).strip() == b"ready"
        client.stdin.write(b"go\n")
        await client.stdin.drain()
        answers = asyncio.create_task(client.stdout.read())
        try:
            # The abuse lasts as long as the load's schedule, not as long as a swamped server
            # takes to work through the backlog it left.
            await asyncio.wait({answers}, timeout=seconds / 3)
        finally:
            abusers.stdin.close()
            out = await abusers.stdout.read()
            await abusers.wait()
        load = json.loads((await answers).decode().strip().splitlines()[-1])
        await client.wait()
    abuse = json.loads(out.decode().strip().splitlines()[-1])
    print("auth_under_abuse closed loop", json.dumps(closed), "open loop alone", json.dumps(alone),
          "open loop under abuse", json.dumps(load), "abuse", json.dumps(abuse), flush=True)
    return {"p99_ms": load["p99_ms"], "p50_ms": load["p50_ms"],
            "stand_in_share": load["stand_in_share"],
            "abuse_requests_per_s": abuse["abuse_requests_per_s"],
            "abuse_refused_share": abuse["abuse_refused_share"]}


# Each scenario's share of --seconds, relative (the HTTP ones run their closed and open loops in
# half the share of the in-process ones, as before auth_under_abuse existed).
SCENARIO_WEIGHTS = {"naive_hot": 1.0, "engine_hot": 1.0, "http_hot": 0.5, "auth_under_abuse": 1.0,
                    "engine_spread": 1.0, "http_spread": 0.5}


async def main(seconds: float, only: set[str]) -> dict:
    keys = CardKeys.generate()
    figures: dict = {}
    share = seconds / sum(SCENARIO_WEIGHTS[name] for name in only)
    for name, programs in (("hot", 1), ("spread", N_PROGRAMS)):
        wanted = {s for s in only if s.endswith(name)}
        if name == "hot" and "auth_under_abuse" in only:
            wanted.add("auth_under_abuse")
        if not wanted:
            continue
        async with bench_database() as dsn:
            pool = await create_pool(dsn, min_size=4, max_size=32)
            ledger = Ledger(pool)
            cards = await setup(pool, ledger, keys, programs)
            if "naive_hot" in wanted:
                figures["naive_hot"] = await measured(naive_call(ledger), cards, share,
                                                      NAIVE_CALLERS)
                print("naive_hot", json.dumps(figures["naive_hot"]), flush=True)
            if f"engine_{name}" in wanted:
                figures[f"engine_{name}"] = await in_process(pool, ledger, keys, cards, name, share)
            if f"http_{name}" in wanted:
                figures[f"http_{name}"] = await over_http(dsn, pool, keys, cards, share / 2)
                print(f"http_{name}", json.dumps(figures[f"http_{name}"]), flush=True)
            if "auth_under_abuse" in wanted:
                figures["auth_under_abuse"] = await under_abuse(dsn, pool, keys, cards, share)
                print("auth_under_abuse", json.dumps(figures["auth_under_abuse"]), flush=True)
            await pool.close()
    if "engine_hot" in figures and "naive_hot" in figures:
        figures["engine_vs_naive"] = round(figures["engine_hot"]["auths_per_s"]
                                           / figures["naive_hot"]["auths_per_s"], 1)
    return figures


def naive_call(ledger: Ledger):
    """One database transaction per authorization: the deposit charge and the user hold, linked."""
    async def naive(card: dict) -> bool:
        amount = random.randint(100, 5000)
        hold = [Transfer(id=uuid.uuid4(), kind=TransferKind.PENDING, code=10,
                         debit_account_id=card["deposit"],
                         credit_account_id=settlement_account("EUR"),
                         amount=amount, currency="EUR", timeout=86400, linked=True),
                Transfer(id=uuid.uuid4(), kind=TransferKind.PENDING, code=11,
                         debit_account_id=card["balance"], credit_account_id=card["deposit"],
                         amount=amount, currency="EUR", timeout=86400)]
        return all(r.ok for r in await ledger.create_transfers(hold))

    return naive


async def in_process(pool, ledger: Ledger, keys: CardKeys, cards: list[dict], name: str,
                     seconds: float) -> dict:
    """The engine called in this process by CALLERS callers, and the CPU each authorization cost."""
    engine = AuthorizationEngine(pool, ledger, keys, EngineSettings(batch_size_max=512,
                                                                    batch_wait_seconds=0.002, writers=4))
    await engine.start()
    network = uuid.uuid4()
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO networks (id, name) VALUES ($1, $2)", network,
                           f"bench-{name}")
        server = await postmaster_pid(conn)
    with CpuMeter(server) as cpu:
        async def via_engine(card: dict) -> bool:
            cpu.ops += 1
            return (await engine.authorize(network, request(card))).decision == "APPROVED"

        figures = await measured(via_engine, cards, seconds, CALLERS)
    print(f"engine_{name}", json.dumps(figures), flush=True)
    # Where the CPU goes: this process (callers and engine) and PostgreSQL, per authorization.
    print(f"engine_{name} cpu per authorization", json.dumps(cpu.per_op_us()), flush=True)
    await engine.stop()
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="total measuring time (default 60)")
    parser.add_argument("--only", default=",".join(SCENARIO_WEIGHTS),
                        help="comma-separated scenarios to run (default: all): "
                             + ", ".join(SCENARIO_WEIGHTS))
    args = parser.parse_args()
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    if not only or only - set(SCENARIO_WEIGHTS):
        parser.error(f"--only takes some of: {', '.join(SCENARIO_WEIGHTS)}")
    print(json.dumps(uvloop.run(main(args.seconds, only))))
