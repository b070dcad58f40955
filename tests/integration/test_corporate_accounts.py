"""Corporate accounts end to end over HTTP and mutual TLS: KYB, employees, corporate balances,
corporate cards by card id, and a corporate card's payment through the network channel."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import aiohttp
import psec
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from antaca_api.personalization import process_due_orders
from antaca_auth.verify import verify_ledger
from tests.api_harness import JweClient, bearer, create_network, register_customer

BIN = "535522"
ADDRESS = {"line1": "Business Park 5", "city": "Gdansk", "postalCode": "80-001", "country": "PL"}
PDF = b"%PDF-1.7\n" + b"0" * 500 + b"\n%%EOF\n"


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


class Corporate:
    """A partner with a EUR program and a funded deposit, and its KYB-approved corporation with
    a corporate balance and an employee, all made through the HTTP channels."""

    async def setup(self, api, jwe_key, *, funding_model: str = "DEPOSIT", deposit: int = 50_000):
        self.api = api
        self.admin = await api.admin_token()
        self.partner_id, self.partner = await api.partner(self.admin)
        program = await self.admin_post(
            "/admin/programs",
            {
                "partnerId": self.partner_id,
                "name": "Corporate EUR",
                "binPrefix": BIN,
                "panLength": 16,
                "currency": "EUR",
                "fundingModel": funding_model,
                "validityMonths": 36,
            },
        )
        self.program_id = program["programId"]
        kind = "DEPOSIT" if funding_model == "DEPOSIT" else "CREDIT"
        self.partner_balance = (
            await self.admin_post(
                f"/admin/partners/{self.partner_id}/balances", {"kind": kind, "currency": "EUR"}
            )
        )["balanceId"]
        if deposit:
            async with api.client().post(
                f"{api.http}/admin/partners/{self.partner_id}/balances/"
                f"{self.partner_balance}/reload",
                json={"amount": deposit, "bankReference": uuid.uuid4().hex},
                headers=bearer(self.admin),
            ) as r:
                assert r.status == 200, await r.text()
        async with api.client().get(f"{api.http}/public-key") as r:
            self.jwe = JweClient((await r.json())["pem"], jwe_key)
        self.corporation = await self.onboard()
        status, balance = await self.call(
            "POST", "/secure/balances", {"dcCorporationId": self.corporation, "currency": "EUR"}
        )
        assert status == 201, balance
        self.balance = balance["balanceId"]
        self.employee = await self.hire("Grace Hopper", "grace@acme.example", "+48500600700")
        return self

    async def admin_post(self, path: str, body: dict) -> dict:
        async with self.api.client().post(
            f"{self.api.http}{path}", json=body, headers=bearer(self.admin)
        ) as r:
            assert r.status == 201, await r.text()
            return await r.json()

    async def call(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> tuple[int, dict | None]:
        async with (session or self.partner).request(
            method, f"{self.api.https}{path}", json=body
        ) as r:
            return r.status, (None if r.status == 204 else await r.json())

    async def jwe_call(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> tuple[int, dict | None]:
        return await self.jwe.request(
            session or self.partner, method, f"{self.api.https}{path}", body
        )

    async def onboard(self) -> str:
        """Register, upload a KYB document, and have compliance approve: the corporation's id."""
        status, corporation = await self.call(
            "POST",
            "/lifecycle/v1/corporations",
            {
                "name": "Acme Sp. z o.o.",
                "registrationNumber": "KRS0000123",
                "country": "PL",
                "address": ADDRESS,
            },
        )
        assert (status, corporation["kybStatus"]) == (201, "SUBMITTED"), corporation
        corporation_id = corporation["dcCorporationId"]
        form = aiohttp.FormData()
        form.add_field("kind", "REGISTRY_EXTRACT")
        form.add_field("file", PDF, filename="extract.pdf", content_type="application/pdf")
        async with self.partner.post(
            f"{self.api.https}/lifecycle/v1/corporations/{corporation_id}/documents", data=form
        ) as r:
            assert r.status == 201, await r.text()
        async with self.api.client().post(
            f"{self.api.http}/admin/corporations/{corporation_id}/kyb",
            json={"status": "APPROVED"},
            headers=bearer(self.admin),
        ) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["corporation"]["kybStatus"] == "APPROVED"
        return corporation_id

    async def hire(self, name: str, email: str, phone: str | None = None) -> dict:
        body = {"name": name, "email": email} | ({"phone": phone} if phone else {})
        status, employee = await self.call(
            "POST", f"/lifecycle/v1/corporations/{self.corporation}/employees", body
        )
        assert status == 201, employee
        return employee

    async def reload(self, amount: int, reference: str | None = None) -> tuple[int, dict]:
        return await self.call(
            "POST",
            f"/secure/balances/{self.balance}/reload",
            {"amount": amount, "reference": reference or uuid.uuid4().hex},
        )

    async def virtual_card(self, employee: dict | None = None) -> dict:
        status, card = await self.jwe_call(
            "POST",
            "/secure/cards/virtual",
            {
                "dcCorporationId": self.corporation,
                "balanceId": self.balance,
                "employeeId": (employee or self.employee)["employeeId"],
            },
        )
        assert status == 201, card
        return card

    async def physical_card(self, pin: str | None = None) -> dict:
        body = {
            "dcCorporationId": self.corporation,
            "balanceId": self.balance,
            "employeeId": self.employee["employeeId"],
            "nameOnCard": "GRACE HOPPER",
            "deliveryAddress": ADDRESS,
        }
        path = "/secure/cards/physical" if pin is None else "/secure/cards/physical_with_pin"
        status, card = await self.jwe_call("POST", path, body | ({"pin": pin} if pin else {}))
        assert (status, card["status"]) == (201, "ORDERED"), card
        return card

    async def link_orders(self) -> None:
        """The personalization job, run as if the processor's personalization time had passed."""
        real_clock = self.api.services.clock
        try:
            self.api.services.clock = lambda: real_clock() + timedelta(minutes=5)
            await process_due_orders(self.api.services)
        finally:
            self.api.services.clock = real_clock

    async def account(self, account_id: str):
        (account,) = await self.api.services.ledger.lookup_accounts([uuid.UUID(account_id)])
        return account


