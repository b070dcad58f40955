"""JWE over real HTTP and TLS, with joserfc as the client's independent JOSE implementation."""

from __future__ import annotations

import base64
import json
import uuid

import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwe
from joserfc.jwk import RSAKey

from antaca_api.routing import Channel, Context, Encryption, Route
from tests.api_harness import customer_body, start_api

ALGORITHMS = ["RSA-OAEP-256", "RSA-OAEP", "RSA1_5", "A256GCM", "A128GCM", "A256CBC-HS512", "DEF"]
CLIENT_KEY = RSAKey.generate_key(2048)  # the partner's own key pair, once per module (RSA generation is slow)
OTHER_KEY = RSAKey.generate_key(2048)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


PUBLIC_KEY_HEADER = b64(CLIENT_KEY.as_pem(private=False))


def seal(server_key: RSAKey, body, *, alg: str = "RSA-OAEP-256", enc: str = "A256GCM", **header) -> dict:
    """An encrypted request body for Antaca's key."""
    plaintext = body if isinstance(body, bytes) else json.dumps(body).encode()
    return {"payload": jwe.encrypt_compact({"alg": alg, "enc": enc, **header}, plaintext, server_key,
                                           algorithms=ALGORITHMS)}


def unseal(envelope: dict) -> tuple[dict, dict]:
    """(plaintext JSON, protected header) of an encrypted response; the envelope holds nothing else."""
    assert list(envelope) == ["payload"], envelope
    token = jwe.decrypt_compact(envelope["payload"], CLIENT_KEY, algorithms=ALGORITHMS)
    return json.loads(token.plaintext), dict(token.protected)


async def server_key(api) -> RSAKey:
    async with api.client().get(f"{api.http}/public-key") as r:
        assert r.status == 200
        return RSAKey.import_key((await r.json())["pem"])


async def customer_count(api) -> int:
    async with api.services.pool.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM customers")


async def assert_plain_error(response, status: int, code: str) -> None:
    """The response is a plain {"code", "message"} JSON error with this status and code."""
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body) == {"code", "message", "requestId"} and body["code"] == code, body


# --- Antaca's public key ------------------------------------------------------------------------


async def test_public_key_is_the_same_on_every_prefix_as_jwk_and_pem(api):
    """/public-key and its /customers, /secure, /lifecycle and /admin variants return one public RSA key."""
    documents = []
    for prefix in ("", "/customers", "/secure", "/lifecycle", "/admin"):
        async with api.client().get(f"{api.http}{prefix}/public-key") as r:
            assert r.status == 200, prefix
            documents.append(await r.json())
    assert all(d == documents[0] for d in documents)
    document = documents[0]
    assert document["jwk"]["kty"] == "RSA"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(document["jwk"]), "the private key must not leak"
    from_jwk, from_pem = RSAKey.import_key(document["jwk"]), RSAKey.import_key(document["pem"])
    assert not from_pem.is_private
    assert from_jwk.thumbprint() == from_pem.thumbprint()
    assert from_pem.thumbprint() == api.services.jwe_key.thumbprint()


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RSA-OAEP-256", "RSA-OAEP"])
async def test_encrypted_request_round_trip(api, alg):
    """An encrypted POST /secure/customers creates the customer; the answer decrypts with the client's key."""
    _, partner = await api.partner()
    key = await server_key(api)
    sent = customer_body()
    async with partner.post(f"{api.https}/secure/customers", json=seal(key, sent, alg=alg),
                            headers={"Encrypted-Request": "true", "Public-Key": PUBLIC_KEY_HEADER}) as r:
        assert r.status == 201, await r.text()
        customer, header = unseal(await r.json())
    assert (header["alg"], header["enc"]) == ("RSA-OAEP-256", "A256GCM")
    assert customer["externalId"] == sent["externalId"] and customer["kycStatus"] == "NOT_VERIFIED"
    async with partner.get(f"{api.https}/secure/customers/{customer['customerId']}") as r:
        assert r.status == 200 and await r.json() == customer


async def test_encrypt_response_with_plain_request_and_on_get(api):
    """Encrypt-Response: true encrypts the answer to a plain POST body and to a GET."""
    _, partner = await api.partner()
    headers = {"Encrypt-Response": "true", "Public-Key": PUBLIC_KEY_HEADER}
    async with partner.post(f"{api.https}/secure/customers", json=customer_body(), headers=headers) as r:
        assert r.status == 201, await r.text()
        created, _ = unseal(await r.json())
    async with partner.get(f"{api.https}/secure/customers/{created['customerId']}", headers=headers) as r:
        assert r.status == 200
        fetched, _ = unseal(await r.json())
    assert fetched == created
    async with partner.get(f"{api.https}/secure/customers", headers=headers) as r:
        page, _ = unseal(await r.json())
    assert [c["customerId"] for c in page["items"]] == [created["customerId"]]


