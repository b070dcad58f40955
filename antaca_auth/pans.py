"""PANs: Luhn check digits, generation inside a BIN range, masking."""

from __future__ import annotations

import secrets

# A PAN has 14 to 19 digits everywhere: card programs, network messages (JSON and ISO 8583).
PAN_LENGTH_MIN, PAN_LENGTH_MAX = 14, 19
PAN_PATTERN = rf"^[0-9]{{{PAN_LENGTH_MIN},{PAN_LENGTH_MAX}}}$"


def luhn_check_digit(partial: str) -> str:
    """The digit that makes `partial` + digit pass the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(pan: str) -> bool:
    return pan.isdigit() and len(pan) >= 2 and luhn_check_digit(pan[:-1]) == pan[-1]


def generate_pan(bin_prefix: str, length: int) -> str:
    """A random Luhn-valid PAN of `length` digits starting with `bin_prefix`."""
    assert bin_prefix.isdigit() and 6 <= len(bin_prefix) < length - 1, "bad BIN range"
    assert PAN_LENGTH_MIN <= length <= PAN_LENGTH_MAX, "bad PAN length"
    body = bin_prefix + "".join(secrets.choice("0123456789") for _ in range(length - len(bin_prefix) - 1))
    return body + luhn_check_digit(body)


def mask_pan(pan: str) -> str:
    """BIN (first six) and last four, the rest hidden: what lists and logs may show."""
    return f"{pan[:6]}{'*' * (len(pan) - 10)}{pan[-4:]}"