class Network:
    """A card network with its client certificate, sending JSON messages."""

    async def setup(self, api, admin: str) -> Network:
        self.api, self.admin = api, admin
        name = f"net-{uuid.uuid4().hex[:6]}"
        self.network_id, certificate = await create_network(api, admin, name)
        self.client = api.client(cert=certificate)
        return self

    async def exchange_pin_key(self, jwe: JweClient) -> None:
        """The network's AES zone PIN key (ISO 9564 format 4), given to Antaca by an admin."""
        self.zone_key = os.urandom(16)
        check = Cipher(algorithms.AES(self.zone_key), modes.ECB()).encryptor().update(bytes(16))
        status, answer = await jwe.request(
            self.api.client(), "PUT", f"{self.api.http}/admin/networks/{self.network_id}/pin-key",
            {"format": "ISO_4", "key": self.zone_key.hex(), "checkValue": check[:3].hex().upper()},
            headers=bearer(self.admin))
        assert status == 200, answer

    def pin_block(self, pin: str, pan: str) -> str:
        """The PIN as the network sends it, enciphered by psec (not Antaca's own encoder)."""
        return psec.pinblock.encipher_pinblock_iso_4(self.zone_key, pin, pan).hex().upper()

    async def send(self, path: str, body: dict) -> tuple[int, dict]:
        async with self.client.post(f"{self.api.https}{path}", json=body) as r:
            return r.status, await r.json()

    async def authorize(self, card: dict, amount: int, **changes) -> dict:
        expiry = card["expiry"][3:] + card["expiry"][:2]  # MM/YY -> YYMM
        body = {
            "messageId": uuid.uuid4().hex,
            "pan": card["pan"],
            "expiry": expiry,
            "amount": amount,
            "currency": "EUR",
            "type": "ECOM",
            "cvc2": card["cvc2"],
            "mcc": "5411",
            "merchantName": "Office Supplies",
            "merchantCountry": "PL",
        } | changes
        status, answer = await self.send("/network/authorizations", body)
        assert status == 200, answer
        return answer | {"messageId": body["messageId"]}


