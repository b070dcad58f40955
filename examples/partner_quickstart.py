#!/usr/bin/env python3
"""A partner's first hour with Antaca, as one script (docs/api.md walks through the same story).

Against a service started with `make run` (sandbox on: ANTACA_SANDBOX=1, and
ANTACA_WEBHOOK_ALLOW_PRIVATE_TARGETS=1 so that this script's own plain-http receiver on 127.0.0.1
may take webhooks), it:

  1. creates an administrator with `antaca admin create-user` (or logs in with --admin-email and
     --admin-password) and logs in;
  2. onboards a partner: the partner's own EC key, a CSR, the client certificate Antaca signs;
  3. creates a DEPOSIT card program and funds the partner's deposit;
  4. registers a user and runs Antaca's KYC for them;
  5. opens the user's balance and reloads it;
  6. issues a virtual card (its data comes back as a JWE) and reads the card data again (JWE);
  7. registers a webhook endpoint served by this script;
  8. simulates an authorization and its clearing through the sandbox;
  9. checks the webhooks received (Standard Webhooks signatures verified with its own HMAC code)
     and the balance the payment left.

Written with aiohttp, cryptography and jwcrypto only: nothing from Antaca's own packages. Its
last line is one JSON object: {"ok": true, "steps": N, "seconds": S} (ok false and the error on
a failure, exit status 1).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import shutil
import ssl
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from jwcrypto import jwe, jwk

CURRENCY = "EUR"
DEPOSIT_AMOUNT = 1_000_000  # minor units: EUR 10,000.00 in the partner's deposit
RELOAD_AMOUNT = 10_000  # EUR 100.00 on the user's balance
PAYMENT_AMOUNT = 2_500  # EUR 25.00 at the simulated merchant
BIN_PREFIX = "535599"
WEBHOOK_TIMEOUT_SECONDS = 30.0  # the service's webhook worker passes every second by default
WEBHOOK_TOLERANCE_SECONDS = 300  # a signature's timestamp may be this far from our clock
EXPECTED_EVENTS = ("authorization.approved", "authorization.clearing")
REQUEST_TIMEOUT_SECONDS = 30.0
TRANSCRIPT_STRING_MAX = 120  # longer strings (certificates, JWE payloads) are cut in a transcript
# Shown as "..." in a transcript: credentials a document must not carry.
TRANSCRIPT_HIDDEN = frozenset({"token", "password", "secret", "webhookSecret"})
TRANSCRIPT_HEADERS = ("Authorization", "Idempotency-Key", "Encrypt-Response", "Public-Key")


class QuickstartFailed(Exception):
    """A step did not get the answer it needs."""


class Transcript:
    """The requests and responses of a run, as Markdown (for docs/api.md), when asked for."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def step(self, title: str) -> None:
        self.parts.append(f"\n### {title}\n")

    def note(self, text: str) -> None:
        self.parts.append(f"\n{text}\n")

    def exchange(self, method: str, path: str, headers: dict, body, status: int,
                 answer) -> None:
        request = f"{method} {path}"
        for name in TRANSCRIPT_HEADERS:
            if name in headers:
                value = "Bearer ..." if name == "Authorization" else _cut(headers[name])
                request += f"\n{name}: {value}"
        if body is not None:
            request += "\n" + json.dumps(_cut(body), indent=2)
        response = f"{status}"
        if answer is not None:
            response += "\n" + json.dumps(_cut(answer), indent=2)
        self.parts.append(f"\n```http\n{request}\n```\n\n```json\n{response}\n```\n")

    def text(self) -> str:
        return "".join(self.parts)


