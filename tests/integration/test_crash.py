"""Kill the server (SIGKILL) in the middle of a load of authorizations, restart it, and check that
every approval a client received is in the ledger, that no hold exists without its stored
authorization, and that the ledger verifies."""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import msgspec
import pytest

from antaca_api.pki import CertificateAuthority, issue_client_certificate
from antaca_auth.cardkeys import CardKeys
from antaca_auth.database import create_pool, ensure_database, with_database
from antaca_auth.keyfiles import write_private
from antaca_auth.ledger import Ledger
from antaca_auth.migrations import migrate
from antaca_auth.verify import verify_ledger
from bench.auth_bench import setup
from bench.cards import create_network, prepare_traffic
from bench.traffic import Mix
from tests.api_harness import free_port, make_csr
from tests.durable_cluster import DurableCluster


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
    write_private(keys_dir / "card-keys.json", card_keys.to_json().encode())
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
               ANTACA_TLS_PORT=str(tls_port), ANTACA_ISO8583_PORT="0", ANTACA_METRICS_PORT="0")
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
               ANTACA_TLS_PORT=str(tls_port), ANTACA_ISO8583_PORT="0", ANTACA_METRICS_PORT="0", ANTACA_AUTHORIZATION_PIPELINE_DEPTH="1",
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


# --- SIGKILL of the service and of PostgreSQL, on a durable cluster of the test's own -------------
# The shared cluster runs without fsync and synchronous_commit (conftest.py): a commit there is not
# a promise, and killing it would kill every other test's database. This test starts its own
# durable cluster (tests/durable_cluster.py), pauses every engine transaction between its ledger
# write and COMMIT and between COMMIT and the answers (ANTACA_TEST_FAULT_PAUSE, test only), and
# freezes and kills both processes at a moment it has seen to be in both windows at once.

FAULT_PAUSE_SECONDS = 0.15  # wide enough to be seen by a 10 ms poll, short of the stand-in time
CRASH_CARDS = 200  # the realistic mix needs a few POOR (5 %) and TESTED (1 %) cards
# Each batch takes two pauses, and the hot deposit's lock is held through the first: a few
# batches a second, so many callers and a few seconds give some hundreds of answers, declines
# for funds (5 % of the mix) among them.
CRASH_CALLERS = 64
LOAD_BEFORE_CRASH_SECONDS = 2.5
WINDOWS_WAIT_SECONDS = 15.0
# Once the service is frozen, what it had sent (a COMMIT in the socket) is given this long to
# arrive, so that the state seen next is the state the crash finds.
IN_TRANSIT_SECONDS = 0.05

# A writer that has written its ledger holds and not committed: idle in its transaction (paused
# before COMMIT), with a transaction id and the row lock mode that writing `transfers` takes.
WRITTEN_NOT_COMMITTED = """
    SELECT a.backend_xid::text::bigint FROM pg_stat_activity a
    JOIN pg_locks l ON l.pid = a.pid AND l.relation = 'transfers'::regclass
                   AND l.mode = 'RowExclusiveLock'
    WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
      AND a.state = 'idle in transaction' AND a.backend_xid IS NOT NULL"""


async def realistic_setup(dsn: str, tmp_path) -> tuple:
    """Funded, POOR and TESTED cards with PINs, fees and a USD rate (bench.cards.prepare_traffic),
    a network with the traffic's zone PIN key and a client certificate, and the key folder."""
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    card_keys = CardKeys.generate()
    write_private(keys_dir / "card-keys.json", card_keys.to_json().encode())
    ca, _ = CertificateAuthority.load_or_create(keys_dir)
    pool = await create_pool(dsn, min_size=1, max_size=4)
    ledger = Ledger(pool)
    cards = await setup(pool, ledger, card_keys, 1, n_cards=CRASH_CARDS)
    traffic = await prepare_traffic(pool, ledger, card_keys, cards, Mix.REALISTIC)
    csr, key_pem = make_csr()
    async with pool.acquire() as conn, conn.transaction():
        network_id = await create_network(conn, card_keys, traffic, "durable-crash")
        issued = await issue_client_certificate(conn, ca, csr, "network", network_id)
    (tmp_path / "net.crt").write_text(issued.pem)
    (tmp_path / "net.key").write_bytes(key_pem)
    context = ssl.create_default_context(cafile=str(ca.cert_path))
    context.load_cert_chain(tmp_path / "net.crt", tmp_path / "net.key")
    return keys_dir, pool, traffic, network_id, context


