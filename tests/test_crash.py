"""Kill the server (SIGKILL) in the middle of a load of authorizations, restart it, and check that
every approval a client received is in the ledger, that no hold exists without its stored
authorization, and that the ledger verifies."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import time
import uuid

import aiohttp

from antaca_api.pki import CertificateAuthority, issue_client_certificate
from antaca_auth.cardkeys import CardKeys
from antaca_auth.database import create_pool
from antaca_auth.ledger import Ledger
from antaca_auth.verify import verify_ledger
from bench.auth_bench import setup
from tests.api_harness import free_port, make_csr


def start_server(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "antaca_api.cli", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_healthy(port: int) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"http://127.0.0.1:{port}/health") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the server did not come up")


async def test_sigkill_mid_load_loses_no_approval(database_url, tmp_path):
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    card_keys = CardKeys.generate()
    (keys_dir / "card-keys.json").write_text(card_keys.to_json())
    ca, _ = CertificateAuthority.load_or_create(keys_dir)
    pool = await create_pool(database_url, min_size=1, max_size=4)
    cards = await setup(pool, Ledger(pool), card_keys, 1, n_cards=50)
    network_id = uuid.uuid4()
    csr, key_pem = make_csr()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO networks (id, name) VALUES ($1, 'crash')", network_id)
        issued = await issue_client_certificate(conn, ca, csr, "network", network_id)
    (tmp_path / "net.crt").write_text(issued.pem)
    (tmp_path / "net.key").write_bytes(key_pem)
    context = ssl.create_default_context(cafile=str(ca.cert_path))
    context.load_cert_chain(tmp_path / "net.crt", tmp_path / "net.key")

    port, tls_port = free_port(), free_port()
    env = dict(os.environ, ANTACA_DATABASE_URL=database_url, ANTACA_KEY_DIR=str(keys_dir), ANTACA_PORT=str(port),
               ANTACA_TLS_PORT=str(tls_port))
    server = start_server(env)
    approved: dict[str, str] = {}  # authorization id -> message id, as the client was told
    try:
        await wait_healthy(port)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as client:
            stop = asyncio.Event()

            async def caller(n: int) -> None:
                i = 0
                while not stop.is_set():
                    card = cards[(n + i) % len(cards)]
                    i += 1
                    body = {"messageId": uuid.uuid4().hex, "pan": card["pan"], "expiry": card["expiry"],
                            "amount": 100, "currency": "EUR", "type": "ECOM", "cvc2": card["cvc2"]}
                    try:
                        async with client.post(f"https://127.0.0.1:{tls_port}/network/authorizations",
                                               json=body) as r:
                            answer = await r.json()
                    except (aiohttp.ClientError, asyncio.TimeoutError):
                        await asyncio.sleep(0.01)
                        continue
                    if answer.get("decision") == "APPROVED":
                        approved[answer["authorizationId"]] = body["messageId"]

            callers = [asyncio.create_task(caller(n)) for n in range(24)]
            await asyncio.sleep(1.5)
            server.send_signal(signal.SIGKILL)  # no shutdown, no flush: whatever was committed is all there is
            server.wait(timeout=30)
            await asyncio.sleep(0.3)
            stop.set()
            await asyncio.gather(*callers)
        assert len(approved) > 20, "the load never got going"

        server = start_server(env)  # and it comes back
        await wait_healthy(port)
    finally:
        server.kill()
        server.wait(timeout=30)

    async with pool.acquire() as conn:
        stored = {r["id"]: r for r in await conn.fetch(
            "SELECT id, message_id, decision, user_hold_id, deposit_hold_id FROM authorizations")}
        for authorization_id, message_id in approved.items():
            row = stored[uuid.UUID(authorization_id)]
            assert (row["decision"], row["message_id"]) == ("APPROVED", message_id)
            holds = await conn.fetchval("SELECT count(*) FROM transfers WHERE id = ANY($1::uuid[])",
                                        [row["user_hold_id"], row["deposit_hold_id"]])
            assert holds == 2
        orphans = await conn.fetchval(
            """SELECT count(*) FROM transfers t WHERE t.kind = 'pending' AND t.code IN (10, 11)
               AND NOT EXISTS (SELECT 1 FROM authorizations a WHERE t.id IN (a.user_hold_id, a.deposit_hold_id))""")
        assert orphans == 0
        assert await verify_ledger(conn) == []
    await pool.close()