def _cut(value):
    if isinstance(value, str) and len(value) > TRANSCRIPT_STRING_MAX:
        return value[:40] + "..." + value[-20:]
    if isinstance(value, dict):
        return {k: "..." if k in TRANSCRIPT_HIDDEN else _cut(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut(v) for v in value]
    return value


class JweParty:
    """The partner's side of JWE: its own RSA key, Antaca's public key."""

    def __init__(self, server_pem: str) -> None:
        self.server_key = jwk.JWK.from_pem(server_pem.encode())
        self.key = jwk.JWK.generate(kty="RSA", size=2048)
        public_pem = self.key.export_to_pem(private_key=False)
        self.public_header = base64.b64encode(public_pem).decode()

    def open(self, envelope: dict) -> dict:
        token = jwe.JWE()
        token.deserialize(envelope["payload"], key=self.key)
        return json.loads(token.payload)


def verify_webhook(secret: str, headers, body: bytes, now: float) -> bool:
    """Standard Webhooks: HMAC-SHA256 of "id.timestamp.body" under the whsec_ secret, any of the
    space-separated v1 signatures, a timestamp near our clock."""
    message_id, timestamp = headers.get("webhook-id"), headers.get("webhook-timestamp")
    if not message_id or not timestamp or not timestamp.isdigit():
        return False
    if abs(now - int(timestamp)) > WEBHOOK_TOLERANCE_SECONDS:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in headers.get("webhook-signature", "").split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


class WebhookReceiver:
    """A small aiohttp server on 127.0.0.1 that keeps what it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[dict, bytes, dict]] = []  # (headers, body, decoded)
        self.arrived = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/webhooks", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/webhooks"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((dict(request.headers), body, json.loads(body)))
        self.arrived.set()
        return web.Response(status=204)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def new_csr(common_name: str) -> tuple[str, bytes]:
    """The partner's own key (it never leaves the partner) and a CSR for it."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
           .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def antaca_command(given: str | None) -> list[str]:
    """How to run `antaca`: as given, on the PATH, or beside this Python (the project's venv)."""
    if given:
        return given.split()
    found = shutil.which("antaca") or str(Path(sys.executable).with_name("antaca"))
    return [found]


class Quickstart:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.base = args.base_url.rstrip("/")
        self.tls = args.tls_url.rstrip("/")
        self.steps = 0
        self.transcript = Transcript()
        self.workdir = Path(tempfile.mkdtemp(prefix="antaca-quickstart-"))
        self.sessions: list[aiohttp.ClientSession] = []
        self.receiver = WebhookReceiver()

    def done(self, what: str) -> None:
        self.steps += 1
        print(f"step {self.steps}: {what}", flush=True)

    def session(self, ssl_context: ssl.SSLContext | None = None) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
        connector = aiohttp.TCPConnector(ssl=ssl_context) if ssl_context else None
        session = aiohttp.ClientSession(timeout=timeout, connector=connector)
        self.sessions.append(session)
        return session

    async def call(self, session: aiohttp.ClientSession, method: str, url: str, body=None, *,
                   headers: dict | None = None, expect: tuple[int, ...] = (200, 201),
                   shown_body=None) -> dict | None:
        async with session.request(method, url, json=body, headers=headers) as response:
            status = response.status
            answer = None if status == 204 else await response.json()
        path = url.split("://", 1)[1].split("/", 1)[1]
        self.transcript.exchange(method, "/" + path, headers or {},
                                 shown_body if shown_body is not None else body, status, answer)
        if status not in expect:
            raise QuickstartFailed(f"{method} /{path} answered {status}: {answer}")
        return answer

    async def run(self) -> None:
        try:
            admin = await self.administrator()
            partner = await self.onboard_partner(admin)
            await self.program_and_deposit(admin)
            customer_id, balance_id = await self.user_and_balance(partner)
            card = await self.virtual_card(partner, customer_id, balance_id)
            secret = await self.webhook_endpoint(partner)
            await self.payment(partner, card)
            await self.check_webhooks(secret)
            await self.check_balance(partner, customer_id, balance_id)
        finally:
            for session in self.sessions:
                await session.close()
            await self.receiver.stop()
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def administrator(self) -> dict:
        self.transcript.step("An administrator")
        email, password = self.args.admin_email, self.args.admin_password
        if email is None:
            email = f"quickstart-{uuid.uuid4().hex[:8]}@example.com"
            password = secrets.token_urlsafe(18)
            command = [*antaca_command(self.args.antaca_command), "admin", "create-user",
                       "--email", email, "--password-stdin"]
            process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT)
            output, _ = await process.communicate((password + "\n").encode())
            if process.returncode != 0:
                raise QuickstartFailed(f"antaca admin create-user failed: {output.decode()}")
            self.transcript.note(f"`antaca admin create-user --email {email} --password-stdin`")
            self.done(f"administrator {email} created")
        session = await self.call(self.session(), "POST", f"{self.base}/admin/sessions",
                                  {"email": email, "password": password},
                                  shown_body={"email": email, "password": "..."})
        self.admin_headers = {"Authorization": f"Bearer {session['token']}"}
        self.done("administrator logged in")
        return self.admin_headers

    async def onboard_partner(self, admin: dict) -> aiohttp.ClientSession:
        self.transcript.step("A partner, its key and its client certificate")
        http = self.session()
        partner = await self.call(http, "POST", f"{self.base}/admin/partners",
                                  {"name": f"Quickstart {uuid.uuid4().hex[:6]}"}, headers=admin)
        self.partner_id = partner["id"]
        csr, key_pem = new_csr("quickstart-partner")
        issued = await self.call(http, "POST",
                                 f"{self.base}/admin/partners/{self.partner_id}/certificates",
                                 {"csr": csr}, headers=admin)
        (self.workdir / "partner.crt").write_text(issued["certificate"])
        (self.workdir / "partner.key").write_bytes(key_pem)
        (self.workdir / "ca.pem").write_text(issued["caCertificate"])
        context = ssl.create_default_context(cafile=str(self.workdir / "ca.pem"))
        context.load_cert_chain(self.workdir / "partner.crt", self.workdir / "partner.key")
        self.done("partner onboarded with its own key, a CSR and a client certificate")
        return self.session(context)

    async def program_and_deposit(self, admin: dict) -> None:
        self.transcript.step("A DEPOSIT program and the partner's funded deposit")
        http = self.session()
        await self.call(http, "POST", f"{self.base}/admin/programs", {
            "partnerId": self.partner_id, "name": "Quickstart debit", "binPrefix": BIN_PREFIX,
            "panLength": 16, "currency": CURRENCY, "fundingModel": "DEPOSIT",
            "validityMonths": 36}, headers=admin)
        self.done("DEPOSIT card program created")
        base = f"{self.base}/admin/partners/{self.partner_id}/balances"
        deposit = await self.call(http, "POST", base, {"kind": "DEPOSIT", "currency": CURRENCY},
                                  headers=admin)
        await self.call(http, "POST", f"{base}/{deposit['balanceId']}/reload",
                        {"amount": DEPOSIT_AMOUNT, "bankReference": f"qs-{uuid.uuid4().hex[:12]}"},
                        headers=admin)
        self.done("partner deposit funded")

    async def user_and_balance(self, partner: aiohttp.ClientSession) -> tuple[str, str]:
        self.transcript.step("A user, Antaca's KYC, a balance and a reload")
        customer = await self.call(partner, "POST", f"{self.tls}/secure/customers", {
            "externalId": f"user-{uuid.uuid4().hex[:10]}", "firstName": "Ada",
            "lastName": "Lovelace", "email": "ada@example.com", "phone": "+48123456789",
            "birthDate": "1990-12-10", "country": "PL",
            "address": {"line1": "Main 1", "city": "Warsaw", "postalCode": "00-001",
                        "country": "PL"}})
        customer_id = customer["customerId"]
        self.done("user registered")
        kyc = await self.call(partner, "POST",
                              f"{self.tls}/secure/customers/{customer_id}/register",
                              {"documentType": "ID_CARD", "documentNumber": "ABC123456",
                               "documentCountry": "PL"})
        if kyc["kycStatus"] != "VERIFIED":
            raise QuickstartFailed(f"KYC did not verify the user: {kyc}")
        self.done("user verified by KYC")
        base = f"{self.tls}/secure/customers/{customer_id}/balances"
        balance = await self.call(partner, "POST", base, {"currency": CURRENCY})
        balance_id = balance["balanceId"]
        self.done("balance opened")
        await self.call(partner, "POST", f"{base}/{balance_id}/reload",
                        {"amount": RELOAD_AMOUNT, "reference": "first top-up"},
                        headers={"Idempotency-Key": f"reload-{uuid.uuid4()}"})
        self.done("balance reloaded")
        return customer_id, balance_id

    async def virtual_card(self, partner: aiohttp.ClientSession, customer_id: str,
                           balance_id: str) -> dict:
        self.transcript.step("A virtual card and its data, through JWE")
        key = await self.call(self.session(), "GET", f"{self.base}/public-key")
        self.jwe = JweParty(key["pem"])
        encrypted = {"Encrypt-Response": "true", "Public-Key": self.jwe.public_header}
        base = f"{self.tls}/secure/customers/{customer_id}/cards"
        envelope = await self.call(partner, "POST", f"{base}/virtual", {"balanceId": balance_id},
                                   headers={**encrypted, "Idempotency-Key": str(uuid.uuid4())})
        card = self.jwe.open(envelope)
        self.transcript.note("The response's payload decrypts (with the partner's RSA key) to:\n\n"
                             "```json\n" + json.dumps(masked(card), indent=2) + "\n```")
        self.done(f"virtual card issued ({card['status']})")
        envelope = await self.call(partner, "GET", f"{base}/{card['cardId']}", headers=encrypted)
        data = self.jwe.open(envelope)
        if (data["pan"], data["cvc2"]) != (card["pan"], card["cvc2"]):
            raise QuickstartFailed("the card data read back differs from the issued card's")
        self.done("card data read through JWE")
        return card

    async def webhook_endpoint(self, partner: aiohttp.ClientSession) -> str:
        self.transcript.step("A webhook endpoint served by the partner")
        await self.receiver.start()
        endpoint = await self.call(partner, "POST", f"{self.tls}/secure/webhooks",
                                   {"url": self.receiver.url, "eventTypes": list(EXPECTED_EVENTS)},
                                   headers={"Idempotency-Key": str(uuid.uuid4())})
        self.done(f"webhook endpoint registered at {self.receiver.url}")
        return endpoint["secret"]

    async def payment(self, partner: aiohttp.ClientSession, card: dict) -> None:
        self.transcript.step("A simulated payment: authorization, then clearing")
        answer = await self.call(partner, "POST", f"{self.tls}/secure/simulate/authorizations", {
            "cardId": card["cardId"], "amount": PAYMENT_AMOUNT, "currency": CURRENCY,
            "merchantName": "Quickstart Coffee"})
        if answer["decision"] != "APPROVED":
            raise QuickstartFailed(f"the simulated authorization was declined: {answer}")
        self.authorization_id = answer["authorizationId"]
        self.done("authorization simulated: APPROVED")
        cleared = await self.call(partner, "POST", f"{self.tls}/secure/simulate/clearings", {
            "cardId": card["cardId"], "originalMessageId": answer["messageId"],
            "amount": PAYMENT_AMOUNT})
        if cleared["kind"] != "CLEARING":
            raise QuickstartFailed(f"the clearing was not booked: {cleared}")
        self.done("clearing simulated")

    async def check_webhooks(self, secret: str) -> None:
        self.transcript.step("The webhooks received")
        deadline = time.monotonic() + WEBHOOK_TIMEOUT_SECONDS
        while not self._all_arrived():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                got = [d["type"] for _, _, d in self.receiver.received]
                raise QuickstartFailed(f"webhooks missing after {WEBHOOK_TIMEOUT_SECONDS:.0f} s; "
                                       f"received {got}")
            self.receiver.arrived.clear()
            try:
                await asyncio.wait_for(self.receiver.arrived.wait(), remaining)
            except TimeoutError:
                continue
        for headers, body, decoded in self.receiver.received:
            if not verify_webhook(secret, headers, body, time.time()):
                raise QuickstartFailed(f"a webhook's signature does not verify: {decoded['type']}")
        headers, _, decoded = self.receiver.received[0]
        shown = {k: v for k, v in headers.items() if k.lower().startswith("webhook-")}
        self.transcript.note("Headers and body of the first delivery:\n\n```json\n"
                             + json.dumps(_cut({"headers": shown, "body": decoded}), indent=2)
                             + "\n```")
        types = sorted({d["type"] for _, _, d in self.receiver.received})
        self.done(f"webhooks received and verified: {', '.join(types)}")

    def _all_arrived(self) -> bool:
        seen = {(d["type"], d["objectId"]) for _, _, d in self.receiver.received}
        return all((t, self.authorization_id) in seen for t in EXPECTED_EVENTS)

    async def check_balance(self, partner: aiohttp.ClientSession, customer_id: str,
                            balance_id: str) -> None:
        self.transcript.step("The balance after the payment")
        balance = await self.call(
            partner, "GET", f"{self.tls}/secure/customers/{customer_id}/balances/{balance_id}")
        expected = RELOAD_AMOUNT - PAYMENT_AMOUNT
        if (balance["posted"], balance["available"]) != (expected, expected):
            raise QuickstartFailed(f"the balance should be {expected} posted and available: "
                                   f"{balance}")
        self.done(f"balance is {expected} after the payment")