async def test_error_responses_stay_plain_when_encryption_was_asked_for(api):
    """A 404 with Encrypt-Response and a 409 with Encrypted-Request are plain JSON errors."""
    _, partner = await api.partner()
    key = await server_key(api)
    headers = {"Encrypt-Response": "true", "Public-Key": PUBLIC_KEY_HEADER}
    async with partner.get(f"{api.https}/secure/customers/{uuid.uuid4()}", headers=headers) as r:
        await assert_plain_error(r, 404, "NOT_FOUND")
    body = customer_body()
    headers = {"Encrypted-Request": "true", "Public-Key": PUBLIC_KEY_HEADER}
    for expected in (201, 409):
        async with partner.post(f"{api.https}/secure/customers", json=seal(key, body), headers=headers) as r:
            if expected == 201:
                assert r.status == 201
            else:
                await assert_plain_error(r, 409, "CUSTOMER_EXISTS")
    assert await customer_count(api) == 1


async def test_decrypted_body_is_validated_like_a_plain_one(api):
    """Inside the envelope, malformed JSON is MALFORMED_JSON and unknown fields VALIDATION_ERROR; nothing is created."""
    _, partner = await api.partner()
    key = await server_key(api)
    headers = {"Encrypted-Request": "true", "Public-Key": PUBLIC_KEY_HEADER}
    for plaintext, code in ((b"{not json", "MALFORMED_JSON"),
                            (customer_body(isAdmin=True), "VALIDATION_ERROR")):
        async with partner.post(f"{api.https}/secure/customers", json=seal(key, plaintext), headers=headers) as r:
            await assert_plain_error(r, 400, code)
    assert await customer_count(api) == 0


# --- a route that requires encryption -----------------------------------------------------------


class Echo(msgspec.Struct, forbid_unknown_fields=True):
    """The test route's body and answer."""

    text: str


@pytest.fixture
async def echo_api(api):
    """A second app on the same services with a partner route that requires JWE; its calls are recorded."""
    calls: list[str] = []

    async def echo(ctx: Context, body: Echo) -> Echo:
        calls.append(body.text)
        return Echo(text=body.text.upper())

    route = Route("POST", "/secure/test/echo", echo, Channel.PARTNER, "echo", body=Echo, response=Echo,
                  encryption=Encryption.REQUIRED)
    server, runner = await start_api(api.services, api.ca, extra_routes=[route])
    server.calls = calls
    yield server
    for session in server.sessions:
        await session.close()
    await runner.cleanup()


async def test_required_encryption_refuses_plain_exchanges(api, echo_api):
    """Plain in and out is 400 ENCRYPTION_REQUIRED; an encrypted request or an encrypted response is served."""
    token = await api.admin_token()
    partner_id = await api.new_partner(token)
    cert, key_pem, _ = await api.partner_certificate(token, partner_id)
    partner = echo_api.client(cert=(cert, key_pem))
    url = f"{echo_api.https}/secure/test/echo"
    async with echo_api.client().post(url, json={"text": "hi"}) as r:
        await assert_plain_error(r, 401, "CERTIFICATE_REQUIRED")
    for headers in ({}, {"Encrypt-Response": "false"}, {"Public-Key": PUBLIC_KEY_HEADER}):
        async with partner.post(url, json={"text": "hi"}, headers=headers) as r:
            await assert_plain_error(r, 400, "ENCRYPTION_REQUIRED")
    assert echo_api.calls == []

    async with partner.post(url, json={"text": "plain in"},
                            headers={"Encrypt-Response": "true", "Public-Key": PUBLIC_KEY_HEADER}) as r:
        assert r.status == 200, await r.text()
        assert unseal(await r.json())[0] == {"text": "PLAIN IN"}
    async with partner.post(url, json=seal(await server_key(echo_api), {"text": "sealed"}),
                            headers={"Encrypted-Request": "true", "Public-Key": PUBLIC_KEY_HEADER}) as r:
        assert r.status == 200, await r.text()
        assert unseal(await r.json())[0] == {"text": "SEALED"}
    assert echo_api.calls == ["plain in", "sealed"]


# --- each JWE error -----------------------------------------------------------------------------


def _pem(key, private: bool = False) -> bytes:
    if private:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def invalid_public_keys() -> dict[str, str | None]:
    small = rsa.generate_private_key(65537, 1024)
    return {
        "missing": None,
        "empty": "",
        "not base64": "this is not base64!",
        "base64 of garbage": b64(b"hello, I am not a key"),
        "base64 of a private key's DER": b64(CLIENT_KEY.as_der(private=True)),
        "base64 of an EC key's DER": b64(
            ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)),
        "a private key PEM": b64(CLIENT_KEY.as_pem(private=True)),
        "an RSA-1024 key": b64(_pem(small)),
        "an EC key": b64(_pem(ec.generate_private_key(ec.SECP256R1()))),
    }


