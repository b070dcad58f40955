"""What a schemathesis run over the API needs: real credentials and ids for every channel, and the
caller each route expects (tests/integration/test_fuzz.py, test_openapi_conformance.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import aiohttp
import requests

from antaca_api.routing import ROUTES, Channel, Route
from tests.api_harness import JweClient, bearer, make_csr, pair_device, register_customer

JWE_HEADERS = {"Public-Key", "Encrypted-Request", "Encrypt-Response"}
# Signing out would end the credentials the rest of the run needs.
SKIPPED = {("DELETE", "/admin/sessions/current"), ("DELETE", "/customers/sessions/current")}


def skipped(route: Route, data: Seed) -> bool:
    no_session = route.channel is Channel.CUSTOMER and route.authenticated and data.session is None
    return (route.method, route.path) in SKIPPED or no_session


def destructive_last(route: Route) -> tuple[bool, int]:
    # Closing the balance, terminating the card or un-verifying the customer early would turn every
    # later deep call into a 409.
    destructive = route.method == "DELETE" or route.path.endswith(
        ("/close", "/status", "/revoke", "/kyc", "/kyb"))
    return destructive, ROUTES.index(route)


def path_ids(data: "Seed", names: list[str]) -> dict[str, str]:
    """Real ids for a route's path parameters; one the seed has none of is a fresh (unknown) id."""
    return {name: data.ids.get(name, str(uuid.uuid4())) for name in names}


def steered(body: object, data: "Seed") -> object:
    """A generated body naming the seeded records (and currency), so a handler gets past "no
    such id"; anything else as generated."""
    if not isinstance(body, dict):
        return body
    known = data.ids | {"currency": "EUR"}
    return {k: known.get(k, v) for k, v in body.items()}


@dataclass
class Seed:
    admin: str
    session: str | None  # a customer session, when device pairing exists
    jwe_public: str
    jwe: JweClient  # the key behind jwe_public: decrypts the encrypted answers
    ids: dict[str, str]
    partner: requests.Session
    network: requests.Session
    pan: str  # the seeded card's, for the network channel's messages


async def seed(api) -> Seed:
    """Real credentials and ids for every channel."""
    admin = await api.admin_token()
    partner_id, partner = await api.partner(admin)
    cert, key, _ = await api.partner_certificate(admin, partner_id)
    customer = await register_customer(api, partner, verified=True)
    cid = customer["customerId"]
    async with partner.post(f"{api.https}/secure/customers/{cid}/balances",
                            json={"currency": "EUR"}) as r:
        balance = (await r.json())["balanceId"]
    async with api.client().post(f"{api.http}/admin/programs", headers=bearer(admin), json={
            "partnerId": partner_id, "name": "P", "binPrefix": "535522", "panLength": 16,
            "currency": "EUR", "fundingModel": "DEPOSIT", "validityMonths": 24}) as r:
        program = (await r.json())["programId"]
    async with api.client().get(f"{api.http}/public-key") as r:
        client = JweClient((await r.json())["pem"])
    status, card = await client.request(partner, "POST",
                                        f"{api.https}/secure/customers/{cid}/cards/virtual",
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
    async with api.client().post(f"{api.http}/admin/corporations/{corporation}/kyb",
                                 json={"status": "APPROVED"}, headers=bearer(admin)) as r:
        assert r.status == 200, await r.text()
    async with api.client().post(f"{api.http}/admin/networks", json={"name": "Net"},
                                 headers=bearer(admin)) as r:
        network = (await r.json())["networkId"]
    csr, network_key = make_csr()
    async with api.client().post(f"{api.http}/admin/networks/{network}/certificates",
                                 json={"csr": csr}, headers=bearer(admin)) as r:
        network_cert = (await r.json())["certificate"]
    async with partner.post(f"{api.https}/secure/controls", json={
            "level": "CARD", "scopeId": card["cardId"], "kind": "AMOUNT_MAX",
            "amountMax": 100_000}) as r:
        control = (await r.json())["controlId"]
    async with partner.post(f"{api.https}/secure/webhooks",
                            json={"url": "https://93.184.215.14/hooks"}) as r:
        endpoint = (await r.json())["endpointId"]
    return Seed(
        admin=admin, session=session, jwe_public=client.public_header, jwe=client,
        ids={"customerId": cid, "balanceId": balance, "partnerId": partner_id,
             "programId": program, "cardId": card["cardId"], "dcCorporationId": corporation,
             "networkId": network, "serial": "00", "installationId": spare_device,
             "documentId": document, "adminId": spare_admin, "endpointId": endpoint,
             "controlId": control},
        partner=tls_session(api, "partner", cert, key),
        network=tls_session(api, "network", network_cert, network_key), pan=card["pan"],
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