def masked(card: dict) -> dict:
    """Card data as a transcript may show it."""
    shown = dict(card)
    for name in ("pan", "cardNo"):
        if isinstance(shown.get(name), str):
            shown[name] = shown[name][:6] + "******" + shown[name][-4:]
    for name in ("cvc2", "cvv"):
        if name in shown:
            shown[name] = "***"
    return shown


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8080",
                        help="the plain listener: public and admin channels")
    parser.add_argument("--tls-url", default="https://127.0.0.1:8443",
                        help="the TLS listener: the partner channel, with the client certificate")
    parser.add_argument("--admin-email", help="an existing administrator (else one is created)")
    parser.add_argument("--admin-password", default=os.environ.get("ANTACA_ADMIN_PASSWORD"))
    parser.add_argument("--antaca-command",
                        help="how to run the antaca command (default: antaca on the PATH or "
                             "beside this Python)")
    parser.add_argument("--transcript", type=Path,
                        help="write the requests and responses as Markdown to this file")
    args = parser.parse_args(argv)
    if args.admin_email and not args.admin_password:
        parser.error("--admin-email needs --admin-password (or ANTACA_ADMIN_PASSWORD)")
    return args


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    quickstart = Quickstart(args)
    try:
        await quickstart.run()
        ok, error = True, None
    except (QuickstartFailed, aiohttp.ClientError, OSError, TimeoutError) as exc:
        ok, error = False, f"{type(exc).__name__}: {exc}"
    if args.transcript is not None:
        args.transcript.write_text(quickstart.transcript.text())
    result = {"ok": ok, "steps": quickstart.steps,
              "seconds": round(time.monotonic() - started, 2)}
    if error is not None:
        result["error"] = error
    print(json.dumps(result), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