async def test_corporate_story_from_kyb_to_a_cleared_payment(api, jwe_key):
    """Onboarding with KYB, a corporate balance loaded through the funding model, an employee's
    card, a network authorization and its clearing: the ledger tells the same story."""
    c = await Corporate().setup(api, jwe_key)
    status, loaded = await c.reload(10_000, "invoice-2026-11")
    assert (status, loaded["replayed"], loaded["balance"]["posted"]) == (200, False, 10_000)
    status, again = await c.reload(10_000, "invoice-2026-11")
    assert (again["replayed"], again["balance"]["posted"]) == (True, 10_000)  # booked once

    card = await c.virtual_card()
    status, seen = await c.call("GET", f"/secure/cards/{card['cardId']}/status")
    assert (status, seen["status"], seen["dcCorporationId"], seen["maskedPan"]) == (
        200,
        "ACTIVE",
        c.corporation,
        f"{BIN}******{card['pan'][-4:]}",
    )
    assert seen["holder"] == {
        "employeeId": c.employee["employeeId"],
        "name": "Grace Hopper",
        "email": "grace@acme.example",
        "phone": "+48500600700",
    }
    assert card["pan"] not in str(seen)

    network = await Network().setup(api, c.admin)
    approved = await network.authorize(card, 2_500)
    assert (approved["decision"], approved["responseCode"], approved["availableAfter"]) == (
        "APPROVED",
        "00",
        7_500,
    )
    corporate = await c.account(c.balance)
    assert (corporate.posted, corporate.available, corporate.balance.debits_pending) == (
        10_000,
        7_500,
        2_500,
    )
    deposit = await c.account(c.partner_balance)
    assert deposit.balance.debits_pending == 2_500  # the DEPOSIT model charged the partner too

    status, cleared = await network.send(
        "/network/clearings",
        {
            "messageId": uuid.uuid4().hex,
            "originalMessageId": approved["messageId"],
            "amount": 2_300,
        },
    )
    assert (status, cleared["kind"], cleared["amount"]) == (200, "CLEARING", 2_300), cleared
    corporate = await c.account(c.balance)
    assert (corporate.posted, corporate.available, corporate.balance.debits_pending) == (
        7_700,
        7_700,
        0,
    )  # the rest of the hold was released
    assert (await c.account(c.partner_balance)).balance.debits_pending == 0

    # The corporate statement is the ledger's account of the balance, entry by entry.
    status, statement = await c.call("GET", f"/secure/balances/{c.balance}/transactions")
    assert status == 200
    entries = [
        (t["type"], t["kind"], t["direction"], t["amount"], t["postedAfter"], t["availableAfter"])
        for t in statement["items"]
    ]
    assert entries == [
        ("BALANCE_RELOAD", "single", "CREDIT", 10_000, 10_000, 10_000),
        ("CARD_PAYMENT", "pending", "DEBIT", 2_500, 10_000, 7_500),
        ("CARD_PAYMENT", "post_pending", "DEBIT", 2_300, 7_700, 7_700),
    ]
    async with api.services.pool.acquire() as conn:
        assert await verify_ledger(conn) == []
        by_code = dict(
            await conn.fetch(
                """SELECT code, sum(amount) FROM transfers
                   WHERE credit_account_id = $1 OR debit_account_id = $1 GROUP BY code""",
                uuid.UUID(c.balance),
            )
        )
    assert by_code == {1: 10_000, 11: 2_500 + 2_300}

    status, balance = await c.call("GET", f"/secure/balances/{c.balance}")
    assert (balance["posted"], [x["cardId"] for x in balance["cards"]]) == (7_700, [card["cardId"]])


