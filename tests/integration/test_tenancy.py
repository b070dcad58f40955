"""The tenancy matrix: every route with an id in its path, called by everyone who must not use it.

The routes come from the route table (`antaca_api.routing.ROUTES`), so a new route is in the
matrix the day it is declared; `test_every_id_route_is_in_the_matrix` fails when the matrix does
not know how to fill one of its path parameters or its body, so none is skipped silently.

For each route, on one world built once for the module (partner A with customers A1 and A2,
partner B with customer B1, each with a funded balance and a virtual card):

- the other customer of the same partner (A2's session, A1's ids)     -> 404
- another partner's customer (B1's session, A1's ids)                 -> 404
- another partner (B's certificate, A's ids)                          -> 404
- the owner's partner with a foreign parent in the path (customer A2
  over A1's balance or card; admin paths naming partner B over A's
  partner balance or certificate)                                     -> 404
- an administrator whose role the route does not allow                -> 403
- the credentials of every other channel, and none at all             -> 401

and none of those calls changes a row of any table. A 404 for another tenant's object must be
exactly the 404 for an id that exists nowhere, so an answer never tells that the object exists.
Here the administrators are the platform's own staff (no partner scope); admin routes are checked
by role and channel, and by the partner-in-path mismatch above. Partner-scoped staff (an
administrator of partner A against partner B's objects) have their own matrix over every admin
route: tests/integration/test_staff_scope.py.

Last, the owner calls the route: it must not be refused as unauthenticated, forbidden or not
found, else the ids were wrong and the 404s above proved nothing.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import aiohttp
import pytest
import pytest_asyncio

from antaca_api.routes import load_all
from antaca_api.routing import ROUTES, Channel, Encryption, Role, Route
from antaca_auth.pinblock import PinBlockFormat, ZoneKey
from tests.api_harness import (
    JweClient,
    bearer,
    make_csr,
    pair_device,
    register_customer,
    running_api,
)
from tests.conftest import fresh_database

load_all()
ID_ROUTES = [r for r in ROUTES if "{" in r.path]
PARAMETER = re.compile(r"\{(\w+)\}")

ADDRESS = {"line1": "Main 1", "city": "Warsaw", "postalCode": "00-001", "country": "PL"}
PDF = b"%PDF-1.7\n" + b"0" * 200 + b"\n%%EOF\n"
ZONE_KEY = ZoneKey(PinBlockFormat.ISO_4, bytes(range(16)))


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# How to fill each path parameter from a tenant's record. A parameter missing here fails
# test_every_id_route_is_in_the_matrix: add it (and the world's object behind it) here.
FILLERS = {
    "customerId": lambda route, rec: rec["customerId"],
    # Under /admin/partners a balance is the partner's deposit balance, elsewhere a customer's.
    # Under /admin/partners a balance is the partner's deposit balance, under /secure/balances
    # the partner's corporate balance, elsewhere a customer's.
    "balanceId": lambda route, rec: rec[
        "partnerBalanceId" if route.path.startswith(("/admin/partners/", "/secure/partner/"))
        else "corporateBalanceId" if route.path.startswith("/secure/balances/") else "balanceId"],
    # Under /secure/cards a card is the partner's corporate card, elsewhere a customer's.
    "cardId": lambda route, rec: rec[
        "corporateCardId" if route.path.startswith("/secure/cards/") else "cardId"],
    # A spare paired device of the customer: unpairing it leaves the customer's session alone.
    "installationId": lambda route, rec: rec["installationId"],
    "documentId": lambda route, rec: rec["documentId"],
    # A spare administrator: the target of the user-management routes.
    "adminId": lambda route, rec: rec["adminId"],
    "dcCorporationId": lambda route, rec: rec["dcCorporationId"],
    "partnerId": lambda route, rec: rec["partnerId"],
    "programId": lambda route, rec: rec["programId"],
    "networkId": lambda route, rec: rec["networkId"],
    # A control per channel, and another for its DELETE (the owner's call deletes it).
    "controlId": lambda route, rec: rec.get("controls", {}).get(
        (route.channel, route.method == "DELETE"), rec.get("controlId")),
    # Under /admin/networks a serial is the network's spare certificate, elsewhere the partner's.
    "serial": lambda route, rec: rec[
        "networkSerial" if route.path.startswith("/admin/networks/") else "serial"],
    "endpointId": lambda route, rec: rec["endpointId"],
}

# A valid body for each body type, from the owner's record: a body that fails validation would
# be refused (400) before any id is looked at, and prove nothing. Ids in bodies are the owner's.
BODIES = {
    "NewBalance": lambda rec: {"currency": "EUR"},
    "Reload": lambda rec: {"amount": 100, "reference": _unique("tenancy")},
    "NewVirtualCard": lambda rec: {"balanceId": rec["balanceId"]},
    "NewPhysicalCard": lambda rec: {"balanceId": rec["balanceId"], "nameOnCard": "ADA LOVELACE",
                                    "deliveryAddress": ADDRESS},
    "Lock": lambda rec: {"reason": 3},  # pending query: reversible
    "SetPin": lambda rec: {"pin": "4821"},
    "Activation": lambda rec: {},
    "Replacement": lambda rec: {"reason": "DAMAGED"},
    "CustomerUpdate": lambda rec: {"phone": "+48123456780"},
    "KycDocument": lambda rec: {"documentType": "PASSPORT", "documentNumber": "AB123456",
                                "documentCountry": "PL"},
    "PartnerKyc": lambda rec: {"status": "VERIFIED"},
    "KybDecision": lambda rec: {"status": "APPROVED"},
    "NewFeeSchedule": lambda rec: {"schedule": {}},
    "NewPinKey": lambda rec: {"format": "ISO_4", "key": ZONE_KEY.key.hex(),
                              "checkValue": ZONE_KEY.check_value()},
    "NewPartnerBalance": lambda rec: {"kind": "CREDIT", "currency": "EUR"},
    "ThresholdChange": lambda rec: {"lowBalanceThreshold": 1000},
    "PartnerReload": lambda rec: {"amount": 100, "bankReference": _unique("bank")},
    "PartnerContact": lambda rec: {"contactEmail": "ops@partner.example"},
    "StatusChange": lambda rec: {"status": "ACTIVE"},  # never suspend the world's partner
    "CertificateRequest": lambda rec: {"csr": make_csr()[0]},
    "AuthorizationRules": lambda rec: {"standInMode": "DECLINE"},
    "NetworkChanges": lambda rec: {"authorizationDeadlineMs": 1500},
    "NewCardControl": lambda rec: {"kind": "AMOUNT_MAX", "amountMax": 50_000},
    "NewControl": lambda rec: {"level": "PROGRAM", "scopeId": rec["programId"],
                               "kind": "AMOUNT_MAX", "amountMax": 50_000, "status": "SHADOW"},
    "ControlChange": lambda rec: {"amountMax": 90_000},
    "ProgramTimeZone": lambda rec: {"timeZone": "UTC"},
    "NewEmployee": lambda rec: {"name": "Grace Hopper",
                                "email": f"{_unique('grace')}@acme.example"},
    # Bodies of admin routes without ids (tests/integration/test_staff_scope.py calls them all).
    "NewAdmin": lambda rec: {"email": f"{_unique('new')}@antaca.test",
                             "password": "a long enough password", "role": "EMPLOYEE"},
    "PasswordChange": lambda rec: {"currentPassword": "not the password",
                                   "newPassword": "another long password"},
    "NewRate": lambda rec: {"base": "EUR", "quote": "PLN", "rate": "4.3"},
    "NewPartner": lambda rec: {"name": _unique("partner")},
    "NewProgram": lambda rec: {"partnerId": rec["partnerId"], "name": "Debit",
                               "binPrefix": "535599", "panLength": 16, "currency": "EUR",
                               "fundingModel": "DEPOSIT", "validityMonths": 36},
    "NewNetwork": lambda rec: {"name": _unique("net")},
    "KycReview": lambda rec: {"decision": "REJECT", "reason": "document unreadable"},
    "AdminChange": lambda rec: {"role": "EMPLOYEE"},
    "PasswordReset": lambda rec: {"temporaryPassword": "a temporary password 1"},
    "AlertSettings": lambda rec: {"lowBalanceThreshold": 1000,
                                  "alertEmails": ["ops@partner.example"]},
    "NetworkStatusChange": lambda rec: {"status": "ACTIVE"},  # never suspend the world's network
    # The owner's own balance as the receiver: refused (400) only after the sender's ownership.
    "NewInternalTransfer": lambda rec: {"receiverBalanceId": rec["balanceId"], "amount": 100,
                                        "reference": _unique("internal")},
    "EventTypesChange": lambda rec: {"eventTypes": ["card.locked"]},
    "ReplayRequest": lambda rec: {"since": "2020-01-01T00:00:00+00:00"},
    "NewMoneyTransfer": lambda rec: {"amount": 100, "iban": "DE89370400440532013000",
                                     "beneficiaryName": "Ada", "reference": _unique("transfer")},
}

OWNED_CHANNELS = (Channel.CUSTOMER, Channel.PARTNER, Channel.ADMIN)


def route_id(route: Route) -> str:
    return f"{route.method} {route.path}"


def fill(route: Route, rec: dict) -> str:
    return PARAMETER.sub(lambda m: FILLERS[m.group(1)](route, rec), route.path)


def gaps(route: Route) -> list[str]:
    """What the matrix cannot do for this route (empty when it covers it)."""
    found = [f"{route_id(route)}: no filler for path parameter {{{name}}}"
             for name in PARAMETER.findall(route.path) if name not in FILLERS]
    if route.channel not in OWNED_CHANNELS:
        found.append(f"{route_id(route)}: no owner and intruders for channel {route.channel}")
    if route.body is not None and route.body.__name__ not in BODIES:
        found.append(f"{route_id(route)}: no example body for {route.body.__name__}")
    if not route.authenticated:
        found.append(f"{route_id(route)}: unauthenticated, yet it takes an id")
    return found


def test_every_id_route_is_in_the_matrix():
    """A route with an id path parameter that the matrix cannot fill fails here, by name."""
    problems = [problem for route in ID_ROUTES for problem in gaps(route)]
    assert problems == [], "\n".join(problems)
    # The table is the one the app serves: a sample of routes the product documents is in it.
    ids = {route_id(r) for r in ID_ROUTES}
    assert {"GET /customers/me/cards/{cardId}",
            "GET /secure/customers/{customerId}/balances/{balanceId}",
            "POST /admin/partners/{partnerId}/certificates/{serial}/revoke"} <= ids
    assert len(ID_ROUTES) >= 70


# --- the world -------------------------------------------------------------------------------


@dataclass
class Caller:
    name: str
    session: aiohttp.ClientSession
    base: str  # the listener it calls: TLS for certificate holders, plain HTTP otherwise
    headers: dict
    app_customer: dict | None = None  # a customer's app: it steps up where a route asks


APP_PIN = "2580"  # every world customer's application PIN (step-up)


class World:
    """Partner A (customers A1, A2) and partner B (customer B1), a network, administrators."""

    async def build(self, api, jwe_key) -> World:
        self.api = api
        self.admin = await api.admin_token(Role.ADMIN)
        self.role_tokens = {role: await api.admin_token(role) for role in Role}
        async with api.client().get(f"{api.http}/public-key") as r:
            self.jwe = JweClient((await r.json())["pem"], jwe_key)
        self.spare_admin = (await self._admin_post("/admin/users", {
            "email": f"{_unique('spare')}@antaca.test", "password": "a long enough password",
            "role": "EMPLOYEE"}))["id"]
        self.network_id, self.network, self.network_serial = await self._network()
        self.a = await self._partner("535522")
        self.b = await self._partner("535533")
        self.a1 = await self._customer(self.a)
        self.a2 = await self._customer(self.a)
        self.b1 = await self._customer(self.b)
        await self._controls(self.a1)
        async with api.services.pool.acquire() as conn:
            self.tables = [r["table_name"] for r in await conn.fetch(
                """SELECT table_name FROM information_schema.tables
                   WHERE table_schema = 'public' AND table_type = 'BASE TABLE'
                   ORDER BY table_name""")]
        return self

    async def _admin_post(self, path: str, body: dict) -> dict:
        async with self.api.client().post(f"{self.api.http}{path}", json=body,
                                          headers=bearer(self.admin)) as r:
            assert r.status == 201, await r.text()
            return await r.json()

    async def _network(self) -> tuple[str, aiohttp.ClientSession, str]:
        network = await self._admin_post("/admin/networks", {"name": _unique("net")})
        csr, key = make_csr()
        cert = await self._admin_post(f"/admin/networks/{network['networkId']}/certificates",
                                      {"csr": csr})
        # A spare certificate, the revoke route's target (the first one stays in use).
        spare = await self._admin_post(f"/admin/networks/{network['networkId']}/certificates",
                                       {"csr": make_csr()[0]})
        return (network["networkId"], self.api.client(cert=(cert["certificate"], key)),
                spare["serial"])

    async def _partner(self, bin_prefix: str) -> dict:
        api = self.api
        partner_id, client = await api.partner(self.admin)
        # A second certificate: the revoke route's target, so the owner's call never locks the
        # partner out of the rest of the matrix.
        _, _, spare = await api.partner_certificate(self.admin, partner_id)
        program = await self._admin_post("/admin/programs", {
            "partnerId": partner_id, "name": "Debit EUR", "binPrefix": bin_prefix, "panLength": 16,
            "currency": "EUR", "fundingModel": "DEPOSIT", "validityMonths": 36})
        deposit = await self._admin_post(f"/admin/partners/{partner_id}/balances",
                                         {"kind": "DEPOSIT", "currency": "EUR"})
        async with client.post(f"{api.https}/lifecycle/v1/corporations", json={
                "name": "Acme", "registrationNumber": "KRS1", "country": "PL",
                "address": ADDRESS}) as r:
            assert r.status == 201, await r.text()
            corporation = await r.json()
        form = aiohttp.FormData()
        form.add_field("kind", "REGISTRY_EXTRACT")
        form.add_field("file", PDF, filename="extract.pdf", content_type="application/pdf")
        async with client.post(f"{api.https}/lifecycle/v1/corporations/"
                               f"{corporation['dcCorporationId']}/documents", data=form) as r:
            assert r.status == 201, await r.text()
            document = await r.json()
        corporate = await self._corporate(client, corporation["dcCorporationId"])
        # A webhook endpoint at a public address (nothing is sent: no worker runs here).
        async with client.post(f"{api.https}/secure/webhooks",
                               json={"url": "https://93.184.215.14/hooks"}) as r:
            assert r.status == 201, await r.text()
            endpoint = await r.json()
        return {"client": client, "record": {
            "documentId": document["documentId"], "adminId": self.spare_admin,
            "endpointId": endpoint["endpointId"],
            "partnerId": partner_id, "programId": program["programId"], "serial": spare["serial"],
            "partnerBalanceId": deposit["balanceId"],
            "dcCorporationId": corporation["dcCorporationId"],
            "networkId": self.network_id, "networkSerial": self.network_serial, **corporate}}

    async def _corporate(self, client, corporation_id: str) -> dict:
        """The corporation approved, with a funded corporate balance and an employee's card."""
        api = self.api
        async with api.client().post(f"{api.http}/admin/corporations/{corporation_id}/kyb",
                                     json={"status": "APPROVED"}, headers=bearer(self.admin)) as r:
            assert r.status == 200, await r.text()
        async with client.post(f"{api.https}/secure/balances",
                               json={"dcCorporationId": corporation_id, "currency": "EUR"}) as r:
            assert r.status == 201, await r.text()
            balance = (await r.json())["balanceId"]
        async with client.post(f"{api.https}/secure/balances/{balance}/reload",
                               json={"amount": 10_000, "reference": "initial"}) as r:
            assert r.status == 200, await r.text()
        async with client.post(f"{api.https}/lifecycle/v1/corporations/{corporation_id}/employees",
                               json={"name": "Grace Hopper", "email": "grace@acme.example"}) as r:
            assert r.status == 201, await r.text()
            employee = (await r.json())["employeeId"]
        status, card = await self.jwe.request(client, "POST", f"{api.https}/secure/cards/virtual", {
            "dcCorporationId": corporation_id, "balanceId": balance, "employeeId": employee})
        assert status == 201, card
        return {"corporateBalanceId": balance, "corporateCardId": card["cardId"]}

    async def _customer(self, partner: dict) -> dict:
        api, client = self.api, partner["client"]
        customer = await register_customer(api, client, verified=True)
        cid = customer["customerId"]
        async with client.post(f"{api.https}/secure/customers/{cid}/balances",
                               json={"currency": "EUR"}) as r:
            assert r.status == 201, await r.text()
            balance = (await r.json())["balanceId"]
        async with client.post(f"{api.https}/secure/customers/{cid}/balances/{balance}/reload",
                               json={"amount": 10_000, "reference": "initial"}) as r:
            assert r.status == 200, await r.text()
        session = await pair_device(api, client, cid)
        spare = await pair_device(api, client, cid, device_id="spare-device")
        status, _ = await self.jwe.request(
            self.api.client(), "PUT", f"{api.http}/customers/me/app-pin", {"pin": APP_PIN},
            headers=bearer(session["sessionToken"]))
        assert status == 204
        status, card = await self.jwe.request(
            client, "POST", f"{api.https}/secure/customers/{cid}/cards/virtual",
            {"balanceId": balance})
        assert status == 201, card
        return {"session": bearer(session["sessionToken"]), "partner": partner, "record": {
            **partner["record"], "customerId": cid, "balanceId": balance, "cardId": card["cardId"],
            "installationId": spare["installationId"]}}

    async def _controls(self, who: dict) -> None:
        """Controls on the customer's card: the partner's (partner and admin routes), the
        customer's own (customer routes), one more of each for the DELETE routes."""
        api, rec, client = self.api, who["record"], who["partner"]["client"]
        made = {}
        for channel, deleting in ((Channel.PARTNER, False), (Channel.PARTNER, True),
                                  (Channel.ADMIN, True)):
            async with client.post(f"{api.https}/secure/controls", json={
                    "level": "CARD", "scopeId": rec["cardId"], "kind": "AMOUNT_MAX",
                    "amountMax": 100_000}) as r:
                assert r.status == 201, await r.text()
                made[(channel, deleting)] = (await r.json())["controlId"]
        made[(Channel.ADMIN, False)] = made[(Channel.PARTNER, False)]
        for deleting in (False, True):
            async with api.client().post(
                    f"{api.http}/customers/me/cards/{rec['cardId']}/controls",
                    json={"kind": "AMOUNT_MAX", "amountMax": 80_000}, headers=who["session"]) as r:
                assert r.status == 201, await r.text()
                made[(Channel.CUSTOMER, deleting)] = (await r.json())["controlId"]
        rec["controls"] = made

    # callers

    def customer(self, who: dict, name: str) -> Caller:
        return Caller(name, self.api.client(), self.api.http, who["session"], who)

    async def step_up(self) -> None:
        """A fresh step-up proof for every customer (taken before a route's snapshot: issuing one
        writes rows)."""
        for who in (self.a1, self.a2, self.b1):
            status, proof = await self.jwe.request(self.api.client(), "POST",
                                                   f"{self.api.http}/customers/me/step-up",
                                                   {"pin": APP_PIN}, headers=who["session"])
            assert status == 201, proof
            who["stepUp"] = {"Step-Up-Token": proof["stepUpToken"]}

    def partner(self, partner: dict, name: str) -> Caller:
        return Caller(name, partner["client"], self.api.https, {})

    def administrator(self, role: Role) -> Caller:
        return Caller(f"admin {role}", self.api.client(), self.api.http,
                      bearer(self.role_tokens[role]))

    def other_channels(self, route: Route) -> list[Caller]:
        """Every other channel's valid credentials on this route's path, and none at all."""
        api = self.api
        callers = {
            Channel.CUSTOMER: self.customer(self.a1, "A1's session token"),
            Channel.PARTNER: self.partner(self.a, "partner A's certificate"),
            Channel.ADMIN: self.administrator(Role.ADMIN),
        }
        del callers[route.channel]
        return [*callers.values(),
                Caller("the network's certificate", self.network, api.https, {}),
                Caller("no credentials", api.client(), api.https, {})]

    # the database

    async def snapshot(self) -> dict[str, str]:
        """Every table's rows, as one checksum per table, read in one statement."""
        parts = [f"SELECT '{t}', md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) "
                 f'FROM "{t}" x' for t in self.tables]
        async with self.api.services.pool.acquire() as conn:
            return dict(await conn.fetch(" UNION ALL ".join(parts)))


