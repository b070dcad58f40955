"""Run the real application over HTTP and TLS for tests, and act as its different callers."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from antaca_api.admins import create_admin_user
from antaca_api.app import create_app
from antaca_api.hardening import HardenedAppRunner
from antaca_api.pki import CertificateAuthority
from antaca_api.routing import Role
from antaca_api.services import Services

ADMIN_PASSWORD = "correct horse battery staple"


def listening_socket() -> socket.socket:
    """A TCP socket on 127.0.0.1 bound to a port the system chose, listening."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


# Ports for servers started in another process, below the range the system gives outgoing
# connections (Linux: 32768-60999), so that no client socket takes one between the choice and the bind.
SERVER_PORTS = range(20_000, 32_000)


def free_port() -> int:
    """A port nothing listens on now, outside the system's range for outgoing connections."""
    for port in random.sample(SERVER_PORTS, 64):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no free port in the server range")


def make_csr(common_name: str = "partner-server") -> tuple[str, bytes]:
    """A fresh EC key and a CSR for it: (CSR PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key_pem


@dataclass
class ApiServer:
    services: Services
    ca: CertificateAuthority
    http: str  # base URL of the plain listener
    https: str  # base URL of the TLS listener
    workdir: Path
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    def client(self, *, cert: tuple[str, bytes] | None = None) -> aiohttp.ClientSession:
        """An HTTP client that trusts Antaca's CA and, given (cert PEM, key PEM), presents that certificate."""
        context = ssl.create_default_context(cafile=str(self.ca.cert_path))
        if cert is not None:
            cert_pem, key_pem = cert
            name = uuid.uuid4().hex
            (self.workdir / f"{name}.crt").write_text(cert_pem)
            (self.workdir / f"{name}.key").write_bytes(key_pem)
            context.load_cert_chain(self.workdir / f"{name}.crt", self.workdir / f"{name}.key")
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
        self.sessions.append(session)
        return session

    async def admin_token(self, role: Role = Role.ADMIN) -> str:
        """A logged-in administrator of `role` (created directly, logged in over HTTP)."""
        email = f"{role.lower()}-{uuid.uuid4().hex[:8]}@antaca.test"
        async with self.services.pool.acquire() as conn:
            await create_admin_user(conn, email, ADMIN_PASSWORD, role)
        async with self.client().post(f"{self.http}/admin/sessions",
                                      json={"email": email, "password": ADMIN_PASSWORD}) as r:
            assert r.status == 201, await r.text()
            return (await r.json())["token"]

    async def new_partner(self, admin_token: str, name: str = "Partner") -> str:
        async with self.client().post(f"{self.http}/admin/partners", json={"name": name},
                                      headers={"Authorization": f"Bearer {admin_token}"}) as r:
            assert r.status == 201, await r.text()
            return (await r.json())["id"]

    async def partner_certificate(self, admin_token: str, partner_id: str) -> tuple[str, bytes, dict]:
        """A client certificate for the partner, through the CSR endpoint: (cert PEM, key PEM, response)."""
        csr, key_pem = make_csr()
        async with self.client().post(f"{self.http}/admin/partners/{partner_id}/certificates", json={"csr": csr},
                                      headers={"Authorization": f"Bearer {admin_token}"}) as r:
            assert r.status == 201, await r.text()
            body = await r.json()
        return body["certificate"], key_pem, body

    async def partner(self, admin_token: str | None = None) -> tuple[str, aiohttp.ClientSession]:
        """A new partner and an mTLS client holding its certificate."""
        admin_token = admin_token or await self.admin_token()
        partner_id = await self.new_partner(admin_token)
        cert, key, _ = await self.partner_certificate(admin_token, partner_id)
        return partner_id, self.client(cert=(cert, key))


async def start_api(services: Services, ca: CertificateAuthority, extra_routes=()) -> tuple[ApiServer, web.AppRunner]:
    runner = HardenedAppRunner(create_app(services, list(extra_routes)), access_log=None)
    await runner.setup()
    # Sockets bound to port 0 and handed to the sites: a port chosen first and bound later can be
    # taken in between by any outgoing connection (seen: "address already in use" in CI).
    http_socket, https_socket = listening_socket(), listening_socket()
    http_port, https_port = http_socket.getsockname()[1], https_socket.getsockname()[1]
    await web.SockSite(runner, http_socket).start()
    tls = ca.server_ssl_context(["127.0.0.1", "localhost"])
    await web.SockSite(runner, https_socket, ssl_context=tls).start()
    workdir = Path(tempfile.mkdtemp(prefix="antaca-api-test-"))
    server = ApiServer(services, ca, f"http://127.0.0.1:{http_port}", f"https://127.0.0.1:{https_port}", workdir)
    return server, runner


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def customer_body(external_id: str | None = None, **changes) -> dict:
    body = {
        "externalId": external_id or uuid.uuid4().hex[:12], "firstName": "Ada", "lastName": "Lovelace",
        "email": "ada@example.com", "phone": "+48123456789", "birthDate": "1990-12-10",
        "address": {"line1": "Main 1", "city": "Warsaw", "postalCode": "00-001", "country": "PL"},
        "country": "PL",
    }
    body.update(changes)
    return body


async def register_customer(api: ApiServer, partner: aiohttp.ClientSession, *, verified: bool = False, **changes) -> dict:
    """A customer of the partner; `verified` sets the partner's own KYC result."""
    async with partner.post(f"{api.https}/secure/customers", json=customer_body(**changes)) as r:
        assert r.status == 201, await r.text()
        customer = await r.json()
    if verified:
        async with partner.put(f"{api.https}/secure/customers/{customer['customerId']}/kyc",
                               json={"status": "VERIFIED"}) as r:
            assert r.status == 200, await r.text()
        customer["kycStatus"] = "VERIFIED"
    return customer