async def test_employees_are_the_corporations_own(api, jwe_key):
    c = await Corporate().setup(api, jwe_key)
    base = f"/lifecycle/v1/corporations/{c.corporation}/employees"
    assert (c.employee["name"], c.employee["dcCorporationId"]) == ("Grace Hopper", c.corporation)
    status, body = await c.call("POST", base, {"name": "G. Hopper", "email": "GRACE@acme.example"})
    assert (status, body["code"]) == (409, "EMPLOYEE_EXISTS")  # one record per e-mail, any case
    for bad in (
        {"name": "X", "email": "not-an-email"},
        {"name": "", "email": "x@acme.example"},
        {"name": "X", "email": "x@acme.example", "phone": "call me"},
        {"email": "x@acme.example"},
    ):
        status, body = await c.call("POST", base, bad)
        assert (status, body["code"]) == (400, "VALIDATION_ERROR"), bad
    second = await c.hire("Ada Lovelace", "ada@acme.example")
    assert second["phone"] is None
    status, first_page = await c.call("GET", f"{base}?limit=1")
    status, second_page = await c.call("GET", f"{base}?limit=1&cursor={first_page['nextCursor']}")
    assert [e["employeeId"] for e in first_page["items"] + second_page["items"]] == [
        c.employee["employeeId"],
        second["employeeId"],
    ]
    status, body = await c.call("GET", f"{base}?limit=201")
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")  # the page size limit

    # Another partner's corporation, and its employees, do not exist for this partner.
    _, stranger = await api.partner(c.admin)
    status, body = await c.call("POST", base, {"name": "Eve", "email": "eve@x.example"}, stranger)
    assert (status, body["code"]) == (404, "NOT_FOUND")
    status, body = await c.call("GET", base, session=stranger)
    assert (status, body["code"]) == (404, "NOT_FOUND")

    # A card names an employee of its own corporation only.
    other = Corporate()
    other.api, other.partner, other.admin, other.jwe = api, c.partner, c.admin, c.jwe
    other.corporation = await other.onboard()
    outsider = await other.hire("Outsider", "out@other.example")
    status, body = await c.jwe_call(
        "POST",
        "/secure/cards/virtual",
        {
            "dcCorporationId": c.corporation,
            "balanceId": c.balance,
            "employeeId": outsider["employeeId"],
        },
    )
    assert (status, body["code"]) == (404, "NOT_FOUND")
    async with api.services.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM cards") == 0


async def test_corporate_balances_reload_block_close_and_list(api, jwe_key):
    c = await Corporate().setup(api, jwe_key)
    base = f"/secure/balances/{c.balance}"
    status, loaded = await c.reload(5_000, "ref-1")
    assert (status, loaded["balance"]["posted"], loaded["balance"]["dcCorporationId"]) == (
        200,
        5_000,
        c.corporation,
    )
    status, body = await c.reload(6_000, "ref-1")
    assert (status, body["code"]) == (409, "IDEMPOTENCY_CONFLICT")
    status, body = await c.call("POST", f"{base}/reload", {"amount": 0, "reference": "zero"})
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")

    status, blocked = await c.call("POST", f"{base}/block")
    assert (status, blocked["state"]) == (200, "BLOCKED")
    status, body = await c.reload(1_000)
    assert (status, body["code"]) == (409, "BALANCE_NOT_ACTIVE")
    status, body = await c.jwe_call(
        "POST",
        "/secure/cards/virtual",
        {
            "dcCorporationId": c.corporation,
            "balanceId": c.balance,
            "employeeId": c.employee["employeeId"],
        },
    )
    assert (status, body["code"]) == (409, "BALANCE_NOT_ACTIVE")
    status, body = await c.call("POST", f"{base}/block")
    assert (status, body["code"]) == (409, "INVALID_STATE_TRANSITION")
    status, unblocked = await c.call("POST", f"{base}/unblock")
    assert (status, unblocked["state"]) == (200, "ACTIVE")
    status, body = await c.call("POST", f"{base}/close")
    assert (status, body["code"]) == (409, "BALANCE_NOT_EMPTY")

    card = await c.virtual_card()
    status, empty = await c.call(
        "POST", "/secure/balances", {"dcCorporationId": c.corporation, "currency": "EUR"}
    )
    status, closed = await c.call("POST", f"/secure/balances/{empty['balanceId']}/close")
    assert (status, closed["state"]) == (200, "CLOSED")
    status, body = await c.call("POST", f"/secure/balances/{empty['balanceId']}/unblock")
    assert (status, body["code"]) == (409, "INVALID_STATE_TRANSITION")

    status, listing = await c.call("GET", f"/lifecycle/v1/corporations/{c.corporation}/balances")
    assert [
        (b["balanceId"], b["state"], b["posted"], [x["cardId"] for x in b["cards"]])
        for b in listing["items"]
    ] == [(c.balance, "ACTIVE", 5_000, [card["cardId"]]), (empty["balanceId"], "CLOSED", 0, [])]
    status, page = await c.call(
        "GET", f"/lifecycle/v1/corporations/{c.corporation}/balances?limit=1"
    )
    assert len(page["items"]) == 1 and page["nextCursor"] is not None

    await c.reload(700, "ref-2")
    status, first = await c.call("GET", f"{base}/transactions?limit=1")
    assert [(t["type"], t["amount"]) for t in first["items"]] == [("BALANCE_RELOAD", 5_000)]
    status, rest = await c.call("GET", f"{base}/transactions?limit=1&cursor={first['nextCursor']}")
    assert [(t["type"], t["amount"], t["postedAfter"]) for t in rest["items"]] == [
        ("BALANCE_RELOAD", 700, 5_700)]
    status, body = await c.call("GET", f"{base}/transactions?limit=501")
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")


