"""A fuzz pass over the OpenAPI document with schemathesis: no request, valid or not, gets a 5xx.

schemathesis calls synchronously, so it runs in a worker thread while the `api` fixture's server
keeps serving on the test's event loop. Every channel is driven with real credentials: an admin
token, a partner's client certificate, a customer's session, a network's certificate. Path ids
are real ones for valid requests (so handlers run deep) and random ones for invalid requests.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from dataclasses import dataclass

import aiohttp
import requests
import schemathesis
from hypothesis import given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from antaca_api.openapi import cached_document
from antaca_api.routing import ROUTES, Channel, Encryption, Route
from tests.api_harness import JweClient, bearer, make_csr, pair_device, register_customer

# Per operation and mode (valid, then invalid input): with every route of the API twice, 12 is
# ~2 minutes on two cores, a third of the suite. Derandomized, so each run sends the same cases and
# a failure reproduces; more examples would find little the mode and steering do not already.
EXAMPLES = 12
# Signing out would end the credentials the rest of the run needs.
JWE_HEADERS = {"Public-Key", "Encrypted-Request", "Encrypt-Response"}
SKIPPED = {("DELETE", "/admin/sessions/current"), ("DELETE", "/customers/sessions/current")}


@dataclass
class Seed:
    admin: str
    session: str | None  # a customer session, when device pairing exists
    jwe_public: str
    ids: dict[str, str]
    partner: requests.Session
    network: requests.Session


async def seed(api) -> Seed:
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
    async with api.client().get(f"{api.http}/public-key") as r:
        client = JweClient((await r.json())["pem"])
    status, card = await client.request(partner, "POST", f"{api.https}/secure/customers/{cid}/cards/virtual",
                                        {"balanceId": balance})
    assert status == 201, card
    session = None
    if any(r.path == "/customers/devices/pair" for r in ROUTES):
        session = (await pair_device(api, partner, cid))["sessionToken"]
    # A second device: the one the unpair route may take away, never the session's own.
    spare_device = (await pair_device(api, partner, cid, device_id="spare"))["installationId"]
    async with api.client().post(f"{api.http}/admin/users", headers=bearer(admin), json={
            "email": "fuzz-spare@antaca.test", "password": "a long enough password",
            "role": "EMPLOYEE"}) as r:
        spare_admin = (await r.json())["id"]
    async with partner.post(f"{api.https}/lifecycle/v1/corporations", json={
            "name": "Acme", "registrationNumber": "R1", "country": "PL",
            "address": {"line1": "a", "city": "b", "postalCode": "1", "country": "PL"}}) as r:
        corporation = (await r.json())["dcCorporationId"]
    form = aiohttp.FormData()
    form.add_field("kind", "REGISTRY_EXTRACT")
    form.add_field("file", b"%PDF-1.7\n%%EOF\n", filename="x.pdf", content_type="application/pdf")
    async with partner.post(f"{api.https}/lifecycle/v1/corporations/{corporation}/documents",
                            data=form) as r:
        document = (await r.json())["documentId"]
    async with api.client().post(f"{api.http}/admin/corporations/{corporation}/kyb", json={"status": "APPROVED"},
                                 headers=bearer(admin)) as r:
        assert r.status == 200, await r.text()
    async with api.client().post(f"{api.http}/admin/networks", json={"name": "Net"}, headers=bearer(admin)) as r:
        network = (await r.json())["networkId"]
    csr, network_key = make_csr()
    async with api.client().post(f"{api.http}/admin/networks/{network}/certificates", json={"csr": csr},
                                 headers=bearer(admin)) as r:
        network_cert = (await r.json())["certificate"]
    async with partner.post(f"{api.https}/secure/webhooks",
                            json={"url": "https://93.184.215.14/hooks"}) as r:
        endpoint = (await r.json())["endpointId"]
    return Seed(
        admin=admin, session=session, jwe_public=client.public_header,
        ids={"customerId": cid, "balanceId": balance, "partnerId": partner_id, "programId": program,
             "cardId": card["cardId"], "dcCorporationId": corporation, "networkId": network, "serial": "00",
             "installationId": spare_device, "documentId": document, "adminId": spare_admin,
             "endpointId": endpoint},
        partner=tls_session(api, "partner", cert, key), network=tls_session(api, "network", network_cert, network_key),
    )


def tls_session(api, name: str, cert_pem: str, key_pem: bytes) -> requests.Session:
    """A requests session presenting a client certificate and trusting Antaca's CA."""
    (api.workdir / f"{name}.crt").write_text(cert_pem)
    (api.workdir / f"{name}.key").write_bytes(key_pem)
    session = requests.Session()
    session.verify = str(api.ca.cert_path)
    session.cert = (str(api.workdir / f"{name}.crt"), str(api.workdir / f"{name}.key"))
    return session


def caller(api, data: Seed, route: Route) -> tuple[requests.Session, str, dict[str, str]]:
    """The session, base URL and headers a legitimate caller of this route uses."""
    if route.channel is Channel.PARTNER:
        return data.partner, api.https, {}
    if route.channel is Channel.NETWORK:
        return data.network, api.https, {}
    if route.channel is Channel.ADMIN:
        return requests.Session(), api.http, bearer(data.admin)
    if route.channel is Channel.CUSTOMER and data.session is not None:
        return requests.Session(), api.http, bearer(data.session)
    return requests.Session(), api.http, {}