async def create_network(api: ApiServer, admin_token: str,
                         name: str = "Mastercard") -> tuple[str, tuple[str, bytes]]:
    """A card network (admin channel) and a client certificate for it: (network id, (cert, key))."""
    async with api.client().post(f"{api.http}/admin/networks", json={"name": name},
                                 headers=bearer(admin_token)) as r:
        assert r.status == 201, await r.text()
        network_id = (await r.json())["networkId"]
    csr, key = make_csr()
    async with api.client().post(f"{api.http}/admin/networks/{network_id}/certificates",
                                 json={"csr": csr}, headers=bearer(admin_token)) as r:
        assert r.status in (200, 201), await r.text()
        return network_id, ((await r.json())["certificate"], key)


async def pair_device(api: ApiServer, partner: aiohttp.ClientSession, customer_id: str,
                      device_id: str = "device-1") -> dict:
    """Pairing as the product does it: the partner gets a code, the app pairs with it."""
    async with partner.post(f"{api.https}/secure/customers/{customer_id}/devices/pairing-codes") as r:
        assert r.status == 201, await r.text()
        code = (await r.json())["pairingCode"]
    async with api.client().post(f"{api.http}/customers/devices/pair",
                                 json={"pairingCode": code, "deviceId": device_id}) as r:
        assert r.status == 201, await r.text()
        return await r.json()


class JweClient:
    """A partner's or app's JWE side, with joserfc: an implementation independent of the server's."""

    def __init__(self, server_pem: str, key=None) -> None:
        import base64

        from joserfc.jwk import RSAKey

        self.server_key = RSAKey.import_key(server_pem)
        self.key = key or RSAKey.generate_key(2048)
        self.public_header = base64.b64encode(self.key.as_pem(private=False)).decode()

    def seal(self, body: dict, alg: str = "RSA-OAEP-256") -> dict:
        import json

        from joserfc import jwe

        return {"payload": jwe.encrypt_compact({"alg": alg, "enc": "A256GCM"}, json.dumps(body), self.server_key,
                                               algorithms=[alg, "A256GCM"])}

    def open(self, envelope: dict) -> dict:
        import json

        from joserfc import jwe

        return json.loads(jwe.decrypt_compact(envelope["payload"], self.key,
                                              algorithms=["RSA-OAEP-256", "A256GCM"]).plaintext)

    async def request(self, session: aiohttp.ClientSession, method: str, url: str, body: dict | None = None,
                      headers: dict | None = None) -> tuple[int, dict | None]:
        """Send with Encrypted-Request (a body) or Encrypt-Response (none); decrypt a 2xx answer."""
        all_headers = {"Public-Key": self.public_header, **(headers or {})}
        if body is not None:
            all_headers["Encrypted-Request"] = "true"
        else:
            all_headers["Encrypt-Response"] = "true"
        async with session.request(method, url, json=None if body is None else self.seal(body),
                                   headers=all_headers) as r:
            if r.status == 204:
                return r.status, None
            answer = await r.json()
            return r.status, (self.open(answer) if 200 <= r.status < 300 else answer)


@contextlib.asynccontextmanager
async def running_api(pool, key_material, database_url: str,
                      settings=None) -> AsyncIterator[ApiServer]:
    """The whole application, as `antaca serve` wires it, on real HTTP and TLS listeners (with
    these settings, or the defaults)."""
    from antaca_api.credentials import listen
    from antaca_api.kyc import DeterministicKycProvider
    from antaca_api.remote_partners import RemotePartners
    from antaca_api.server import open_authorization_pool
    from antaca_api.settings import Settings
    from antaca_auth.cardkeys import CardKeys
    from antaca_auth.engine import AuthorizationEngine
    from antaca_auth.followups import FollowUps
    from antaca_auth.ledger import Ledger

    jwe_key, ca = key_material
    settings = settings or Settings()
    # As `antaca serve` does: the engine and the network channel on their own pool.
    authorization_pool = await open_authorization_pool(database_url, settings.engine)
    services = Services(pool=pool, ledger=Ledger(pool), settings=settings, jwe_key=jwe_key, ca=ca,
                        kyc_provider=DeterministicKycProvider(), card_keys=CardKeys.generate(),
                        authorization_pool=authorization_pool)
    services.engine = AuthorizationEngine(authorization_pool, services.authorization_ledger,
                                          services.card_keys, services.settings.engine)
    services.follow_ups = FollowUps(
        authorization_pool, services.authorization_ledger, services.card_keys,
        hold_seconds=services.engine.hold_seconds,
        clearing_tolerance_percent=services.settings.clearing_tolerance_percent)
    services.engine.remote = RemotePartners(services)
    await services.engine.start()
    server, runner = await start_api(services, ca)
    # Certificate lookups cached as `antaca serve` does, so every API test runs through the cache.
    listener = asyncio.create_task(listen(database_url, services.credentials))
    try:
        for _ in range(200):
            if services.credentials.live:
                break
            await asyncio.sleep(0.01)
        assert services.credentials.live, "the credential listener did not start"
        yield server
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await services.engine.stop()
        await services.engine.remote.close()
        await asyncio.gather(*services.tasks, return_exceptions=True)
        for session in server.sessions:
            await session.close()
        await runner.cleanup()
        await services.background_cpu.close()
        await authorization_pool.close()