async def test_corporate_balance_routes_reach_only_the_partners_corporate_balances(api, jwe_key):
    """A customer's balance is not on the corporate routes, another partner's corporate balance
    is as unknown as one that exists nowhere, and none of those calls changes anything."""
    c = await Corporate().setup(api, jwe_key)
    customer = await register_customer(api, c.partner, verified=True)
    status, user_balance = await c.call(
        "POST", f"/secure/customers/{customer['customerId']}/balances", {"currency": "EUR"}
    )
    assert status == 201
    _, stranger = await api.partner(c.admin)
    calls = [
        ("POST", "reload", {"amount": 100, "reference": "r"}),
        ("POST", "block", None),
        ("POST", "unblock", None),
        ("POST", "close", None),
        ("GET", "transactions", None),
        ("GET", "cards", None),
    ]
    for method, action, body in calls:
        for session, balance_id in (
            (c.partner, user_balance["balanceId"]),
            (stranger, c.balance),
            (c.partner, str(uuid.uuid4())),
        ):
            status, answer = await c.call(
                method, f"/secure/balances/{balance_id}/{action}", body, session
            )
            answer.pop("requestId")
            assert (status, answer) == (404, {"code": "NOT_FOUND", "message": "no such balance"}), (
                action
            )
    for path in ("balances", "cards"):
        status, answer = await c.call(
            "GET", f"/lifecycle/v1/corporations/{c.corporation}/{path}", session=stranger
        )
        assert (status, answer["code"]) == (404, "NOT_FOUND")
    assert (await c.account(c.balance)).posted == 0
    async with api.services.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM balances WHERE state <> 'ACTIVE'") == 0


async def test_a_credit_model_corporate_reload_charges_the_partner_credit(api, jwe_key):
    c = await Corporate().setup(api, jwe_key, funding_model="CREDIT", deposit=3_000)
    status, loaded = await c.reload(2_000)
    assert (status, loaded["balance"]["posted"]) == (200, 2_000)
    assert (await c.account(c.partner_balance)).posted == 1_000
    status, body = await c.reload(1_001)
    assert (status, body["code"]) == (409, "INSUFFICIENT_PARTNER_CREDIT")
    assert (await c.account(c.balance)).posted == 2_000  # nothing moved