async def send_all(url: str, context: ssl.SSLContext, bodies: list[dict]) -> dict[str, dict]:
    """Send these payments (CRASH_CALLERS at a time) and return every answer by message id."""
    answers: dict[str, dict] = {}
    queue = list(reversed(bodies))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as client:
        async def caller() -> None:
            while queue:
                body = queue.pop()
                async with client.post(url, json=body) as r:
                    assert r.status == 200, await r.text()
                    answers[body["messageId"]] = await r.json()

        await asyncio.gather(*(caller() for _ in range(CRASH_CALLERS)))
    return answers


async def check_ledger_against_answers(conn, network_id: uuid.UUID, bodies: dict[str, dict],
                                       answers: dict[str, dict], cards: list[dict]) -> None:
    """Every answer against the stored authorization and its holds, one by one: an approval has
    its row and pending holds of the answered amounts on the card's accounts (the user's balance
    and the partner deposit for the billing amount, the fee on the user's balance), nothing moved
    them since; a decline has a declined row and no transfer at all."""
    by_pan = {card["pan"]: card for card in cards}
    rows = {r["message_id"]: r for r in await conn.fetch(
        """SELECT message_id, id, decision, response_code, reason, deposit_hold_id, user_hold_id,
                  fee_hold_id FROM authorizations WHERE network_id = $1""", network_id)}
    transfers = {r["id"]: r for r in await conn.fetch(
        """SELECT t.id, t.kind, t.code, t.amount, t.debit_account_id, t.credit_account_id,
                  t.reference, EXISTS (SELECT 1 FROM transfers f WHERE f.pending_id = t.id)
                  AS followed FROM transfers t WHERE t.code IN (10, 11, 23)""")}
    held_for = collections.Counter(t["reference"] for t in transfers.values())
    for message_id, answer in answers.items():
        row = rows[message_id]
        assert (str(row["id"]), row["decision"], row["response_code"], row["reason"]) == (
            answer["authorizationId"], answer["decision"], answer["responseCode"],
            answer["reason"]), message_id
        if answer["decision"] == "DECLINED":
            assert held_for[message_id] == 0, f"declined {message_id} holds money"
            assert (row["user_hold_id"], row["deposit_hold_id"], row["fee_hold_id"]) == (
                None, None, None)
            continue
        card = by_pan[bodies[message_id]["pan"]]
        billed = answer["billingAmount"]
        expected = {
            row["user_hold_id"]: ("pending", 11, billed, card["balance"]),
            row["deposit_hold_id"]: ("pending", 10, billed, card["deposit"]),
        }
        if answer["fee"]:
            expected[row["fee_hold_id"]] = ("pending", 23, answer["fee"], card["balance"])
        else:
            assert row["fee_hold_id"] is None
        for hold_id, (kind, code, amount, debited) in expected.items():
            hold = transfers[hold_id]
            assert (hold["kind"], hold["code"], hold["amount"], hold["debit_account_id"],
                    hold["reference"], hold["followed"]) == (
                kind, code, amount, debited, message_id, False), message_id
        assert held_for[message_id] == len(expected), message_id
    # And no hold of a card payment without an answer that explains it.
    assert sum(held_for.values()) == sum(
        2 + bool(a["fee"]) for a in answers.values() if a["decision"] == "APPROVED")


