"""A fuzz pass over the OpenAPI document with schemathesis: no request, valid or not, gets a 5xx.

The service runs in a thread of its own (schemathesis calls it synchronously) on a fresh
database, and every channel is driven with real credentials: an admin token, a partner's
client certificate, a customer's session, a network's certificate. Path ids are real ones for
valid requests (so handlers run deep) and random ones for invalid requests.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from antaca_api.openapi import cached_document
from antaca_api.routing import ROUTES, Channel, Encryption
from antaca_auth.cardkeys import CardKeys
from antaca_auth.database import create_pool
from antaca_auth.engine import AuthorizationEngine
from antaca_auth.ledger import Ledger
from tests.api_harness import JweClient, bearer, make_csr, pair_device, register_customer, start_api

EXAMPLES = 12


class LiveServer(threading.Thread):
    """The application on its own event loop, so synchronous clients can call it."""

    def __init__(self, dsn: str, key_material) -> None:
        super().__init__(daemon=True)
        self.dsn, self.key_material = dsn, key_material
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced to the test thread
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        from antaca_api.kyc import DeterministicKycProvider
        from antaca_api.services import Services
        from antaca_api.settings import Settings

        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        jwe_key, ca = self.key_material
        pool = await create_pool(self.dsn, min_size=1, max_size=8)
        services = Services(pool=pool, ledger=Ledger(pool), settings=Settings(), jwe_key=jwe_key, ca=ca,
                            kyc_provider=DeterministicKycProvider(), card_keys=CardKeys.generate())
        services.engine = AuthorizationEngine(pool, services.ledger, services.card_keys)
        await services.engine.start()
        self.api, runner = await start_api(services, ca)
        self.ready.set()
        await self.stop.wait()
        await services.engine.stop()
        await asyncio.gather(*services.tasks, return_exceptions=True)
        for session in self.api.sessions:
            await session.close()
        await runner.cleanup()
        await pool.close()

    def call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def shutdown(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.join(timeout=30)


async def seed(api) -> dict:
    """Real credentials and ids for every channel."""
    admin = await api.admin_token()
    partner_id, partner = await api.partner(admin)
    cert, key, _ = await api.partner_certificate(admin, partner_id)
    customer = await register_customer(api, partner, verified=True)
    cid = customer["customerId"]
    async with partner.post(f"{api.https}/secure/customers/{cid}/balances", json={"currency": "EUR"}) as r:
        balance = (await r.json())["balanceId"]
    async with api.client().post(f"{api.http}/admin/programs", headers=bearer(admin), json={
            "partnerId": partner_id, "name": "P", "binPrefix": "535522", "panLength": 16, "currency": "EUR",
            "fundingModel": "DEPOSIT", "validityMonths": 24}) as r:
        program = (await r.json())["programId"]
    session = await pair_device(api, partner, cid)
    async with api.client().get(f"{api.http}/public-key") as r:
        client = JweClient((await r.json())["pem"])
    status, card = await client.request(api.client(), "POST", f"{api.http}/customers/me/cards/virtual",
                                        {"balanceId": balance}, headers=bearer(session["sessionToken"]))
    async with partner.post(f"{api.https}/lifecycle/v1/corporations", json={
            "name": "Acme", "registrationNumber": "R1", "country": "PL",
            "address": {"line1": "a", "city": "b", "postalCode": "1", "country": "PL"}}) as r:
        corporation = (await r.json())["dcCorporationId"]
    async with api.client().post(f"{api.http}/admin/networks", json={"name": "Net"}, headers=bearer(admin)) as r:
        network = (await r.json())["networkId"]
    csr, network_key = make_csr()
    async with api.client().post(f"{api.http}/admin/networks/{network}/certificates", json={"csr": csr},
                                 headers=bearer(admin)) as r:
        network_cert = (await r.json())["certificate"]
    paths = api.workdir
    (paths / "partner.crt").write_text(cert)
    (paths / "partner.key").write_bytes(key)
    (paths / "network.crt").write_text(network_cert)
    (paths / "network.key").write_bytes(network_key)
    return {
        "admin": admin, "session": session["sessionToken"], "jwe_public": client.public_header,
        "ids": {"customerId": cid, "balanceId": balance, "partnerId": partner_id, "programId": program,
                "cardId": card["cardId"], "dcCorporationId": corporation, "networkId": network,
                "serial": "00"},
    }


@pytest.fixture
def live(database_url, key_material):
    server = LiveServer(database_url, key_material)
    server.start()
    assert server.ready.wait(60) and server.error is None, server.error
    yield server
    server.shutdown()


def _check(response: requests.Response, label: str) -> None:
    assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"code", "message"} and body["code"].isupper(), (label, body)


def test_fuzz_every_operation_finds_no_server_error(live):
    api = live.api
    data = live.call(seed(api))
    schema = schemathesis.openapi.from_dict(json.loads(cached_document()))
    routes = {(r.path, r.method.lower()): r for r in ROUTES}
    partner_http = requests.Session()
    partner_http.verify = str(api.ca.cert_path)
    partner_http.cert = (str(api.workdir / "partner.crt"), str(api.workdir / "partner.key"))
    network_http = requests.Session()
    network_http.verify = str(api.ca.cert_path)
    network_http.cert = (str(api.workdir / "network.crt"), str(api.workdir / "network.key"))
    plain = requests.Session()
    exercised = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        route = routes[(operation.path, operation.method.lower())]
        if route.path == "/admin/sessions/current" or route.path == "/customers/sessions/current":
            continue  # signing out would end the credentials the rest of the run needs
        headers, session, base = {}, plain, api.http
        if route.channel is Channel.ADMIN:
            headers = bearer(data["admin"])
        elif route.channel is Channel.CUSTOMER:
            headers = bearer(data["session"])
        elif route.channel is Channel.PARTNER:
            session, base = partner_http, api.https
        elif route.channel is Channel.NETWORK:
            session, base = network_http, api.https
        if route.encryption is Encryption.REQUIRED:
            headers |= {"Encrypt-Response": "true", "Public-Key": data["jwe_public"]}
        names = [p["name"] for p in json.loads(cached_document())["paths"][route.path][route.method.lower()]
                 ["parameters"] if p["in"] == "path"]
        real = {n: data["ids"][n] for n in names}
        for mode, path_parameters in ((GenerationMode.POSITIVE, real), (GenerationMode.NEGATIVE, None)):
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

            @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def run(case):
                case.headers = {**(case.headers or {}), **headers}
                response = case.call(base_url=base, session=session, timeout=30, verify=session.verify,
                                     cert=session.cert)
                _check(response, f"{route.method} {route.path}")

            try:
                run()
            except Unsatisfiable:
                # nothing about this operation can be made invalid (e.g. a GET with no parameters)
                assert mode is GenerationMode.NEGATIVE, route.path
                continue
            exercised += 1
    assert exercised >= len(ROUTES) + 40  # every operation with valid input, most with invalid input


def test_malformed_bodies_to_every_body_route_are_4xx(live):
    api = live.api
    data = live.call(seed(api))
    partner_http = requests.Session()
    partner_http.verify = str(api.ca.cert_path)
    partner_http.cert = (str(api.workdir / "partner.crt"), str(api.workdir / "partner.key"))
    bodies = [b"not json", b"{", b"[]", b'{"unknown": 1}', b"\xff\xfe", b'{"amount": "1"}', b"null",
              b"x" * (2 * 1024 * 1024)]
    for route in ROUTES:
        if route.body is None and not route.multipart:
            continue
        path = route.path
        for name, value in {"customerId": data["ids"]["customerId"], "balanceId": data["ids"]["balanceId"],
                            "cardId": data["ids"]["cardId"], "partnerId": data["ids"]["partnerId"],
                            "dcCorporationId": data["ids"]["dcCorporationId"],
                            "networkId": data["ids"]["networkId"], "serial": "00",
                            "programId": data["ids"]["programId"]}.items():
            path = path.replace("{" + name + "}", value)
        session, base, headers = requests.Session(), api.http, {}
        if route.channel is Channel.PARTNER:
            session, base = partner_http, api.https
        elif route.channel is Channel.ADMIN:
            headers = bearer(data["admin"])
        elif route.channel is Channel.CUSTOMER:
            headers = bearer(data["session"])
        for body in bodies:
            for extra in ({}, {"Encrypted-Request": "true", "Public-Key": data["jwe_public"]}):
                response = session.request(route.method, f"{base}{path}", data=body,
                                           headers={**headers, **extra, "Content-Type": "application/json"},
                                           timeout=30, verify=session.verify, cert=session.cert)
                _check(response, f"{route.method} {route.path} {body[:20]!r}")
                assert response.status_code >= 400 or route.channel is Channel.NETWORK, (route.path, body[:20])