def random_record() -> dict:
    """Ids that exist nowhere, in the shape of a tenant's record."""
    rec = {k: str(uuid.uuid4()) for k in ("customerId", "balanceId", "cardId", "partnerId",
                                          "programId", "networkId", "dcCorporationId",
                                          "partnerBalanceId", "controlId",
                                          "corporateBalanceId", "corporateCardId",
                                          "installationId", "documentId", "adminId",
                                          "endpointId")}
    return {**rec, "serial": uuid.uuid4().hex, "networkSerial": uuid.uuid4().hex}


async def call(world: World, caller: Caller, route: Route, rec: dict) -> tuple[int, dict | None]:
    """The route called by `caller` for the objects of `rec`: (status, body or None)."""
    url = caller.base + fill(route, rec)
    body = BODIES[route.body.__name__](rec) if route.body is not None else None
    headers = caller.headers
    if route.step_up and caller.app_customer is not None:
        headers = {**headers, **caller.app_customer["stepUp"]}
    if route.encryption in (Encryption.REQUIRED, Encryption.REQUEST):
        status, answer = await world.jwe.request(caller.session, route.method, url, body,
                                                 headers=headers)
        return status, without_request_id(status, answer)
    if route.multipart:
        form = aiohttp.FormData()
        form.add_field("kind", "REGISTRY_EXTRACT")
        form.add_field("file", PDF, filename="extract.pdf", content_type="application/pdf")
        request = caller.session.request(route.method, url, data=form, headers=headers)
    else:
        request = caller.session.request(route.method, url, json=body, headers=headers)
    async with request as r:
        return r.status, without_request_id(r.status, None if r.status == 204 else await r.json())