async def test_invalid_public_key(api):
    """Every unusable Public-Key header is 400 INVALID_PUBLIC_KEY, for encrypted requests and responses alike."""
    _, partner = await api.partner()
    key = await server_key(api)
    for name, header in invalid_public_keys().items():
        for flag in ("Encrypted-Request", "Encrypt-Response"):
            headers = {flag: "true", **({} if header is None else {"Public-Key": header})}
            sealed = flag == "Encrypted-Request"
            async with partner.post(f"{api.https}/secure/customers", headers=headers,
                                    json=seal(key, customer_body()) if sealed else customer_body()) as r:
                assert r.status == 400, (name, flag)
                body = await r.json()
                assert set(body) == {"code", "message", "requestId"} and body["code"] == "INVALID_PUBLIC_KEY", (name, flag, body)
    assert await customer_count(api) == 0


@pytest.mark.parametrize("encoding", ["PEM", "DER"])
async def test_public_key_header_takes_base64_of_pem_or_der(api, encoding):
    """`Public-Key` is base64 of the client's PEM or of its DER SubjectPublicKeyInfo (the
    description says only "encoded b64"); either way the answer opens with the client's key."""
    _, partner = await api.partner()
    public = (CLIENT_KEY.as_pem(private=False) if encoding == "PEM"
              else CLIENT_KEY.as_der(private=False))
    for header in (b64(public), base64.urlsafe_b64encode(public).decode().rstrip("=")):
        async with partner.post(f"{api.https}/secure/customers", json=customer_body(),
                                headers={"Encrypt-Response": "true", "Public-Key": header}) as r:
            assert r.status == 201, await r.text()
            created, _ = unseal(await r.json())
        assert created["kycStatus"] == "NOT_VERIFIED"


async def test_invalid_payload(api):
    """A body that is not {"payload": "<compact JWE>"} is 400 INVALID_PAYLOAD and creates nothing."""
    _, partner = await api.partner()
    key = await server_key(api)
    compact = seal(key, customer_body())["payload"]
    headers = {"Encrypted-Request": "true", "Public-Key": PUBLIC_KEY_HEADER, "Content-Type": "application/json"}
    bodies = {
        "plain customer": json.dumps(customer_body()),
        "payload not a string": json.dumps({"payload": 42}),
        "payload missing": "{}",
        "an extra field": json.dumps({"payload": compact, "extra": 1}),
        "a list": json.dumps([compact]),
        "not JSON": "payload=" + compact,
        "empty body": "",
        "JWS-like (3 parts)": json.dumps({"payload": "a.b.c"}),
        "JSON serialization": json.dumps({"payload": json.dumps({"protected": compact.split(".")[0]})}),
    }
    for name, raw in bodies.items():
        async with partner.post(f"{api.https}/secure/customers", data=raw.encode(), headers=headers) as r:
            await assert_plain_error(r, 400, "INVALID_PAYLOAD")
    assert await customer_count(api) == 0


async def test_cant_decrypt_payload(api):
    """Another recipient's key, a refused alg or enc, compression, or a corrupted token are 400 CANT_DECRYPT_PAYLOAD."""
    _, partner = await api.partner()
    key = await server_key(api)
    body = customer_body()
    good = seal(key, body)["payload"]
    protected, encrypted_key, iv, ciphertext, tag = good.split(".")
    flipped_tag = tag[:-2] + ("A" if tag[-2] != "A" else "B") + tag[-1]
    payloads = {
        "encrypted to another key": seal(OTHER_KEY, body)["payload"],
        "enc A128GCM": seal(key, body, enc="A128GCM")["payload"],
        "enc A256CBC-HS512": seal(key, body, enc="A256CBC-HS512")["payload"],
        "zip DEF": seal(key, body, zip="DEF")["payload"],
        "tampered tag": ".".join([protected, encrypted_key, iv, ciphertext, flipped_tag]),
        "five garbage parts": "a.b.c.d.e",
        "header not JSON": ".".join(["bm90LWpzb24", encrypted_key, iv, ciphertext, tag]),
    }
    headers = {"Encrypted-Request": "true", "Public-Key": PUBLIC_KEY_HEADER}
    with pytest.warns(Warning):  # joserfc warns that RSA1_5 is deprecated: that is the point
        payloads["alg RSA1_5"] = seal(key, body, alg="RSA1_5")["payload"]
    for name, payload in payloads.items():
        async with partner.post(f"{api.https}/secure/customers", json={"payload": payload}, headers=headers) as r:
            assert r.status == 400, (name, await r.text())
            answer = await r.json()
            assert set(answer) == {"code", "message", "requestId"} and answer["code"] == "CANT_DECRYPT_PAYLOAD", (name, answer)
    assert await customer_count(api) == 0
    async with partner.post(f"{api.https}/secure/customers", json={"payload": good}, headers=headers) as r:
        assert r.status == 201, "the untampered token is accepted"