def skipped(route: Route, data: Seed) -> bool:
    no_session = route.channel is Channel.CUSTOMER and route.authenticated and data.session is None
    return (route.method, route.path) in SKIPPED or no_session


def destructive_last(route: Route) -> tuple[bool, int]:
    # Closing the balance, terminating the card or un-verifying the customer early would turn every
    # later deep call into a 409.
    destructive = route.method == "DELETE" or route.path.endswith(("/close", "/status", "/revoke", "/kyc", "/kyb"))
    return destructive, ROUTES.index(route)


def check(response: requests.Response, label: str) -> None:
    assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"code", "message", "requestId"} and body["code"].isupper(), (label, body)


def fuzz(api, data: Seed) -> dict[tuple[str, str, GenerationMode], Counter]:
    """Run schemathesis over every operation; the status codes seen, per operation and mode."""
    document = json.loads(cached_document())
    schema = schemathesis.openapi.from_dict(document)
    operations = {(op.path, op.method.lower()): op for op in (result.ok() for result in schema.get_all_operations())}
    seen: dict[tuple[str, str, GenerationMode], Counter] = defaultdict(Counter)
    steered = data.ids | {"currency": "EUR"}
    for route in sorted(ROUTES, key=destructive_last):
        if skipped(route, data):
            continue
        operation = operations[(route.path, route.method.lower())]
        session, base, headers = caller(api, data, route)
        if route.encryption is Encryption.REQUIRED:
            headers = headers | {"Encrypt-Response": "true", "Public-Key": data.jwe_public}
        names = [p["name"] for p in document["paths"][route.path][route.method.lower()]["parameters"]
                 if p["in"] == "path"]
        real = {name: data.ids[name] for name in names}
        for mode, path_parameters in ((GenerationMode.POSITIVE, real), (GenerationMode.NEGATIVE, None)):
            label = (route.method, route.path, mode)
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

            # No health check suppressed: none fires on these strategies (seen on a full run).
            @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None)
            @given(case=strategy)
            def run(case):
                generated = case.headers or {}
                if mode is GenerationMode.POSITIVE:
                    # Random JWE headers are never valid (no real key): send only the caller's own.
                    generated = {k: v for k, v in generated.items() if k not in JWE_HEADERS}
                case.headers = {**generated, **headers}
                if mode is GenerationMode.POSITIVE and isinstance(case.body, dict) and sum(seen[label].values()) % 2:
                    # Every other valid body names the seeded records, so handlers get past "no such id".
                    case.body = {k: steered.get(k, v) for k, v in case.body.items()}
                response = case.call(base_url=base, session=session, timeout=30, verify=session.verify,
                                     cert=session.cert)
                seen[label][response.status_code] += 1
                check(response, f"{route.method} {route.path} ({mode.value})")

            try:
                run()
            except Unsatisfiable:
                # Nothing about this operation can be made invalid (e.g. a GET with no parameters).
                assert mode is GenerationMode.NEGATIVE, route.path
    return seen


async def test_fuzz_every_operation_finds_no_server_error(api):
    data = await seed(api)
    seen = await asyncio.to_thread(fuzz, api, data)
    routes = [r for r in ROUTES if not skipped(r, data)]
    positive = {(m, p): codes for (m, p, mode), codes in seen.items() if mode is GenerationMode.POSITIVE}
    assert set(positive) == {(r.method, r.path) for r in routes}
    # Guard against a fuzz that only ever meets the authentication wall: each channel's
    # credentials must get real work done, and most operations must succeed at least once.
    worked = {key for key, codes in positive.items() if any(200 <= code < 300 for code in codes)}
    assert {r.channel for r in routes if (r.method, r.path) in worked} == {r.channel for r in routes}
    assert len(worked) >= 0.6 * len(positive), sorted(set(positive) - worked)
    negatives = sum(1 for (_, _, mode) in seen if mode is GenerationMode.NEGATIVE)
    assert negatives >= 0.5 * len(positive)


async def test_malformed_bodies_to_every_body_route_are_4xx(api):
    data = await seed(api)
    bodies = [b"not json", b"{", b"[]", b'{"unknown": 1}', b"\xff\xfe", b'{"amount": "1"}', b"null",
              b'{"a": "\\u0000"}', b"x" * (2 * 1024 * 1024)]

    def send_all() -> int:
        sent = 0
        for route in ROUTES:
            if route.body is None and not route.multipart:
                continue
            path = route.path
            for name, value in data.ids.items():
                path = path.replace("{" + name + "}", value)
            session, base, headers = caller(api, data, route)
            for body in bodies:
                for extra in ({}, {"Encrypted-Request": "true", "Public-Key": data.jwe_public}):
                    response = session.request(route.method, f"{base}{path}", data=body,
                                               headers={**headers, **extra, "Content-Type": "application/json"},
                                               timeout=30, verify=session.verify, cert=session.cert)
                    check(response, f"{route.method} {route.path} {body[:20]!r}")
                    assert response.status_code >= 400, (route.path, body[:20], response.text[:200])
                    sent += 1
        return sent

    assert await asyncio.to_thread(send_all) >= 2 * len(bodies) * 20