def without_request_id(status: int, body):
    """An error body without its request id (which differs per call; it must be there), so that
    another tenant's object and an unknown one compare equal."""
    if status >= 400 and isinstance(body, dict):
        assert isinstance(body.get("requestId"), str), body
        return {k: v for k, v in body.items() if k != "requestId"}
    return body


@pytest.fixture(scope="module")
def jwe_key():
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048)


@pytest.fixture(scope="module")
def module_database_url(pg_server, template_db):
    with fresh_database(pg_server, template_db) as url:
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(module_database_url, key_material, jwe_key):
    from antaca_auth.database import create_pool

    pool = await create_pool(module_database_url, min_size=1, max_size=10)
    try:
        async with running_api(pool, key_material, module_database_url) as api:
            yield await World().build(api, jwe_key)
    finally:
        await pool.close()


# --- the matrix ------------------------------------------------------------------------------


def refusals(world: World, route: Route) -> list[tuple[Caller, dict, int, dict | None]]:
    """(caller, the objects it asks for, the status it must get, ids for the no-leak comparison)."""
    a1, a2, b1 = world.a1["record"], world.a2["record"], world.b1["record"]
    cases: list[tuple[Caller, dict, int, dict | None]] = []
    if route.channel is Channel.CUSTOMER:
        cases += [(world.customer(world.a2, "A2 (same partner)"), a1, 404, random_record()),
                  (world.customer(world.b1, "B1 (other partner)"), a1, 404, random_record())]
    elif route.channel is Channel.PARTNER:
        cases.append((world.partner(world.b, "partner B"), a1, 404, random_record()))
        mixed = {**a1, "customerId": a2["customerId"]}
        if names_a_foreign_child(route, a1, mixed, a2):
            cases.append((world.partner(world.a, "partner A, customer A2 over A1's objects"),
                          mixed, 404, None))
    elif route.channel is Channel.ADMIN:
        cases += [(world.administrator(role), a1, 403, None)
                  for role in Role if role not in route.roles]
        mixed = {**a1, "partnerId": b1["partnerId"]}
        if names_a_foreign_child(route, a1, mixed, b1):
            cases.append((world.administrator(Role.ADMIN), mixed, 404, None))
    cases += [(caller, a1, 401, None) for caller in world.other_channels(route)]
    return cases


