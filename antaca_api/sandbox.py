"""Sandbox simulation: a partner's test payments, built as a card network would send them.

Served only with `ANTACA_SANDBOX=1` (refused in production, antaca_api/settings.py). The partner
names one of its cards; this module builds the network message the card network would send (the
PAN decrypted here, the card's expiry and current CVC2, a PIN enciphered into an ISO 9564 format 4
PIN block under the sandbox network's zone PIN key) and the partner channel's sandbox routes hand
it to the network channel's own handlers with the sandbox network's identity
(antaca_api/routes/sandbox.py). Nothing here decides a payment: the engine and the follow-ups
answer as they answer a real network. The PAN never leaves the server.

Message ids of the sandbox start with the card's id (`<card id hex>-<random>`): a reversal or a
clearing names its authorization by that id, and the prefix keeps one partner from following up
another partner's simulated payment on the shared sandbox network.
"""

from __future__ import annotations

import os
import secrets
import uuid
from dataclasses import dataclass

from antaca_api import cards, networks
from antaca_api.domain_errors import CardDataUnavailable, NotFound, ValidationFailed
from antaca_api.services import Services
from antaca_auth import pinblock, zonekeys
from antaca_auth.authorization import AuthorizationRequest, TxType
from antaca_auth.pinblock import PinBlockFormat, ZoneKey

# The sandbox's network: a fixed id, so every process of the service finds the same one.
SANDBOX_NETWORK_ID = uuid.UUID("5a0d6b0c-0000-4000-8000-5a4db0c00001")
SANDBOX_NETWORK_NAME = "antaca-sandbox"
SANDBOX_PIN_BLOCK_FORMAT = PinBlockFormat.ISO_4  # AES-128 zone key, 32-hex-digit PIN blocks
MESSAGE_RANDOM_BYTES = 8  # after the card id: 32 + 1 + 16 = 49 characters, within DE11's 64
SANDBOX_MERCHANT_NAME = "Sandbox merchant"
SANDBOX_MCC = "5999"  # miscellaneous retail
SANDBOX_MERCHANT_COUNTRY = "PL"


@dataclass(frozen=True)
class SandboxNetwork:
    network_id: uuid.UUID
    deadline_ms: int  # the network's authorization budget, as the network channel reads it
    zone_key: ZoneKey


@dataclass(frozen=True)
class SandboxCard:
    """What a card network knows of a card: held only for the time of one simulation."""

    card_id: uuid.UUID
    pan: str
    expiry: str  # YYMM
    cvc2: str


@dataclass(frozen=True)
class Payment:
    """A simulated payment as the partner describes it; None fields take the card's own data."""

    amount: int
    currency: str
    type: TxType = TxType.ECOM
    cvc2: str | None = None  # another CVC2 than the card's, to test a wrong one
    expiry: str | None = None  # another expiry (YYMM) than the card's
    pin: str | None = None  # enciphered into a PIN block; never stored or logged
    mcc: str | None = None
    merchant_name: str | None = None
    merchant_country: str | None = None
    pos_entry_mode: str | None = None


async def network(services: Services) -> SandboxNetwork:
    """The sandbox network with its zone PIN key, created at first use (once, under its row
    lock)."""
    if services.sandbox_network is not None:
        return services.sandbox_network
    async with services.pool.acquire() as conn, conn.transaction():
        row = await networks.ensure(conn, SANDBOX_NETWORK_ID, SANDBOX_NETWORK_NAME)
        if await zonekeys.zone_key_info(conn, SANDBOX_NETWORK_ID) is None:
            key = ZoneKey(SANDBOX_PIN_BLOCK_FORMAT, os.urandom(pinblock.ZONE_KEY_BYTES))
            await zonekeys.store_zone_key(conn, services.card_keys, SANDBOX_NETWORK_ID, key)
        keys = await zonekeys.load_zone_keys(conn, services.card_keys, [SANDBOX_NETWORK_ID])
    services.sandbox_network = SandboxNetwork(SANDBOX_NETWORK_ID, row["authorization_deadline_ms"],
                                              keys[SANDBOX_NETWORK_ID])
    return services.sandbox_network


async def card(services: Services, partner_id: uuid.UUID, card_id: uuid.UUID) -> SandboxCard:
    """The partner's card with its data; another partner's card is NOT_FOUND like an unknown one.
    A card in any state is simulated (the answer says what the network would hear) as long as it
    has card data."""
    async with services.pool.acquire() as conn:
        row = await cards.find_card(conn, card_id, cards.CardScope(partner_id))
    if row["pan_ciphertext"] is None:
        raise CardDataUnavailable("the card has no card data yet: nothing a network could send")
    keys = services.card_keys
    pan = keys.decrypt_pan(row["id"], row["pan_key_id"], row["pan_ciphertext"])
    cvc2 = keys.cvc2(pan, row["expiry"], row["cvc_counter"])
    return SandboxCard(card_id, pan, row["expiry"], cvc2)


def message_id(card_id: uuid.UUID) -> str:
    """A fresh network message id of the sandbox, bound to the card."""
    return f"{card_id.hex}-{secrets.token_hex(MESSAGE_RANDOM_BYTES)}"


def check_message_of_card(card_id: uuid.UUID, original_message_id: str) -> str:
    """The original message id if it is one of this card's sandbox messages; NOT_FOUND otherwise
    (another card's, another partner's, or a real network's)."""
    if not original_message_id.startswith(f"{card_id.hex}-"):
        raise NotFound("no simulated authorization of this card has this message id")
    return original_message_id


def authorization_request(sandbox: SandboxNetwork, target: SandboxCard, payment: Payment,
                          message: str) -> AuthorizationRequest:
    """The network message for a payment (or a refund) of the card: what the network would send."""
    if payment.type is TxType.ECOM or payment.cvc2 is not None:
        cvc2 = payment.cvc2 or target.cvc2
    else:
        cvc2 = None  # a card-present payment carries no CVC2
    pin_block = None
    if payment.pin is not None:
        try:
            block = pinblock.encipher_pin(sandbox.zone_key, payment.pin, target.pan)
            pin_block = block.hex().upper()
        except pinblock.PinBlockError:
            raise ValidationFailed("pin must be 4 to 12 digits") from None
    return AuthorizationRequest(
        message_id=message, pan=target.pan, expiry=payment.expiry or target.expiry,
        amount=payment.amount, currency=payment.currency, type=payment.type, cvc2=cvc2,
        pin_block=pin_block, mcc=payment.mcc or SANDBOX_MCC,
        merchant_name=payment.merchant_name or SANDBOX_MERCHANT_NAME,
        merchant_country=payment.merchant_country or SANDBOX_MERCHANT_COUNTRY,
        terminal_id=None if payment.type is TxType.ECOM else "SANDBOX1",
        pos_entry_mode=payment.pos_entry_mode)


async def payment_message(services: Services, partner_id: uuid.UUID, card_id: uuid.UUID,
                          payment: Payment) -> tuple[SandboxNetwork, AuthorizationRequest]:
    """The sandbox network and the authorization (or refund) message for the partner's card."""
    sandbox = await network(services)
    target = await card(services, partner_id, card_id)
    return sandbox, authorization_request(sandbox, target, payment, message_id(card_id))


async def follow_up_target(services: Services, partner_id: uuid.UUID,
                           card_id: uuid.UUID) -> tuple[SandboxNetwork, SandboxCard]:
    """The sandbox network and the partner's card, for a reversal or a clearing."""
    sandbox = await network(services)
    return sandbox, await card(services, partner_id, card_id)
