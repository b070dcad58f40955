"""The ISO 8583 listener end to end: a network's client (tests/iso8583_client.py, its own encoder)
over mutual TLS against the real engine, follow-ups and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import ssl
import uuid

import pytest

from antaca_api.iso8583 import listener as listener_module
from antaca_api.iso8583.listener import Iso8583Listener
from antaca_auth import engine as engine_module
from antaca_auth.followups import message_lock_key
from antaca_auth.settlement import advice_receivable_account
from tests.api_harness import bearer, listening_socket, make_csr
from tests.integration.test_authorizations import Payments
from tests.iso8583_client import NetworkClient, encode, transmission_time

ACQUIRER = "123456"
EUR = "978"


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


@pytest.fixture
async def listener(api):
    tls = api.ca.server_ssl_context(["127.0.0.1", "localhost"])
    tls.verify_mode = ssl.CERT_REQUIRED
    iso = Iso8583Listener(api.services, ssl_context=tls)
    await iso.start(sock=listening_socket())
    yield iso
    await iso.stop()


class Network(Payments):
    """Payments (a funded card, a network with a zone PIN key) and ISO 8583 connections."""

    _stan = itertools.count(1)

    async def connect(self, listener: Iso8583Listener) -> NetworkClient:
        if not hasattr(self, "tls"):
            csr, key = make_csr()
            async with self.api.client().post(
                    f"{self.api.http}/admin/networks/{self.network_id}/certificates",
                    json={"csr": csr}, headers=bearer(self.w.admin)) as r:
                assert r.status == 201, await r.text()
                cert = (await r.json())["certificate"]
            (self.api.workdir / "iso.crt").write_text(cert)
            (self.api.workdir / "iso.key").write_bytes(key)
            self.tls = ssl.create_default_context(cafile=str(self.api.ca.cert_path))
            self.tls.load_cert_chain(self.api.workdir / "iso.crt", self.api.workdir / "iso.key")
        client = await NetworkClient().connect(listener.port, self.tls)
        self.clients = getattr(self, "clients", []) + [client]
        return client

    def fields(self, amount: int = 1000, processing: str = "000000", **changes) -> dict:
        """A purchase at a terminal with CVC2 in DE48 tag 92; `changes` by field number (f2=...)."""
        stan = str(next(self._stan)).zfill(6)
        expiry = self.card["expiry"][3:] + self.card["expiry"][:2]
        fields = {2: self.card["pan"], 3: processing, 4: str(amount).zfill(12),
                  7: transmission_time(), 11: stan, 12: "120000", 13: "0101", 14: expiry,
                  18: "5411",
                  22: "051", 32: ACQUIRER, 37: ("RRN" + stan).ljust(12, "0"), 41: "TERM0001",
                  42: "MERCHANT0000001", 43: "Shop".ljust(25) + "Warsaw".ljust(13) + "PL",
                  48: "9203" + self.card["cvc2"], 49: EUR}
        for key, value in changes.items():
            number = int(key[1:])
            if value is None:
                fields.pop(number, None)
            else:
                fields[number] = value
        return fields

    @staticmethod
    def original(mti: str, fields: dict) -> str:
        """DE90 naming a message: MTI, STAN, DE7, acquirer (11), forwarding institution (11)."""
        return mti + fields[11] + fields[7] + fields[32].rjust(11, "0") + "0" * 11

    async def done(self):
        for client in getattr(self, "clients", []):
            await client.close()
        await self.assert_clean()


async def test_network_management_and_unknown_messages(api, jwe_key, listener):
    p = await Network().setup(api, jwe_key)
    client = await p.connect(listener)
    for code in ("001", "301", "002"):
        mti, answer = await client.request("0800", {7: transmission_time(), 11: "000901", 70: code})
        assert (mti, answer[39], answer[70], answer[11]) == ("0810", "00", code, "000901")
    mti, answer = await client.request("0300", {11: "000902", 37: "RRN000000902"})
    assert (mti, answer[39]) == ("0310", "12")  # unknown request: its response class, rejected
    client.write_raw(encode("0110", {11: "000903", 39: "00"}))  # an answer no one asked for
    mti, answer = await asyncio.wait_for(client.unmatched.get(), 5)
    assert (mti, answer[39]) == ("0620", "12")
    await p.done()


async def test_approval_and_the_engine_s_codes(api, jwe_key, listener):
    p = await Network().setup(api, jwe_key, user_funds=3000)
    client = await p.connect(listener)
    request = p.fields(amount=1200)
    mti, answer = await client.request("0100", request)
    assert (mti, answer[39], answer[11], answer[37], answer[4]) == (
        "0110", "00", request[11], request[37], request[4])
    assert len(answer[38]) == 6 and 44 not in answer
    assert answer[54] == "0002" + EUR + "C" + "1800".zfill(12)  # available after the hold
    wrong_cvc2 = "000" if p.card["cvc2"] != "000" else "001"
    cases = [
        ({"f2": "5355220000000000"}, "14", None),
        ({"f14": "9901"}, "54", None),
        ({"f48": "9203" + wrong_cvc2}, "N7", None),
        ({"amount": 5000}, "51", None),
        ({"f49": "840"}, "57", None),
        ({"processing": "010000"}, "55", None),  # cash without a PIN block
        ({"f4": "000000000000"}, "13", None),
    ]
    for changes, code, action in cases:
        mti, answer = await client.request("0100", p.fields(**changes))
        assert (mti, answer[39], answer.get(44)) == ("0110", code, action), changes
        assert 38 not in answer
    status, _ = await p.w.app_plain("POST", f"/customers/me/cards/{p.card['cardId']}/lock",
                                    {"reason": 1})
    assert status == 200
    mti, answer = await client.request("0100", p.fields())
    assert (answer[39], answer[44]) == ("41", "2008")  # the action code travels in DE44
    await p.done()


async def test_pin_blocks_in_de52_and_the_third_wrong_pin(api, jwe_key, listener):
    p = await Network().setup(api, jwe_key)
    status, _ = await p.w.app_jwe("POST", f"/customers/me/cards/{p.card['cardId']}/pin",
                                  {"pin": "4821"})
    assert status == 204
    client = await p.connect(listener)
    cash = {"processing": "010000", "f48": None}
    _, answer = await client.request("0100", p.fields(f52=bytes.fromhex(p.pin_block("4821")),
                                                      **cash))
    assert answer[39] == "00"
    codes = []
    for _ in range(3):
        _, answer = await client.request("0100", p.fields(f52=bytes.fromhex(p.pin_block("1357")),
                                                          **cash))
        codes.append((answer[39], answer.get(44)))
    assert codes == [("55", None), ("55", None), ("75", "1006")]
    _, answer = await client.request("0100", p.fields(f52=b"\x01" * 16, **cash))
    assert (answer[39], answer[44]) == ("75", "1006")  # locked (an unreadable block: 81)
    await p.done()


async def test_the_same_message_twice_is_decided_once(api, jwe_key, listener):
    p = await Network().setup(api, jwe_key)
    client = await p.connect(listener)
    request = p.fields(amount=2500)
    first, again = await asyncio.gather(client.request("0100", request),
                                        (await p.connect(listener)).request("0100", request))
    _, repeat = await client.request("0101", request)  # the network's repeat of the same message
    assert first[1][38] == again[1][38] == repeat[38]
    assert (await p.user_account()).available == 7500  # held once
    changed = {**request, 4: "000000000999"}  # the same identity, another payment
    _, answer = await client.request("0100", changed)
    assert answer[39] == "94"
    await p.done()


async def test_pipelined_requests_are_answered_out_of_order(api, jwe_key, listener):
    p = await Network().setup(api, jwe_key, user_funds=100_000)
    client = await p.connect(listener)
    approved = p.fields(amount=100)
    await client.request("0100", approved)
    reversal = p.fields(amount=100, f90=p.original("0100", approved))
    lock_key = message_lock_key(uuid.UUID(p.network_id),
                                reversal[32].rjust(11, "0") + reversal[7] + reversal[11])
    async with api.services.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key)
        held_back = client.send("0400", reversal)  # waits on the message lock we hold
        later = [client.send("0100", p.fields(amount=10)) for _ in range(20)]
        answers = await asyncio.wait_for(asyncio.gather(*later), 10)
        assert all(answer[39] == "00" for _, answer in answers)
        assert not held_back.done()  # answered after the 20 sent behind it
    mti, answer = await asyncio.wait_for(held_back, 10)
    assert (mti, answer[39]) == ("0410", "00")
    await p.done()


async def test_split_and_coalesced_frames(api, jwe_key, listener):
    p = await Network().setup(api, jwe_key, user_funds=100_000)
    client = await p.connect(listener)
    requests = [p.fields(amount=10) for _ in range(10)]
    futures = []
    for request in requests:  # registered, then written as one coalesced chunk
        futures.append(asyncio.get_running_loop().create_future())
        client.waiting[(request[11], request[37])] = futures[-1]
    client.write_raw(b"".join(encode("0100", request) for request in requests))
    assert all(a[39] == "00" for _, a in await asyncio.wait_for(asyncio.gather(*futures), 10))
    split = p.fields(amount=10)
    future = asyncio.get_running_loop().create_future()
    client.waiting[(split[11], split[37])] = future
    for byte in encode("0100", split):  # one byte at a time, flushed each time
        client.write_raw(bytes([byte]))
        await client.writer.drain()
        await asyncio.sleep(0)
    assert (await asyncio.wait_for(future, 10))[1][39] == "00"
    await p.done()


async def test_malformed_messages_get_format_errors_and_broken_framing_closes(api, jwe_key,
                                                                             listener):
    p = await Network().setup(api, jwe_key)
    client = await p.connect(listener)
    _, answer = await client.request("0100", p.fields(f3="00000X"))  # DE3 not numeric
    assert answer[39] == "30"
    _, answer = await client.request("0100", p.fields(f49="97X"))  # DE49 not numeric
    assert answer[39] == "30"
    bad_length = encode("0100", {11: "000777", 37: "RRN000000777", 48: "9203123"})
    assert bad_length[32:35] == b"007"
    client.write_raw(bad_length[:32] + b"099" + bad_length[35:])  # LLLVAR past the message's end
    mti, answer = await asyncio.wait_for(client.unmatched.get(), 5)
    assert (mti, answer[39], answer[11]) == ("0110", "30", "000777")
    client.write_raw(b"\x00\x05" + b"01X0Z")  # too short for an MTI and a bitmap
    mti, answer = await asyncio.wait_for(client.unmatched.get(), 5)
    assert (mti, answer[39]) == ("0620", "30")
    _, answer = await client.request("0800", {7: transmission_time(), 11: "000778", 70: "301"})
    assert answer[39] == "00"  # the connection still serves
    assert listener.statistics()["format_errors"] == 4
    client.write_raw((60_000).to_bytes(2, "big") + b"0100")  # past the limit: framing is broken
    await asyncio.wait_for(client.closed.wait(), 5)
    assert await api.services.pool.fetchval("SELECT count(*) FROM authorizations") == 0
    await p.done()


async def test_reversals_full_and_partial_release_the_hold(api, jwe_key, listener):
    p = await Network().setup(api, jwe_key)
    client = await p.connect(listener)
    first = p.fields(amount=4000)
    await client.request("0100", first)
    assert (await p.user_account()).available == 6000
    partial = p.fields(amount=4000, f90=p.original("0100", first),
                       f95="000000001500" + "0" * 30)  # 1,500 remains: 2,500 released
    mti, answer = await client.request("0400", partial)
    assert (mti, answer[39]) == ("0410", "00")
    assert (await p.user_account()).available == 8500
    _, answer = await client.request("0401", partial)  # the repeat: answered, released once
    assert answer[39] == "00" and (await p.user_account()).available == 8500
    full = p.fields(amount=4000, f90=p.original("0100", first))
    mti, answer = await client.request("0420", full)
    assert (mti, answer[39]) == ("0430", "00")
    assert (await p.user_account()).available == 10_000
    unknown = p.fields(f90=p.original("0100", p.fields()))
    mti, answer = await client.request("0420", unknown)
    assert (mti, answer[39]) == ("0430", "25")
    await p.done()


async def test_financial_messages_and_advices_book_what_the_network_decided(api, jwe_key,
                                                                           listener):
    p = await Network().setup(api, jwe_key)
    client = await p.connect(listener)
    mti, answer = await client.request("0200", p.fields(amount=1000))  # authorize and capture
    assert (mti, answer[39]) == ("0210", "00")
    for _ in range(100):
        if (await p.user_account()).posted == 9000:
            break
        await asyncio.sleep(0.02)
    user = await p.user_account()
    assert (user.posted, user.available) == (9000, 9000)
    advice = p.fields(amount=500, f39="00")  # the network stood in and approved
    mti, answer = await client.request("0120", advice)
    assert (mti, answer[39]) == ("0130", "00")
    assert (await p.user_account()).available == 8500
    declined_advice = p.fields(amount=700, f39="05")  # the network declined: nothing to book
    assert (await client.request("0120", declined_advice))[1][39] == "00"
    assert (await p.user_account()).available == 8500
    assert await api.services.pool.fetchval(
        "SELECT count(*) FROM authorizations WHERE amount = 700") == 0
    clearing = p.fields(amount=450, f90=p.original("0120", advice))
    mti, answer = await client.request("0220", clearing)
    assert (mti, answer[39]) == ("0230", "00")
    user = await p.user_account()
    assert (user.posted, user.available) == (8550, 8550)  # 450 posted, the other 50 released
    force_post = p.fields(amount=300)  # no DE90: a force post on the card
    mti, answer = await client.request("0220", force_post)
    assert (mti, answer[39]) == ("0230", "00")
    _, answer = await client.request("0221", force_post)  # repeated: booked once
    assert answer[39] == "00"
    assert (await p.user_account()).posted == 8250
    await p.done()


async def test_the_network_s_deadline_stands_in_and_nothing_late_is_sent(api, jwe_key, listener):
    p = await Network().setup(api, jwe_key)
    client = await p.connect(listener)
    await api.services.pool.execute("UPDATE networks SET authorization_deadline_ms = 200")
    api.services.credentials.clear()
    loop = asyncio.get_running_loop()
    async with api.services.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
                           uuid.UUID(p.w.balance))  # the batch waits on the user's account
        started = loop.time()
        mti, answer = await client.request("0100", p.fields(amount=100))
        elapsed = loop.time() - started
    assert (mti, answer[39]) == ("0110", "91")  # stood in by the program's rule (DECLINE)
    assert elapsed < 0.2 + 0.1
    assert listener.statistics().get("late_answers_dropped", 0) == 0
    await asyncio.sleep(0.3)
    assert client.unmatched.empty()  # nothing else, and nothing late, came
    await p.done()


async def advice_rows(api) -> list:
    return await api.services.pool.fetch(
        "SELECT a.decision, a.reason, a.network_advice, a.advice_shortfall, a.amount,"
        " u.debit_account_id AS user_debit, d.debit_account_id AS deposit_debit"
        " FROM authorizations a LEFT JOIN transfers u ON u.id = a.user_hold_id"
        " LEFT JOIN transfers d ON d.id = a.deposit_hold_id WHERE a.network_advice ORDER BY a.seq")


async def test_an_approved_advice_is_booked_even_where_antaca_would_decline(api, jwe_key, listener):
    p = await Network().setup(api, jwe_key, user_funds=1000)
    client = await p.connect(listener)
    receivable = advice_receivable_account("EUR")
    advice = p.fields(amount=5000, f39="00")  # 5,000 on a balance of 1,000: the engine says 51
    assert (await client.request("0100", p.fields(amount=5000)))[1][39] == "51"
    mti, answer = await client.request("0120", advice)
    assert (mti, answer[39]) == ("0130", "00")
    (row,) = await advice_rows(api)
    assert (row["decision"], row["reason"], row["advice_shortfall"]) == (
        "APPROVED", "NETWORK_ADVICE", 5000)
    assert row["user_debit"] == receivable  # the user's hold: owed by the cardholder
    assert row["deposit_debit"] == p.deposit  # the deposit covers its charge: held there
    assert (await p.user_account()).available == 1000  # the balance never goes negative
    assert (await p.counters(receivable)).balance.debits_pending == 5000
    assert (await p.counters(p.deposit)).available == 45_000
    copies = await asyncio.gather(*(connection.request("0121", advice) for connection in
                                    [client, await p.connect(listener), await p.connect(listener)]))
    assert [answer[39] for _, answer in copies] == ["00"] * 3  # the network's repeats, at once
    assert len(await advice_rows(api)) == 1  # booked once
    assert (await p.counters(receivable)).balance.debits_pending == 5000
    status, _ = await p.w.app_plain("POST", f"/customers/me/cards/{p.card['cardId']}/lock",
                                    {"reason": 1})
    assert status == 200
    locked = p.fields(amount=300, f39="00")  # a lost card: the engine says 41, the network approved
    assert (await client.request("0120", locked))[1][39] == "00"
    rows = await advice_rows(api)
    assert (rows[1]["advice_shortfall"], rows[1]["user_debit"]) == (0, uuid.UUID(p.w.balance))
    assert (await p.user_account()).available == 700  # the funds cover it: held on the balance
    assert (await client.request("0120", p.fields(amount=200, f39="51")))[1][39] == "00"
    assert len(await advice_rows(api)) == 2  # declined by the network: nothing booked
    clearing = p.fields(amount=5000, f90=p.original("0120", advice))
    assert (await client.request("0220", clearing))[1][39] == "00"
    owed = await p.counters(receivable)
    assert (owed.balance.debits_posted, owed.balance.debits_pending) == (5000, 0)
    assert listener.statistics().get("advices_not_booked", 0) == 0
    await p.done()


async def test_an_advice_of_an_unknown_card_is_acknowledged_and_not_booked(api, jwe_key,
                                                                          listener):
    p = await Network().setup(api, jwe_key)
    client = await p.connect(listener)
    unknown = p.fields(f2="5355220000000000", f39="00")
    assert (await client.request("0120", unknown))[1][39] == "00"
    assert await advice_rows(api) == []
    assert listener.statistics()["advices_not_booked"] == 1
    await p.done()


async def test_de54_names_the_balance_s_currency_of_a_converted_payment(api, jwe_key, listener):
    p = await Network().setup(api, jwe_key)
    async with api.client().post(f"{api.http}/admin/fx-rates", headers=bearer(p.w.admin),
                                 json={"base": "USD", "quote": "EUR", "rate": "0.5"}) as r:
        assert r.status == 201, await r.text()
    client = await p.connect(listener)
    _, answer = await client.request("0100", p.fields(amount=2000, f49="840"))  # 20.00 USD
    assert answer[39] == "00" and answer[49] == "840"
    assert answer[54] == "0002" + EUR + "C" + "9000".zfill(12)  # 10,000 - 1,000 EUR
    await p.done()


async def test_balance_inquiry_answers_the_available_balance(api, jwe_key, listener):
    p = await Network().setup(api, jwe_key, user_funds=4321)
    client = await p.connect(listener)
    for mti in ("0100", "0200"):
        answered, answer = await client.request(mti, p.fields(processing="310000",
                                                              f4="000000000000"))
        assert (answered, answer[39], answer[54]) == (
            mti[:2] + "10", "00", "0002" + EUR + "C" + "4321".zfill(12))
        assert 38 not in answer
    wrong_cvc2 = "000" if p.card["cvc2"] != "000" else "001"
    _, answer = await client.request("0100", p.fields(processing="310000",
                                                      f48="9203" + wrong_cvc2))
    assert (answer[39], answer.get(54)) == ("N7", None)
    _, answer = await client.request("0100", p.fields(processing="310000", f22="810", f48=None))
    assert answer[39] == "N7"  # e-commerce without CVC2: the program refuses it
    assert (await p.user_account()).available == 4321  # nothing held
    assert await api.services.pool.fetchval("SELECT count(*) FROM authorizations") == 0
    assert await api.services.pool.fetchval(
        "SELECT verification_failures FROM cards WHERE id = $1::text::uuid",
        p.card["cardId"]) == 1  # the wrong CVC2 counts towards card testing
    await p.done()


async def test_an_idle_line_gets_echoes_then_is_closed(api, jwe_key, listener, monkeypatch):
    monkeypatch.setattr(listener_module, "ECHO_AFTER_IDLE_SECONDS", 0.1)
    monkeypatch.setattr(listener_module, "IDLE_SECONDS_MAX", 0.45)
    p = await Network().setup(api, jwe_key)
    client = await p.connect(listener)
    mti, echo = await asyncio.wait_for(client.unmatched.get(), 5)
    assert (mti, echo[70]) == ("0800", "301")
    client.write_raw(encode("0810", {7: echo[7], 11: echo[11], 39: "00", 70: "301"}))
    await asyncio.wait_for(client.closed.wait(), 5)  # nothing but our answer since: closed
    statistics = listener.statistics()
    assert statistics["idle_closed"] == 1 and statistics["echoes_sent"] >= 2
    assert statistics.get("format_errors", 0) == 0  # the 0810 was read and dropped
    await p.done()


async def test_a_frame_that_never_completes_closes_the_line(api, jwe_key, listener,
                                                           monkeypatch):
    monkeypatch.setattr(listener_module, "FRAME_SECONDS_MAX", 0.3)
    p = await Network().setup(api, jwe_key)
    client = await p.connect(listener)
    started = asyncio.get_running_loop().time()
    client.write_raw((100).to_bytes(2, "big") + b"0100")  # 100 bytes announced, 4 sent
    await asyncio.wait_for(client.closed.wait(), 5)
    assert asyncio.get_running_loop().time() - started < 3  # not the 120 s of an idle line
    await p.done()


async def test_plain_tcp_belongs_to_the_configured_network(api, jwe_key):
    p = await Network().setup(api, jwe_key)
    plain = Iso8583Listener(api.services, network_id=uuid.UUID(p.network_id))
    await plain.start(sock=listening_socket())
    try:
        client = await NetworkClient().connect(plain.port)
        p.clients = [client]
        request = p.fields(amount=1500)
        mti, answer = await client.request("0100", request)
        assert (mti, answer[39]) == ("0110", "00")
        network = await api.services.pool.fetchval(
            "SELECT network_id FROM authorizations WHERE amount = 1500")
        assert network == uuid.UUID(p.network_id)
        await api.services.pool.execute("UPDATE networks SET status = 'SUSPENDED' WHERE id = $1",
                                        network)
        api.services.credentials.clear()
        client.write_raw(encode("0100", p.fields()))  # the network is no longer active: closed
        await asyncio.wait_for(client.closed.wait(), 5)
    finally:
        await plain.stop()
    await p.done()


async def test_an_answer_past_the_deadline_is_never_sent(api, jwe_key, listener, monkeypatch):
    p = await Network().setup(api, jwe_key)
    client = await p.connect(listener)
    await api.services.pool.execute("UPDATE networks SET authorization_deadline_ms = 200")
    api.services.credentials.clear()
    # The batch is sealed, then its commit waits 0.4 s: the approval commits past the deadline.
    monkeypatch.setattr(engine_module, "_FAULT_PAUSES", {"before_commit": 0.4})
    request = p.fields(amount=100)
    pending = client.send("0100", request)
    for _ in range(100):
        if listener.statistics().get("late_answers_dropped"):
            break
        await asyncio.sleep(0.02)
    assert listener.statistics()["late_answers_dropped"] == 1
    await asyncio.sleep(0.2)
    assert not pending.done() and client.unmatched.empty()  # nothing was sent for it
    assert (await p.user_account()).available == 9900  # held: the network's reversal releases it
    pending.cancel()
    await p.done()


async def test_an_advice_approves_the_message_antaca_declined(api, jwe_key, listener):
    p = await Network().setup(api, jwe_key, user_funds=1000)
    client = await p.connect(listener)
    original = p.fields(amount=3000)
    assert (await client.request("0100", original))[1][39] == "51"
    # The network stood in (Antaca's answer late or declined) and approved: its advice carries
    # the original's identity.
    mti, answer = await client.request("0120", {**original, 39: "00"})
    assert (mti, answer[39]) == ("0130", "00")
    (row,) = await api.services.pool.fetch(
        "SELECT decision, response_code, reason, declined_before, network_advice,"
        " advice_shortfall, user_hold_id IS NOT NULL AS held FROM authorizations")
    assert tuple(row) == ("APPROVED", "00", "NETWORK_ADVICE", "51", True, 3000, True)
    _, again = await client.request("0101", original)  # the original's repeat: now approved
    # Every hold went on the receivable: the balance was untouched, and the answer says so (its
    # available amount stored with the row, as the advice's booking read it).
    assert again[39] == "00" and again[54] == "0002978C000000001000", again
    reversal = p.fields(amount=3000, f90=p.original("0100", original))
    assert (await client.request("0420", reversal))[1][39] == "00"
    assert (await p.counters(advice_receivable_account("EUR"))).balance.debits_pending == 0
    await p.done()


async def test_a_credit_program_s_advice_beyond_the_funds_pays_the_network_from_the_receivable(
        api, jwe_key, listener):
    p = await Network().setup(api, jwe_key, user_funds=500, funding_model="CREDIT")
    client = await p.connect(listener)
    advice = p.fields(amount=800, f39="00")
    assert (await client.request("0120", advice))[1][39] == "00"
    (row,) = await advice_rows(api)
    assert (row["advice_shortfall"], row["user_debit"], row["deposit_debit"]) == (
        800, advice_receivable_account("EUR"), None)
    assert (await p.user_account()).available == 500
    assert await api.services.pool.fetchval(
        "SELECT t.credit_account_id FROM authorizations a JOIN transfers t"
        " ON t.id = a.user_hold_id") == engine_module.settlement_account("EUR")
    await p.done()


async def test_a_revoked_certificate_closes_its_live_connection(api, jwe_key, listener):
    p = await Network().setup(api, jwe_key)
    client = await p.connect(listener)
    assert (await client.request("0100", p.fields(amount=100)))[1][39] == "00"
    await api.services.pool.execute(
        "UPDATE network_certificates SET revoked_at = now() WHERE network_id = $1::text::uuid",
        p.network_id)
    api.services.credentials.clear()  # as the revocation's notification does in the service
    client.write_raw(encode("0100", p.fields(amount=100)))
    await asyncio.wait_for(client.closed.wait(), 5)
    assert await api.services.pool.fetchval("SELECT count(*) FROM authorizations") == 1
    await p.done()