def names_a_foreign_child(route: Route, own: dict, mixed: dict, other: dict) -> bool:
    """Whether the mixed request puts another parent in the path over the owner's objects: it
    differs from the owner's (a parent was swapped) and from the other's (objects of the owner
    are still named). Otherwise it is just the owner's or the other's own call."""
    def request(rec: dict):
        return fill(route, rec), _ids_in_body(route, rec)

    return request(mixed) not in (request(own), request(other))


def _ids_in_body(route: Route, rec: dict) -> dict | None:
    """The ids a route's body names (reference-like fields are fresh on every call)."""
    if route.body is None:
        return None
    body = BODIES[route.body.__name__](rec)
    return {k: v for k, v in body.items() if k.endswith("Id")}


@pytest.mark.asyncio(loop_scope="module")  # the module's world lives on the module's loop
@pytest.mark.parametrize("route", ID_ROUTES, ids=route_id)
async def test_only_the_owner_reaches_the_object(world, route):
    assert not gaps(route), gaps(route)
    if route.step_up:
        await world.step_up()
    before = await world.snapshot()
    wrong = []
    for caller, rec, expected, unknown in refusals(world, route):
        status, body = await call(world, caller, route, rec)
        typed = isinstance(body, dict) and set(body) == {"code", "message"}
        if status != expected or not typed:
            wrong.append(f"{caller.name}: expected {expected}, got {status} {body}")
            continue
        if unknown is not None:
            # Another tenant's object answers exactly as an object that exists nowhere.
            answer = await call(world, caller, route, unknown)
            if answer != (status, body):
                wrong.append(f"{caller.name}: {status} {body} for another tenant's object, "
                             f"{answer[0]} {answer[1]} for an unknown one")
    after = await world.snapshot()
    changed = sorted(t for t in before if before[t] != after[t])
    if changed:
        wrong.append(f"refused calls changed rows in {changed}")
    assert not wrong, "\n".join(wrong)

    owner = {Channel.CUSTOMER: world.customer(world.a1, "A1"),
             Channel.PARTNER: world.partner(world.a, "partner A"),
             Channel.ADMIN: world.administrator(Role.ADMIN)}[route.channel]
    status, body = await call(world, owner, route, world.a1["record"])
    # 2xx, or a business refusal (e.g. the card is already active): the ids named real objects.
    assert status < 500 and status not in (401, 403, 404), (status, body)
    if status >= 400:
        assert set(body) == {"code", "message"}, body