@pytest.fixture
def cluster_directory():
    """A directory outside pytest's own temporary tree for the durable cluster: PostgreSQL runs as
    another user there (when root), and every pytest session resets `/tmp/pytest-of-<user>` to
    0700, which locked the cluster out of its data mid-test when another session started."""
    directory = Path(tempfile.mkdtemp(prefix="antaca-durable-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


async def test_sigkill_of_service_and_postgres_changes_no_answer(tmp_path, cluster_directory):
    cluster = DurableCluster(cluster_directory / "cluster")
    await cluster.start()
    server = None
    try:
        await ensure_database(cluster.dsn, "antaca")
        dsn = with_database(cluster.dsn, "antaca")
        await migrate(dsn)
        keys_dir, pool, traffic, network_id, context = await realistic_setup(dsn, tmp_path)
        port, tls_port = free_port(), free_port()
        env = dict(os.environ, ANTACA_DATABASE_URL=dsn, ANTACA_KEY_DIR=str(keys_dir),
                   ANTACA_PORT=str(port), ANTACA_TLS_PORT=str(tls_port), ANTACA_METRICS_PORT="0")
        pause = f"before_commit:{FAULT_PAUSE_SECONDS},after_commit:{FAULT_PAUSE_SECONDS}"
        server = start_server(dict(env, ANTACA_TEST_FAULT_PAUSE=pause))
        await wait_healthy(port)
        url = f"https://127.0.0.1:{tls_port}/network/authorizations"

        bodies: dict[str, dict] = {}  # every payment sent before the crash, by message id
        answers: dict[str, dict] = {}  # what the network was told before the crash
        crashed = asyncio.Event()
        seen: dict[str, object] = {}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as client:
            async def caller() -> None:
                while not crashed.is_set():
                    body = msgspec.to_builtins(traffic.payment())
                    bodies[body["messageId"]] = body
                    try:
                        async with client.post(url, json=body) as r:
                            if r.status == 200:
                                answers[body["messageId"]] = await r.json()
                    except (aiohttp.ClientError, asyncio.TimeoutError):
                        await asyncio.sleep(0.01)

            async def in_both_windows(conn) -> tuple[list[int], list[str]] | None:
                """The batches written and not committed, and the messages committed and not
                answered, if there are both."""
                in_flight = [m for m in bodies if m not in answers]
                xids = [r[0] for r in await conn.fetch(WRITTEN_NOT_COMMITTED)]
                committed = [r[0] for r in await conn.fetch(
                    "SELECT message_id FROM authorizations WHERE message_id = ANY($1)",
                    in_flight)]
                return (xids, committed) if xids and committed else None

            async def crash_in_both_windows() -> None:
                """Poll until one batch has written its holds and not committed while another has
                committed and not answered; freeze the service (SIGSTOP: it sends no COMMIT and no
                answer any more), make sure it still is so, then SIGKILL PostgreSQL and it."""
                await asyncio.sleep(LOAD_BEFORE_CRASH_SECONDS)
                deadline = time.monotonic() + WINDOWS_WAIT_SECONDS
                async with pool.acquire() as conn:
                    while time.monotonic() < deadline:
                        if await in_both_windows(conn):
                            server.send_signal(signal.SIGSTOP)
                            await asyncio.sleep(IN_TRANSIT_SECONDS)
                            if found := await in_both_windows(conn):
                                cluster.crash(cluster.freeze())
                                server.kill()
                                seen.update(xids=found[0], committed=found[1])
                                break
                            server.send_signal(signal.SIGCONT)  # a window closed meanwhile
                        await asyncio.sleep(0.01)
                crashed.set()

            callers = [asyncio.create_task(caller()) for _ in range(CRASH_CALLERS)]
            await crash_in_both_windows()
            await asyncio.gather(*callers)
        server.wait(timeout=30)
        assert seen, "the crash never found a batch in each window"
        pool.terminate()  # its connections died with the cluster
        reasons = collections.Counter(a["reason"] for a in answers.values())
        assert reasons["APPROVED"] > 100 and reasons["INSUFFICIENT_FUNDS"] > 0, reasons
        assert not any(a["standIn"] for a in answers.values()), reasons

        await cluster.start()  # crash recovery from the WAL on the same data directory
        assert "database system was not properly shut down" in cluster.log.read_text()
        pool = await create_pool(dsn, min_size=1, max_size=4)
        unanswered = [m for m in bodies if m not in answers]
        async with pool.acquire() as conn:
            # Both windows were really hit. What had committed unanswered survived, and nothing
            # else of the unanswered (the service was frozen when the crash found them).
            survived = await conn.fetch(
                "SELECT message_id FROM authorizations WHERE message_id = ANY($1)", unanswered)
            assert sorted(r[0] for r in survived) == sorted(seen["committed"])
            # The batches written and not committed are gone: aborted, or never on disk at all
            # (their id is not even used yet: recovery found none of their WAL).
            next_xid = await conn.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())")
            for xid in seen["xids"]:
                assert xid >= int(next_xid) or await conn.fetchval(
                    "SELECT pg_xact_status($1::text::xid8)", str(xid)) == "aborted"
        server = start_server(env)  # without the fault pauses: nothing to wait for any more
        await wait_healthy(port)
        replayed = await send_all(url, context, list(bodies.values()))
        server.terminate()
        assert server.wait(timeout=30) == 0

        changed = {m: (a, replayed[m]) for m, a in answers.items() if replayed[m] != a}
        assert not changed, f"{len(changed)} answers changed, e.g. {next(iter(changed.items()))}"
        async with pool.acquire() as conn:
            await check_ledger_against_answers(conn, network_id, bodies, replayed, traffic.cards)
            assert await verify_ledger(conn) == []
        await pool.close()
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait(timeout=30)
        cluster.stop()
