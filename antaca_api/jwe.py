"""JWE for sensitive data, as partners expect it.

Clients encrypt requests to Antaca's RSA key (`GET /public-key`) with RSA-OAEP-256 or RSA-OAEP
and A256GCM; Antaca encrypts responses to the key the client sends in the `Public-Key` header
(base64 of its PEM, or of its DER SubjectPublicKeyInfo) with RSA-OAEP-256 and A256GCM. Bodies
are `{"payload": "<compact JWE>"}`.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

import msgspec
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwcrypto import jwe, jwk
from jwcrypto.common import JWException, base64url_decode, json_decode

from antaca_api.errors import CantDecryptPayload, InvalidPayload, InvalidPublicKey
from antaca_auth.keyfiles import read_private, write_private

ACCEPTED_ALGS = ("RSA-OAEP-256", "RSA-OAEP")
ACCEPTED_ENCS = ("A256GCM",)
RESPONSE_HEADER = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "application/json"}
KEY_BITS = 3072
PEM_MARKER = b"-----BEGIN"


class Envelope(msgspec.Struct, forbid_unknown_fields=True):
    """An encrypted body."""

    payload: str


class PublicKeyDocument(msgspec.Struct):
    """Antaca's public key, as a JWK and as PEM."""

    jwk: dict
    pem: str


def generate_key(bits: int = KEY_BITS) -> jwk.JWK:
    return jwk.JWK.generate(kty="RSA", size=bits, kid=os.urandom(8).hex())


def load_or_create_key(path: Path) -> jwk.JWK:
    """Antaca's RSA key pair from a PEM file, created (mode 0600) on first use."""
    if path.exists():
        key = jwk.JWK.from_pem(read_private(path))
    else:
        key = generate_key()
        write_private(path, key.export_to_pem(private_key=True, password=None))
    return key


def public_key_document(key: jwk.JWK) -> PublicKeyDocument:
    return PublicKeyDocument(jwk=key.export_public(as_dict=True), pem=key.export_to_pem().decode())


def parse_client_key(header: str | None) -> jwk.JWK:
    """The client's RSA public key from the `Public-Key` header: base64 (or base64url) of a PEM,
    or of the DER of its SubjectPublicKeyInfo."""
    if not header:
        raise InvalidPublicKey()
    try:
        padded = header.strip() + "=" * (-len(header.strip()) % 4)
        decoded = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        if decoded.lstrip().startswith(PEM_MARKER):
            key = jwk.JWK.from_pem(decoded)
        else:
            key = jwk.JWK.from_pyca(serialization.load_der_public_key(decoded))
    except (binascii.Error, ValueError, TypeError, JWException, UnsupportedAlgorithm):
        raise InvalidPublicKey() from None
    if key.has_private:
        raise InvalidPublicKey("the Public-Key header must hold an RSA public key, not a private key")
    if not isinstance(key.get_op_key("encrypt"), rsa.RSAPublicKey):
        raise InvalidPublicKey("the Public-Key header must hold an RSA public key")
    if key.get_op_key("encrypt").key_size < 2048:
        raise InvalidPublicKey("the client's RSA key must have at least 2048 bits")
    return key


def decrypt_envelope(key: jwk.JWK, body: bytes) -> bytes:
    """The plaintext of an encrypted request body."""
    try:
        envelope = msgspec.json.decode(body, type=Envelope)
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise InvalidPayload() from None
    if envelope.payload.count(".") != 4:
        raise InvalidPayload("the payload is not a compact JWE")
    # Checked before decrypting: jwcrypto would inflate a "zip" payload far past the body limit.
    try:
        protected = json_decode(base64url_decode(envelope.payload.split(".", 1)[0]))
    except (ValueError, TypeError):
        raise CantDecryptPayload() from None
    if (not isinstance(protected, dict) or protected.get("alg") not in ACCEPTED_ALGS
            or protected.get("enc") not in ACCEPTED_ENCS or "zip" in protected):
        raise CantDecryptPayload("only uncompressed RSA-OAEP-256 or RSA-OAEP with A256GCM are accepted")
    token = jwe.JWE()
    token.allowed_algs = list(ACCEPTED_ALGS + ACCEPTED_ENCS)
    try:
        token.deserialize(envelope.payload, key=key)
    except (JWException, ValueError, TypeError, KeyError):
        raise CantDecryptPayload() from None
    header = token.jose_header
    if header.get("alg") not in ACCEPTED_ALGS or header.get("enc") not in ACCEPTED_ENCS:
        raise CantDecryptPayload("only RSA-OAEP-256 or RSA-OAEP with A256GCM are accepted")
    return token.payload


def encrypt_envelope(client_key: jwk.JWK, plaintext: bytes) -> bytes:
    """An encrypted response body for the client's key."""
    token = jwe.JWE(plaintext, protected=RESPONSE_HEADER)
    token.add_recipient(client_key)
    return msgspec.json.encode(Envelope(payload=token.serialize(compact=True)))
