"""Card data protection: PAN encryption at rest, PAN fingerprints, CVC2 derivation, PIN verification.

- PAN: AES-256-GCM under a named key (rotation: new cards use the active key, old ones keep the
  key id they were written with), the card id as associated data so a ciphertext cannot be
  moved to another card.
- Fingerprint: HMAC-SHA256 of the PAN, to find a card by PAN without decrypting anything.
- CVC2: never stored; derived from PAN, expiry and a per-card counter that a CVV reset bumps.
- PIN: never stored; a keyed, salted verification value only.
- Zone PIN keys (the networks' PIN block keys): AES-256-GCM under a key derived from the PIN
  key with HKDF-SHA256 (so the keyring file keeps its format), the network id as associated data.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import hmac
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from antaca_auth.keyfiles import read_private, write_private

# HKDF label of the zone PIN key wrapping key; changing it makes every stored zone key unreadable.
ZONE_KEY_WRAPPING_INFO = b"antaca/zone-pin-key-wrapping/v1"
# HKDF label of the KYB document key derived from each PAN key (rotates with the PAN keys).
DOCUMENT_KEY_INFO = b"antaca/kyb-document/v1"
# HKDF label of the partners' webhook signing secrets' wrapping key (antaca_api/webhooks.py).
WEBHOOK_SECRET_WRAPPING_INFO = b"antaca/webhook-secret-wrapping/v1"
WRAPPING_KEY_BYTES = 32  # AES-256
GCM_NONCE_BYTES = 12


class CardKeyError(Exception):
    """The card keys are missing or malformed."""


@dataclass(frozen=True)
class CardKeys:
    pan_keys: dict[str, bytes]  # key id -> 32-byte AES key
    active_pan_key: str
    fingerprint_key: bytes
    cvc_key: bytes
    pin_key: bytes

    def __post_init__(self) -> None:
        if self.active_pan_key not in self.pan_keys:
            raise CardKeyError("the active PAN key id is not in the keyring")
        for key in (*self.pan_keys.values(), self.fingerprint_key, self.cvc_key, self.pin_key):
            if len(key) != 32:
                raise CardKeyError("every card key must be 32 bytes")

    # --- PAN ---------------------------------------------------------------------------------

    def encrypt_pan(self, card_id: uuid.UUID, pan: str) -> tuple[str, bytes]:
        """(key id, nonce + ciphertext) of a PAN, bound to its card."""
        nonce = os.urandom(12)
        key_id = self.active_pan_key
        sealed = AESGCM(self.pan_keys[key_id]).encrypt(nonce, pan.encode(), card_id.bytes)
        return key_id, nonce + sealed

    def decrypt_pan(self, card_id: uuid.UUID, key_id: str, blob: bytes) -> str:
        key = self.pan_keys.get(key_id)
        if key is None:
            raise CardKeyError(f"PAN key {key_id} is not in the keyring")
        return AESGCM(key).decrypt(blob[:12], blob[12:], card_id.bytes).decode()

    def fingerprint(self, pan: str) -> str:
        return hmac.new(self.fingerprint_key, pan.encode(), hashlib.sha256).hexdigest()

    # --- CVC2 --------------------------------------------------------------------------------

    def cvc2(self, pan: str, expiry: str, counter: int) -> str:
        """The card's CVC2 for its current counter; `expiry` is YYMM."""
        digest = hmac.new(self.cvc_key, f"{pan}|{expiry}|{counter}".encode(), hashlib.sha256).digest()
        return f"{int.from_bytes(digest[:8], 'big') % 1000:03d}"

    def cvc2_matches(self, pan: str, expiry: str, counter: int, candidate: str) -> bool:
        return hmac.compare_digest(self.cvc2(pan, expiry, counter), candidate)

    # --- PIN ---------------------------------------------------------------------------------

    def pin_verification_value(self, card_id: uuid.UUID, pin: str, salt: bytes) -> bytes:
        return hmac.new(self.pin_key, salt + card_id.bytes + pin.encode(), hashlib.sha256).digest()

    def new_pin_record(self, card_id: uuid.UUID, pin: str) -> tuple[bytes, bytes]:
        """(salt, verification value) to store for a PIN."""
        salt = os.urandom(16)
        return salt, self.pin_verification_value(card_id, pin, salt)

    def pin_matches(self, card_id: uuid.UUID, pin: str, salt: bytes, stored: bytes) -> bool:
        return hmac.compare_digest(self.pin_verification_value(card_id, pin, salt), stored)

    # --- zone PIN keys ------------------------------------------------------------------------

    @functools.cached_property
    def zone_key_sealer(self) -> AESGCM:
        """AES-256-GCM under HKDF-SHA256(pin_key, info=ZONE_KEY_WRAPPING_INFO), derived once."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=WRAPPING_KEY_BYTES, salt=None,
                    info=ZONE_KEY_WRAPPING_INFO)
        return AESGCM(hkdf.derive(self.pin_key))

    def seal_zone_key(self, network_id: uuid.UUID, key: bytes) -> bytes:
        """Nonce + ciphertext of a network's zone PIN key, bound to that network."""
        nonce = os.urandom(GCM_NONCE_BYTES)
        return nonce + self.zone_key_sealer.encrypt(nonce, key, network_id.bytes)

    def open_zone_key(self, network_id: uuid.UUID, blob: bytes) -> bytes:
        try:
            return self.zone_key_sealer.decrypt(blob[:GCM_NONCE_BYTES], blob[GCM_NONCE_BYTES:],
                                                network_id.bytes)
        except InvalidTag:
            # Another network's blob, an altered one, or one sealed under other card keys.
            raise CardKeyError("a zone PIN key does not open under these card keys") from None

    # --- KYB documents -----------------------------------------------------------------------

    def _document_sealer(self, key_id: str) -> AESGCM:
        key = self.pan_keys.get(key_id)
        if key is None:
            raise CardKeyError(f"document key {key_id} is not in the keyring")
        hkdf = HKDF(algorithm=hashes.SHA256(), length=WRAPPING_KEY_BYTES, salt=None,
                    info=DOCUMENT_KEY_INFO)
        return AESGCM(hkdf.derive(key))

    def encrypt_document(self, document_id: uuid.UUID, content: bytes) -> tuple[str, bytes]:
        """(key id, nonce + ciphertext) of an uploaded document, bound to its document id."""
        nonce = os.urandom(GCM_NONCE_BYTES)
        key_id = self.active_pan_key
        return key_id, nonce + self._document_sealer(key_id).encrypt(nonce, content,
                                                                     document_id.bytes)

    def decrypt_document(self, document_id: uuid.UUID, key_id: str, blob: bytes) -> bytes:
        try:
            return self._document_sealer(key_id).decrypt(blob[:GCM_NONCE_BYTES],
                                                         blob[GCM_NONCE_BYTES:], document_id.bytes)
        except InvalidTag:
            raise CardKeyError("a document does not open under these keys") from None
    # --- webhook signing secrets -------------------------------------------------------------

    @functools.cached_property
    def webhook_secret_sealer(self) -> AESGCM:
        """AES-256-GCM under HKDF-SHA256(pin_key, info=WEBHOOK_SECRET_WRAPPING_INFO), derived
        once."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=WRAPPING_KEY_BYTES, salt=None,
                    info=WEBHOOK_SECRET_WRAPPING_INFO)
        return AESGCM(hkdf.derive(self.pin_key))

    def seal_webhook_secret(self, endpoint_id: uuid.UUID, secret: bytes) -> bytes:
        """Nonce + ciphertext of a webhook endpoint's signing secret, bound to that endpoint."""
        nonce = os.urandom(GCM_NONCE_BYTES)
        return nonce + self.webhook_secret_sealer.encrypt(nonce, secret, endpoint_id.bytes)

    def open_webhook_secret(self, endpoint_id: uuid.UUID, blob: bytes) -> bytes:
        try:
            return self.webhook_secret_sealer.decrypt(blob[:GCM_NONCE_BYTES],
                                                      blob[GCM_NONCE_BYTES:], endpoint_id.bytes)
        except InvalidTag:
            raise CardKeyError("a webhook secret does not open under these card keys") from None

    # --- storage -----------------------------------------------------------------------------

    @classmethod
    def generate(cls) -> CardKeys:
        return cls({"k1": os.urandom(32)}, "k1", os.urandom(32), os.urandom(32), os.urandom(32))

    def with_new_pan_key(self) -> CardKeys:
        """The keyring with a fresh PAN key made active; the older keys stay to read old PANs
        (the rotation job re-encrypts them: antaca_api/cards.py, docs/operations.md)."""
        number = len(self.pan_keys) + 1
        while f"k{number}" in self.pan_keys:
            number += 1
        key_id = f"k{number}"
        return dataclasses.replace(self, pan_keys={**self.pan_keys, key_id: os.urandom(32)},
                                   active_pan_key=key_id)

    def to_json(self) -> str:
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        return json.dumps({
            "pan_keys": {k: b64(v) for k, v in self.pan_keys.items()},
            "active_pan_key": self.active_pan_key,
            "fingerprint_key": b64(self.fingerprint_key),
            "cvc_key": b64(self.cvc_key),
            "pin_key": b64(self.pin_key),
        }, indent=2)

    @classmethod
    def from_json(cls, text: str) -> CardKeys:
        try:
            data = json.loads(text)
            d = base64.b64decode
            return cls({k: d(v) for k, v in data["pan_keys"].items()}, data["active_pan_key"],
                       d(data["fingerprint_key"]), d(data["cvc_key"]), d(data["pin_key"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CardKeyError(f"malformed card keys: {type(exc).__name__}") from None

    @classmethod
    def load_or_create(cls, path: Path) -> CardKeys:
        """The keyring in `path` (JSON, mode 0600), created with fresh keys on first use."""
        if path.exists():
            return cls.from_json(read_private(path).decode())
        keys = cls.generate()
        write_private(path, keys.to_json().encode())
        return keys
