"""Remote authorization end to end: a REMOTE program whose partner (a real aiohttp server in the
test process) approves, declines, approves a part, answers late, fails or answers nonsense; many
concurrent calls, a slow partner beside a fast one; the advices of reversals, clearings and
refunds delivered to the remoteUrl, signed; the ledger clean afterwards."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field

import msgspec
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from antaca_api.programs import remote_account
from antaca_api.webhook_delivery import deliver_due
from antaca_auth import events
from antaca_auth.verify import verify_ledger
from tests.api_harness import bearer, listening_socket, pair_device, register_customer
from tests.integration.test_authorizations import Payments
from tests.integration.test_cards import APP_PIN, BIN, World
from tests.integration.test_webhooks import allow_private


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


@dataclass
class Partner:
    """A partner's remote authorization server: the merchant name of a payment says how it answers
    (approve, decline, partial, slow, error, malformed); advices are recorded apart."""

    url: str = ""
    delay: float = 0.0  # every answer waits this long (a slow partner)
    questions: list[tuple[dict, bytes]] = field(default_factory=list)
    advices: list[tuple[dict, bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        message = json.loads(body)
        if "type" in message and "data" in message:  # an advice (a webhook message)
            self.advices.append((dict(request.headers), body))
            return web.Response(status=204)
        self.questions.append((dict(request.headers), body))
        how = message["merchantName"]
        await asyncio.sleep(self.delay + (2.0 if how == "slow" else 0))
        if how == "error":
            return web.Response(status=500, text="down")
        if how == "malformed":
            return web.Response(text="<html>not json</html>")
        if how == "decline":
            return web.json_response({"decision": "DECLINE", "reason": "insufficient funds"})
        if how == "partial":
            return web.json_response({"decision": "APPROVE", "amount": message["amount"] // 2})
        return web.json_response({"decision": "APPROVE"})


async def serve(partner: Partner):
    app = web.Application()
    app.router.add_post("/authorize", partner.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = listening_socket()
    await web.SockSite(runner, sock).start()
    partner.url = f"http://127.0.0.1:{sock.getsockname()[1]}/authorize"
    return runner


@pytest.fixture
async def partners():
    started, runners = [], []

    async def start(delay: float = 0.0) -> Partner:
        partner = Partner(delay=delay)
        runners.append(await serve(partner))
        started.append(partner)
        return partner

    yield start
    for runner in runners:
        await runner.cleanup()


class RemoteWorld(World):
    """World with a REMOTE program instead of a DEPOSIT one."""

    async def setup(self, api, jwe_key, *, remote_url: str, deadline_ms: int = 1000):
        from tests.integration.test_cards import JweClient

        self.api = api
        self.admin = await api.admin_token()
        self.partner_id, self.partner = await api.partner(self.admin)
        program = {"partnerId": self.partner_id, "name": "Remote EUR", "binPrefix": BIN,
                   "panLength": 16, "currency": "EUR", "fundingModel": "REMOTE",
                   "validityMonths": 36, "remoteUrl": remote_url, "remoteDeadlineMs": deadline_ms}
        async with api.client().post(f"{api.http}/admin/programs", headers=bearer(self.admin),
                                     json=program) as r:
            assert r.status == 201, await r.text()
            self.program = await r.json()
        self.customer = await register_customer(api, self.partner, verified=True)
        self.cid = self.customer["customerId"]
        async with self.partner.post(f"{api.https}/secure/customers/{self.cid}/balances",
                                     json={"currency": "EUR"}) as r:
            self.balance = (await r.json())["balanceId"]
        self.session = await pair_device(api, self.partner, self.cid)
        self.app = api.client()
        self.me = bearer(self.session["sessionToken"])
        async with api.client().get(f"{api.http}/public-key") as r:
            self.jwe = JweClient((await r.json())["pem"], jwe_key)
        status, body = await self.jwe.request(self.app, "PUT", f"{api.http}/customers/me/app-pin",
                                              {"pin": APP_PIN}, headers=self.me)
        assert status == 204, body
        return self


class RemotePayments(Payments):
    async def setup(self, api, jwe_key, *, partner: Partner, deadline_ms: int = 1000):
        from tests.api_harness import create_network

        self.api = api
        allow_private(api)
        self.w = await RemoteWorld().setup(api, jwe_key, remote_url=partner.url,
                                           deadline_ms=deadline_ms)
        self.secret = self.w.program["remoteSecret"]
        self.program_id = uuid.UUID(self.w.program["programId"])
        self.card = await self.w.virtual()
        self.network_id, certificate = await create_network(api, self.w.admin,
                                                            f"net-{uuid.uuid4().hex[:6]}")
        self.network = api.client(cert=certificate)
        return self

    async def row(self, authorization_id: str):
        async with self.api.services.pool.acquire() as conn:
            return await conn.fetchrow(
                "SELECT decision, response_code, reason, amount, approved_amount, stand_in,"
                " remote_outcome, remote_requested_amount, remote_reason"
                " FROM authorizations WHERE id = $1", uuid.UUID(authorization_id))


async def assert_ledger_clean(api) -> None:
    async with api.services.pool.acquire() as conn:
        assert await verify_ledger(conn) == []


async def test_program_setup_checks_the_remote_url(api, jwe_key):
    admin = await api.admin_token()
    partner_id, _ = await api.partner(admin)
    body = {"partnerId": partner_id, "name": "Remote", "binPrefix": BIN, "panLength": 16,
            "currency": "EUR", "fundingModel": "REMOTE", "validityMonths": 36}
    allow_private(api, False)
    for url in ("http://partner.example/authorize", "https://127.0.0.1/authorize",
                "https://169.254.169.254/latest"):
        async with api.client().post(f"{api.http}/admin/programs", headers=bearer(admin),
                                     json={**body, "remoteUrl": url}) as r:
            assert r.status == 400, (url, await r.text())
    async with api.client().post(f"{api.http}/admin/programs", headers=bearer(admin),
                                 json=body) as r:  # REMOTE without its URL
        assert (r.status, (await r.json())["code"]) == (400, "INVALID_PROGRAM")
    async with api.client().post(f"{api.http}/admin/programs", headers=bearer(admin),
                                 json={**body, "remoteUrl": "https://8.8.8.8/a",
                                       "remoteDeadlineMs": 20_000}) as r:
        assert r.status == 400
    async with api.client().post(f"{api.http}/admin/programs", headers=bearer(admin),
                                 json={**body, "fundingModel": "DEPOSIT",
                                       "remoteUrl": "https://8.8.8.8/a"}) as r:
        assert r.status == 400  # a remoteUrl only on a REMOTE program


async def test_partner_approves_declines_and_approves_a_part(api, jwe_key, partners):
    partner = await partners()
    p = await RemotePayments().setup(api, jwe_key, partner=partner)
    approved = await p.authorize(amount=2500, merchantName="approve")
    assert (approved["decision"], approved["approvedAmount"]) == ("APPROVED", 2500)
    ((headers, body),) = partner.questions
    question = Webhook(p.secret).verify(body, headers)  # signed like a webhook
    assert question["cardId"] == p.card["cardId"] and question["amount"] == 2500
    assert question["maskedPan"] == p.card["pan"][:6] + "******" + p.card["pan"][-4:]
    assert p.card["pan"] not in body.decode() and p.card["cvc2"] not in question.values()
    row = await p.row(approved["authorizationId"])
    assert (row["remote_outcome"], row["stand_in"]) == ("APPROVED", False)
    # Held on the partner's REMOTE account, not on the user's balance.
    remote = await p.counters(remote_account(p.program_id))
    assert remote.balance.debits_pending == 2500
    assert (await p.user_account()).balance.debits_pending == 0

    declined = await p.authorize(amount=700, merchantName="decline")
    assert (declined["decision"], declined["responseCode"], declined["reason"]) == (
        "DECLINED", "05", "DECLINED_BY_PARTNER")
    row = await p.row(declined["authorizationId"])
    assert (row["remote_outcome"], row["remote_reason"]) == ("DECLINED", "insufficient funds")

    partial = await p.authorize(amount=1001, merchantName="partial")
    assert (partial["decision"], partial["approvedAmount"]) == ("APPROVED", 500)
    row = await p.row(partial["authorizationId"])
    assert (row["remote_outcome"], row["remote_requested_amount"], row["approved_amount"]) == (
        "PARTIAL", 1001, 500)
    assert (await p.counters(remote_account(p.program_id))).balance.debits_pending == 3000

    # Antaca's card checks come first: a wrong CVC2 never reaches the partner.
    asked = len(partner.questions)
    wrong = await p.authorize(amount=100, merchantName="approve", cvc2="000")
    assert wrong["decision"] == "DECLINED" and wrong["reason"] == "WRONG_CVC2"
    assert len(partner.questions) == asked
    async with api.services.pool.acquire() as conn:
        payload = await conn.fetchval("SELECT payload::text FROM events WHERE id = $1",
                                      uuid.UUID(partial["authorizationId"]))
    assert json.loads(payload)["remoteOutcome"] == "PARTIAL"
    await assert_ledger_clean(api)


async def test_no_usable_answer_applies_the_stand_in_rule(api, jwe_key, partners):
    partner = await partners()
    p = await RemotePayments().setup(api, jwe_key, partner=partner, deadline_ms=300)
    for how, outcome in (("slow", "TIMEOUT"), ("error", "ERROR"), ("malformed", "MALFORMED")):
        started = time.monotonic()
        answer = await p.authorize(amount=400, merchantName=how)
        assert time.monotonic() - started < 1.0, how  # the partner's deadline, not its delay
        assert (answer["decision"], answer["responseCode"], answer["standIn"]) == (
            "DECLINED", "91", True), how
        row = await p.row(answer["authorizationId"])
        assert (row["remote_outcome"], row["stand_in"]) == (outcome, True), how
    # The program's stand-in rule APPROVE: approved within the card's daily allowance.
    async with api.client().put(
            f"{api.http}/admin/programs/{p.program_id}/authorization-rules",
            headers=bearer(p.w.admin),
            json={"standInMode": "APPROVE", "standInLimit": 1000}) as r:
        assert r.status == 200, await r.text()
    first = await p.authorize(amount=600, merchantName="error")
    assert (first["decision"], first["standIn"]) == ("APPROVED", True)
    second = await p.authorize(amount=600, merchantName="error")
    assert (second["decision"], second["reason"]) == ("DECLINED", "STAND_IN_LIMIT_EXCEEDED")
    assert (await p.row(first["authorizationId"]))["remote_outcome"] == "ERROR"
    assert (await p.counters(remote_account(p.program_id))).balance.debits_pending == 600
    await assert_ledger_clean(api)


async def test_many_concurrent_calls_and_a_slow_partner_delays_no_other(api, jwe_key, partners):
    slow_partner, fast_partner = await partners(delay=0.6), await partners()
    slow = await RemotePayments().setup(api, jwe_key, partner=slow_partner)
    fast = await RemotePayments().setup(api, jwe_key, partner=fast_partner)

    async def timed(p: RemotePayments) -> tuple[float, dict]:
        started = time.monotonic()
        answer = await p.authorize(amount=100, merchantName="approve")
        return time.monotonic() - started, answer

    # Warm: every connection of the network's client open (TLS handshakes are not the subject).
    await asyncio.gather(*(timed(p) for p in (slow, fast) for _ in range(30)))
    slow_partner.questions.clear()
    fast_partner.questions.clear()
    slow_calls = [asyncio.create_task(timed(slow)) for _ in range(30)]
    await asyncio.sleep(0.05)  # the slow partner's calls are in flight
    fast_results = await asyncio.gather(*(timed(fast) for _ in range(30)))
    assert all(a["decision"] == "APPROVED" for _, a in fast_results)
    # Answered sooner than the slow partner answers any (and in practice in under 0.2 s).
    assert max(seconds for seconds, _ in fast_results) < slow_partner.delay
    assert not any(task.done() for task in slow_calls)  # still waiting for their partner
    slow_results = await asyncio.gather(*slow_calls)
    assert all(a["decision"] == "APPROVED" for _, a in slow_results)
    assert min(seconds for seconds, _ in slow_results) >= 0.6
    assert len(slow_partner.questions) == len(fast_partner.questions) == 30
    assert (await fast.counters(remote_account(fast.program_id))).balance.debits_pending == 6000
    await assert_ledger_clean(api)


async def test_reversals_clearings_and_refunds_are_advised(api, jwe_key, partners):
    partner = await partners()
    p = await RemotePayments().setup(api, jwe_key, partner=partner)
    first = p.request(amount=4000, merchantName="approve")
    status, answer = await p.send("/network/authorizations", first)
    assert (status, answer["decision"]) == (200, "APPROVED")
    status, _ = await p.send("/network/reversals", {"messageId": uuid.uuid4().hex,
                                                     "originalMessageId": first["messageId"],
                                                     "amount": 1000})
    assert status == 200
    status, _ = await p.send("/network/clearings", {"messageId": uuid.uuid4().hex,
                                                     "originalMessageId": first["messageId"],
                                                     "amount": 3000})
    assert status == 200
    refund = await p.authorize(type="REFUND", amount=300, merchantName="approve")
    assert refund["decision"] == "APPROVED"
    assert len(partner.questions) == 1  # a refund is advised, not asked

    while await deliver_due(api.services):
        pass
    advised = {}
    for headers, body in partner.advices:
        message = Webhook(p.secret).verify(body, headers)
        assert message["data"]["cardId"] == p.card["cardId"]
        assert p.card["pan"] not in body.decode()
        advised[message["type"]] = message
    assert {events.AUTHORIZATION_APPROVED, events.REVERSAL, events.CLEARING,
            events.REFUND_APPROVED} <= advised.keys()
    assert advised[events.AUTHORIZATION_APPROVED]["data"]["remoteOutcome"] == "APPROVED"
    # The clearing posted the payment on the partner's REMOTE account; the refund credited it.
    remote = await p.counters(remote_account(p.program_id))
    counters = remote.balance
    assert (counters.debits_posted, counters.debits_pending, counters.credits_posted) == (
        3000, 0, 300)
    # Another program's payments are not advised to this remoteUrl.
    other = await Payments().setup(api, jwe_key)
    await other.authorize(amount=100)
    before = len(partner.advices)
    while await deliver_due(api.services):
        pass
    assert len(partner.advices) == before
    # The advice endpoint is the partner's to see (deliveries, attempts, replay).
    async with p.w.partner.get(f"{api.https}/secure/webhooks") as r:
        listed = (await r.json())["items"]
    assert [e["endpointId"] for e in listed] == [p.w.program["remoteEndpointId"]]
    await assert_ledger_clean(api)
    msgspec.json.encode(advised)  # JSON through and through


async def test_a_retransmission_during_the_call_shares_its_answer(api, jwe_key, partners):
    partner = await partners(delay=0.3)
    p = await RemotePayments().setup(api, jwe_key, partner=partner)
    request = p.request(amount=800, merchantName="approve")
    (status_1, first), (status_2, second) = await asyncio.gather(
        p.send("/network/authorizations", request), p.send("/network/authorizations", request))
    assert status_1 == status_2 == 200 and first == second and first["decision"] == "APPROVED"
    assert len(partner.questions) == 1  # asked once
    status, again = await p.send("/network/authorizations", request)  # later: the stored answer
    assert (status, again) == (200, first) and len(partner.questions) == 1
    assert (await p.counters(remote_account(p.program_id))).balance.debits_pending == 800


async def test_a_target_refused_at_call_time_stands_in(api, jwe_key, partners):
    partner = await partners()
    p = await RemotePayments().setup(api, jwe_key, partner=partner)
    allow_private(api, False)  # as if the name now resolved to a loopback address
    try:
        answer = await p.authorize(amount=300, merchantName="approve")
    finally:
        allow_private(api)
    assert (answer["decision"], answer["responseCode"], answer["standIn"]) == (
        "DECLINED", "91", True)
    row = await p.row(answer["authorizationId"])
    assert row["remote_outcome"] == "ERROR" and row["remote_reason"].startswith("refused target")
    assert partner.questions == []
    await assert_ledger_clean(api)


async def test_a_partner_at_its_bound_of_calls_in_flight_is_busy(api, jwe_key, partners,
                                                                 monkeypatch):
    from antaca_api import remote_partners

    monkeypatch.setattr(remote_partners, "REMOTE_CALLS_IN_FLIGHT_MAX", 2)
    partner = await partners()
    p = await RemotePayments().setup(api, jwe_key, partner=partner, deadline_ms=300)
    answers = await asyncio.gather(*(p.authorize(amount=100, merchantName="slow")
                                     for _ in range(6)))
    outcomes = [(await p.row(a["authorizationId"]))["remote_outcome"] for a in answers]
    # Two calls in flight, each timing out; those that found no slot by their deadline are BUSY
    # (a call arriving as a slot frees gets it, so how many of each depends on arrival times).
    assert set(outcomes) == {"BUSY", "TIMEOUT"}
    assert len(partner.questions) <= outcomes.count("TIMEOUT")  # BUSY ones were never sent
    assert all((a["responseCode"], a["standIn"]) == ("91", True) for a in answers)
