"""IBAN validation (ISO 13616): shape and the mod-97 check digits."""

from __future__ import annotations

import re

SHAPE = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$")


def normalize(text: str) -> str:
    """Upper case without spaces, as IBANs are compared and stored."""
    return text.replace(" ", "").upper()


def is_valid(iban: str) -> bool:
    """Whether an IBAN (normalized) has the right shape and check digits."""
    if not SHAPE.fullmatch(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1