async def test_corporate_card_operations_by_card_id(api, jwe_key):
    c = await Corporate().setup(api, jwe_key)
    await c.reload(10_000)
    virtual = await c.virtual_card()
    ordered = await c.physical_card()
    card_path = f"/secure/cards/{ordered['cardId']}"
    status, body = await c.call("POST", f"{card_path}/activate")
    assert (status, body["code"]) == (409, "CARD_NOT_INACTIVE")  # not linked yet
    await c.link_orders()
    status, linked = await c.call("GET", f"{card_path}/status")
    assert (linked["status"], linked["holder"]["name"], linked["kind"]) == (
        "INACTIVE",
        "Grace Hopper",
        "PHYSICAL",
    )
    status, body = await c.call("POST", f"{card_path}/pin", {"pin": "4821"})
    assert (status, body["code"]) == (400, "ENCRYPTION_REQUIRED")
    status, _ = await c.jwe_call("POST", f"{card_path}/pin", {"pin": "4821"})
    assert status == 204
    status, body = await c.jwe_call("POST", f"{card_path}/pin", {"pin": "1234"})
    assert (status, body["code"]) == (400, "INVALID_PIN")
    status, active = await c.call("POST", f"{card_path}/activate")
    assert (status, active["status"]) == (200, "ACTIVE")

    # Face to face with the PIN the partner set; three wrong PINs lock the card (reason 6), and
    # the partner's unlock gives the employee the full tries again.
    status, plastic = await c.jwe_call("GET", card_path)
    assert (status, plastic["kind"]) == (200, "PHYSICAL")
    network = await Network().setup(api, c.admin)
    await network.exchange_pin_key(c.jwe)

    async def pos(pin: str) -> dict:
        return await network.authorize(
            plastic, 100, type="POS", cvc2=None, pinBlock=network.pin_block(pin, plastic["pan"]))

    assert (await pos("4821"))["decision"] == "APPROVED"
    for _ in range(3):
        wrong = await pos("1357")
    assert (wrong["decision"], wrong["actionCode"]) == ("DECLINED", "1006")
    status, seen = await c.call("GET", f"{card_path}/status")
    assert (seen["status"], seen["lockReason"]) == ("LOCKED", 6)
    status, _ = await c.call("POST", f"{card_path}/unlock")
    assert status == 200
    assert (await pos("1357"))["reason"] == "WRONG_PIN"  # one wrong try no longer locks it
    assert (await pos("4821"))["decision"] == "APPROVED"

    status, locked = await c.call("POST", f"{card_path}/lock", {"reason": 7})
    assert (status, locked["status"], locked["lockReason"]) == (200, "LOCKED", 7)
    status, unlocked = await c.call("POST", f"{card_path}/unlock")
    assert (status, unlocked["status"], unlocked["lockReason"]) == (200, "ACTIVE", None)
    status, body = await c.call("POST", f"{card_path}/lock", {"reason": 9})
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")
    status, _ = await c.call("POST", f"{card_path}/lock", {"reason": 1})
    status, body = await c.call("POST", f"{card_path}/unlock")
    assert (status, body["code"]) == (409, "CARD_LOCK_IRREVERSIBLE")

    status, body = await c.jwe_call("POST", f"{card_path}/cvv")
    assert (status, body["code"]) == (409, "VIRTUAL_CARD_ONLY")
    virtual_path = f"/secure/cards/{virtual['cardId']}"
    status, data = await c.jwe_call("GET", virtual_path)
    assert (status, data["pan"], data["cvc2"]) == (200, virtual["pan"], virtual["cvc2"])
    status, body = await c.call("GET", virtual_path)
    assert (status, body["code"]) == (400, "ENCRYPTION_REQUIRED")
    status, fresh = await c.jwe_call("POST", f"{virtual_path}/cvv")
    assert status == 200 and fresh["pan"] == virtual["pan"]
    status, data = await c.jwe_call("GET", virtual_path)
    assert data["cvc2"] == fresh["cvc2"]  # the reset took: the card answers with the new code
    if fresh["cvc2"] != virtual["cvc2"]:
        declined = await network.authorize(virtual, 100)  # the old code
        assert (declined["decision"], declined["reason"]) == ("DECLINED", "WRONG_CVC2")
    approved = await network.authorize(fresh, 100)
    assert approved["decision"] == "APPROVED"
    # The partner's lock and the balance's block reach the network's answers, as for user cards.
    await c.call("POST", f"{virtual_path}/lock", {"reason": 7})
    declined = await network.authorize(fresh, 100)
    assert (declined["decision"], declined["actionCode"]) == ("DECLINED", "1002")
    await c.call("POST", f"{virtual_path}/unlock")
    await c.call("POST", f"/secure/balances/{c.balance}/block")
    declined = await network.authorize(fresh, 100)
    assert (declined["decision"], declined["reason"]) == ("DECLINED", "BALANCE_BLOCKED")
    await c.call("POST", f"/secure/balances/{c.balance}/unblock")
    assert (await network.authorize(fresh, 100))["decision"] == "APPROVED"

    status, listing = await c.call("GET", f"/lifecycle/v1/corporations/{c.corporation}/cards")
    assert [(x["cardId"], x["status"]) for x in listing["items"]] == [
        (virtual["cardId"], "ACTIVE"),
        (ordered["cardId"], "LOCKED"),
    ]
    status, removed = await c.call("DELETE", virtual_path)
    assert (status, removed["status"]) == (200, "REMOVED")
    status, body = await c.call("DELETE", virtual_path)
    assert (status, body["code"]) == (409, "CARD_REMOVED")  # final
    status, body = await c.call("POST", f"{virtual_path}/lock", {"reason": 3})
    assert (status, body["code"]) == (409, "CARD_REMOVED")
    status, body = await c.jwe_call("GET", virtual_path)
    assert (status, body["code"]) == (409, "CARD_DATA_UNAVAILABLE")
    declined = await network.authorize(fresh, 100)
    assert declined["decision"] == "DECLINED"
    for path in (
        f"/lifecycle/v1/corporations/{c.corporation}/cards",
        f"/secure/balances/{c.balance}/cards",
    ):
        status, listing = await c.call("GET", path)
        assert [x["cardId"] for x in listing["items"]] == [ordered["cardId"]], (
            path
        )  # removed left out
        assert listing["items"][0]["holder"]["email"] == "grace@acme.example"
    async with api.services.pool.acquire() as conn:
        actors = {
            r["actor"]
            for r in await conn.fetch(
                "SELECT actor FROM card_events WHERE card_id = $1 AND event <> 'CREATED'",
                uuid.UUID(ordered["cardId"]),
            )
            if r["actor"] != "system"
        }
    assert actors == {f"partner:{c.partner_id}"}


