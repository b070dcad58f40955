"""Issuing processors: one protocol for what a processor does, and a simulated one built in.

A card program names its processor; the card logic only talks to this protocol, so a real
processor plugs in by implementing it and registering its name in PROCESSORS.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime, timedelta
from typing import Protocol

import msgspec

from antaca_auth.pans import generate_pan


class Program(msgspec.Struct, frozen=True, kw_only=True):
    """What a processor needs to know of a card program."""

    id: uuid.UUID
    bin_prefix: str
    pan_length: int
    validity_months: int
    config: dict


class GeneratedCard(msgspec.Struct, frozen=True):
    pan: str
    expiry: str  # YYMM


class OrderStatus(enum.StrEnum):
    IN_PRODUCTION = "IN_PRODUCTION"
    PERSONALIZED = "PERSONALIZED"  # ready to be linked to its holder
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


class OrderReport(msgspec.Struct, frozen=True):
    processor_ref: str
    status: OrderStatus
    reason: str | None = None


class Processor(Protocol):
    name: str

    async def generate_card(self, program: Program, card_id: uuid.UUID, now: datetime) -> GeneratedCard: ...

    async def order_physical(self, program: Program, card_id: uuid.UUID, name_on_card: str, address: dict,
                             now: datetime, *, delivery_method: str = "POST") -> str: ...

    async def renew_virtual(self, program: Program, card_id: uuid.UUID, now: datetime) -> str: ...

    async def order_report(self, program: Program, processor_ref: str, now: datetime) -> OrderReport: ...

    async def link_card(self, program: Program, processor_ref: str, card_id: uuid.UUID) -> None: ...

    async def activate(self, program: Program, card_id: uuid.UUID) -> None: ...

    async def set_pin(self, program: Program, card_id: uuid.UUID) -> None: ...


def expiry_after(now: datetime, months: int) -> str:
    """YYMM of the month `months` after `now` (a card is valid to the end of that month)."""
    index = now.year * 12 + (now.month - 1) + months
    return f"{(index // 12) % 100:02d}{index % 12 + 1:02d}"


class SimulatedProcessor:
    """Does everything a processor does, within Antaca, for development and tests.

    PANs come from the program's BIN range with a valid Luhn digit (uniqueness is enforced by
    the caller against the fingerprint index). A physical order's reference carries its order
    time, so its progress survives restarts without any state here: it is PERSONALIZED after
    `personalization_seconds` (program config, default 60), SHIPPED after twice that and
    DELIVERED after three times. A name on card of "FAIL" makes the order fail, and a program
    config `fail_generation: true` makes generation fail, to exercise failure paths.
    """

    name = "simulated"

    async def generate_card(self, program: Program, card_id: uuid.UUID, now: datetime) -> GeneratedCard:
        if program.config.get("fail_generation"):
            raise ProcessorError("the processor refused to generate the card")
        return GeneratedCard(generate_pan(program.bin_prefix, program.pan_length),
                             expiry_after(now, program.validity_months))

    async def order_physical(self, program: Program, card_id: uuid.UUID, name_on_card: str, address: dict,
                             now: datetime, *, delivery_method: str = "POST") -> str:
        failing = "F" if name_on_card.strip().upper() == "FAIL" else "O"
        return f"SIM-{failing}-{card_id.hex}-{int(now.timestamp())}"

    async def renew_virtual(self, program: Program, card_id: uuid.UUID, now: datetime) -> str:
        """A renewed virtual card's new expiry (YYMM): `validityMonths` from now, the PAN kept."""
        if program.config.get("fail_generation"):
            raise ProcessorError("the processor refused to renew the card")
        return expiry_after(now, program.validity_months)

    async def order_report(self, program: Program, processor_ref: str, now: datetime) -> OrderReport:
        _, failing, _, ordered = processor_ref.split("-")
        if failing == "F":
            return OrderReport(processor_ref, OrderStatus.FAILED, "personalization failed")
        step = timedelta(seconds=float(program.config.get("personalization_seconds", 60)))
        elapsed = now - datetime.fromtimestamp(int(ordered), tz=now.tzinfo)
        if elapsed >= 3 * step:
            return OrderReport(processor_ref, OrderStatus.DELIVERED)
        if elapsed >= 2 * step:
            return OrderReport(processor_ref, OrderStatus.SHIPPED)
        if elapsed >= step:
            return OrderReport(processor_ref, OrderStatus.PERSONALIZED)
        return OrderReport(processor_ref, OrderStatus.IN_PRODUCTION)

    async def link_card(self, program: Program, processor_ref: str, card_id: uuid.UUID) -> None:
        return None

    async def activate(self, program: Program, card_id: uuid.UUID) -> None:
        return None

    async def set_pin(self, program: Program, card_id: uuid.UUID) -> None:
        return None


class ProcessorError(Exception):
    """The processor could not do what was asked; the message says why (never card data)."""


PROCESSORS: dict[str, Processor] = {"simulated": SimulatedProcessor()}
