"""KYC providers: the seam where a real identity-verification service plugs in."""

from __future__ import annotations

import enum
from datetime import date
from typing import Protocol

import msgspec


class KycStatus(enum.StrEnum):
    NOT_VERIFIED = "NOT_VERIFIED"
    PENDING = "PENDING"
    VERIFIED = "VERIFIED"
    REJECTED = "REJECTED"


class Identity(msgspec.Struct, frozen=True):
    """What a provider is given to decide on."""

    first_name: str
    last_name: str
    birth_date: date
    country: str
    document_type: str
    document_number: str
    document_country: str


class KycDecision(msgspec.Struct, frozen=True):
    status: KycStatus  # VERIFIED or REJECTED
    reason: str | None = None


class KycProvider(Protocol):
    name: str

    async def verify(self, identity: Identity, today: date) -> KycDecision: ...


class DeterministicKycProvider:
    """Decides from the data alone, for development and tests.

    Rejects minors, expired-looking documents (number ending in "0000") and documents issued
    by another country than the customer's residence when the number ends in "9999"; verifies
    everything else.
    """

    name = "ANTACA_KYC"

    async def verify(self, identity: Identity, today: date) -> KycDecision:
        b = identity.birth_date
        age = today.year - b.year - ((today.month, today.day) < (b.month, b.day))
        if age < 18:
            return KycDecision(KycStatus.REJECTED, "the customer is under 18")
        if identity.document_number.endswith("0000"):
            return KycDecision(KycStatus.REJECTED, "the document is not valid")
        if identity.document_number.endswith("9999") and identity.document_country != identity.country:
            return KycDecision(KycStatus.REJECTED, "the document country does not match the residence")
        return KycDecision(KycStatus.VERIFIED)