async def test_corporate_card_routes_reach_only_the_partners_corporate_cards(api, jwe_key):
    """A customer's card is not on /secure/cards/{cardId}, another partner's corporate card is as
    unknown as one that exists nowhere, and neither changes anything."""
    c = await Corporate().setup(api, jwe_key)
    await c.reload(1_000)
    corporate = await c.virtual_card()
    customer = await register_customer(api, c.partner, verified=True)
    status, user_balance = await c.call(
        "POST", f"/secure/customers/{customer['customerId']}/balances", {"currency": "EUR"}
    )
    status, user_card = await c.jwe_call(
        "POST",
        f"/secure/customers/{customer['customerId']}/cards/virtual",
        {"balanceId": user_balance["balanceId"]},
    )
    assert status == 201
    _, stranger = await api.partner(c.admin)
    operations = [
        ("GET", "/status", None, False),
        ("GET", "", None, True),
        ("POST", "/activate", None, False),
        ("POST", "/lock", {"reason": 3}, False),
        ("POST", "/unlock", None, False),
        ("DELETE", "", None, False),
        ("POST", "/cvv", None, True),
        ("POST", "/pin", {"pin": "4821"}, True),
    ]
    for method, suffix, body, encrypted in operations:
        for session, card_id in (
            (c.partner, user_card["cardId"]),
            (stranger, corporate["cardId"]),
            (c.partner, str(uuid.uuid4())),
        ):
            path = f"/secure/cards/{card_id}{suffix}"
            call = c.jwe_call if encrypted else c.call
            status, answer = await call(method, path, body, session)
            answer.pop("requestId")
            assert (status, answer) == (404, {"code": "NOT_FOUND", "message": "no such card"}), path
    async with api.services.pool.acquire() as conn:
        states = dict(await conn.fetch("SELECT id::text, state FROM cards"))
        events = await conn.fetchval(
            "SELECT count(*) FROM card_events WHERE event <> 'CREATED' AND event <> 'GENERATED'"
        )
    assert states == {corporate["cardId"]: "ACTIVE", user_card["cardId"]: "ACTIVE"} and events == 0
