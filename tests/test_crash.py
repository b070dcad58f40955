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
import pytest

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


async def prepared(database_url: str, tmp_path, n_cards: int):
    """Card keys and a CA in a key folder the server will read, a pool, and funded cards."""
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    card_keys = CardKeys.generate()
    (keys_dir / "card-keys.json").write_text(card_keys.to_json())
    ca, _ = CertificateAuthority.load_or_create(keys_dir)
    pool = await create_pool(database_url, min_size=1, max_size=4)
    cards = await setup(pool, Ledger(pool), card_keys, 1, n_cards=n_cards)
    return keys_dir, ca, pool, cards


async def network_client(pool, ca, tmp_path, name: str) -> tuple[uuid.UUID, ssl.SSLContext]:
    network_id = uuid.uuid4()
    csr, key_pem = make_csr()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO networks (id, name) VALUES ($1, $2)", network_id, name)
        issued = await issue_client_certificate(conn, ca, csr, "network", network_id)
    (tmp_path / f"{name}.crt").write_text(issued.pem)
    (tmp_path / f"{name}.key").write_bytes(key_pem)
    context = ssl.create_default_context(cafile=str(ca.cert_path))
    context.load_cert_chain(tmp_path / f"{name}.crt", tmp_path / f"{name}.key")
    return network_id, context


async def no_hold_behind(conn, network_id: uuid.UUID, message_ids: list[str]) -> None:
    """What was answered declined holds nothing: no approved row, no transfer under its message id."""
    approved = await conn.fetchval(
        """SELECT count(*) FROM authorizations WHERE network_id = $1 AND message_id = ANY($2::text[])
           AND decision = 'APPROVED'""", network_id, message_ids)
    assert approved == 0
    assert await conn.fetchval("SELECT count(*) FROM transfers WHERE reference = ANY($1::text[])", message_ids) == 0


@pytest.mark.parametrize("deadline_ms", [1500, 60], ids=["default_deadline", "short_deadline_with_stand_ins"])
async def test_sigkill_mid_load_loses_no_approval(database_url, tmp_path, deadline_ms):
    keys_dir, ca, pool, cards = await prepared(database_url, tmp_path, 50)
    network_id, context = await network_client(pool, ca, tmp_path, "crash")
    await pool.execute("UPDATE networks SET authorization_deadline_ms = $1", deadline_ms)

    port, tls_port = free_port(), free_port()
    env = dict(os.environ, ANTACA_DATABASE_URL=database_url, ANTACA_KEY_DIR=str(keys_dir), ANTACA_PORT=str(port),
               ANTACA_TLS_PORT=str(tls_port), ANTACA_ISO8583_PORT="0")
    server = start_server(env)
    approved: dict[str, str] = {}  # authorization id -> message id, as the client was told
    declined: list[str] = []  # message ids answered declined (stand-ins among them)
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
                    elif answer.get("decision") == "DECLINED":
                        declined.append(body["messageId"])

            async def hold_up() -> None:
                """Lock the partner deposit now and then: batches wait past short deadlines."""
                while not stop.is_set():
                    async with pool.acquire() as conn, conn.transaction():
                        await conn.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", cards[0]["deposit"])
                        await asyncio.sleep(0.1)
                    await asyncio.sleep(0.1)

            callers = [asyncio.create_task(caller(n)) for n in range(24)]
            if deadline_ms < 1000:
                callers.append(asyncio.create_task(hold_up()))
            await asyncio.sleep(1.5)
            server.send_signal(signal.SIGKILL)  # no shutdown, no flush: whatever was committed is all there is
            server.wait(timeout=30)
            await asyncio.sleep(0.3)
            stop.set()
            await asyncio.gather(*callers)
        assert len(approved) > 20, "the load never got going"
        if deadline_ms < 1000:
            assert declined, "no payment waited past its deadline"

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
        await no_hold_behind(conn, network_id, declined)
        assert await verify_ledger(conn) == []
    await pool.close()


async def test_sigterm_answers_every_request_in_flight_and_loses_nothing(database_url, tmp_path):
    """SIGTERM with a batch stuck on the partner deposit and the rest queued: the listener closes,
    every request already sent gets an answer (queued ones by stand-in once the grace period is
    over, the stuck batch by its commit), and the process exits cleanly."""
    keys_dir, ca, pool, cards = await prepared(database_url, tmp_path, 20)
    network_id, context = await network_client(pool, ca, tmp_path, "sigterm")
    port, tls_port = free_port(), free_port()
    env = dict(os.environ, ANTACA_DATABASE_URL=database_url, ANTACA_KEY_DIR=str(keys_dir), ANTACA_PORT=str(port),
               ANTACA_TLS_PORT=str(tls_port), ANTACA_ISO8583_PORT="0", ANTACA_AUTHORIZATION_PIPELINE_DEPTH="1",
               ANTACA_AUTHORIZATION_BATCH_SIZE_MAX="8", ANTACA_AUTHORIZATION_SHUTDOWN_GRACE_SECONDS="0.2")
    server = start_server(env)
    url = f"https://127.0.0.1:{tls_port}/network/authorizations"
    try:
        await wait_healthy(port)
        connector = aiohttp.TCPConnector(ssl=context, limit=60)
        async with aiohttp.ClientSession(connector=connector) as client:
            async def health() -> None:
                async with client.get(f"https://127.0.0.1:{tls_port}/health") as r:
                    assert r.status == 200

            await asyncio.gather(*(health() for _ in range(60)))  # 60 connections open, kept alive

            async def pay(n: int) -> tuple[str, dict]:
                card = cards[n % len(cards)]
                body = {"messageId": uuid.uuid4().hex, "pan": card["pan"], "expiry": card["expiry"],
                        "amount": 100, "currency": "EUR", "type": "ECOM", "cvc2": card["cvc2"]}
                async with client.post(url, json=body) as r:
                    assert r.status == 200, await r.text()
                    return body["messageId"], await r.json()

            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", cards[0]["deposit"])
                payments = [asyncio.create_task(pay(n)) for n in range(60)]
                await asyncio.sleep(0.3)  # sent, read, one batch stuck on the deposit, the rest queued
                server.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.4)  # past the grace period: the queue is answered by stand-in
                with pytest.raises(OSError):  # and nothing new is accepted
                    await asyncio.open_connection("127.0.0.1", tls_port)
            answers = await asyncio.gather(*payments)
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()
        server.wait(timeout=30)

    approved = [m for m, a in answers if a["decision"] == "APPROVED"]
    stood_in = [m for m, a in answers if a["responseCode"] == "91" and a["standIn"]]
    assert len(approved) + len(stood_in) == 60
    assert 1 <= len(approved) <= 8  # the stuck batch, committed once the deposit was free
    async with pool.acquire() as conn:
        holds = await conn.fetchval("SELECT count(*) FROM transfers WHERE reference = ANY($1::text[])", approved)
        assert holds == 2 * len(approved)
        await no_hold_behind(conn, network_id, stood_in)
        recorded = await conn.fetchval(
            "SELECT count(*) FROM authorizations WHERE stand_in AND message_id = ANY($1::text[])", stood_in)
        assert recorded == len(stood_in)  # the stand-ins were recorded before the process exited
        assert await verify_ledger(conn) == []
    await pool.close()
