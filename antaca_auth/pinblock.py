"""ISO 9564-1 enciphered PIN blocks: format 0 under a TDES zone PIN key, format 4 under AES.

Pure: no I/O. A network sends the PIN of an authorization enciphered under the zone PIN key it
shares with Antaca; `decipher_pin` gives the clear PIN back for verification and nothing here
keeps it. Messages of the errors raised here never hold a PIN, a PAN or key material.

- Format 0: clear PIN field `0 L P..P F..F` (16 nibbles) XOR the PAN field `0000` + the 12
  rightmost PAN digits without the check digit; the 8-byte result is enciphered with TDES-ECB.
- Format 4 (ISO 9564-1:2017): clear PIN field `4 L P..P A..A` (16 nibbles) + 16 random fill
  nibbles; PAN field: `M` (PAN length - 12) + the PAN digits, padded with zeros to 32 nibbles.
  Block A = AES(PIN field); block B = A XOR PAN field; the PIN block = AES(B).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

PIN_LENGTH_MIN = 4
PIN_LENGTH_MAX = 12
# Antaca's PANs (card programs and the network channel take 13 to 19 digits). The standard also
# pads shorter ones; none reaches here, so that path is refused rather than kept untested.
PAN_LENGTH_MIN = 13
PAN_LENGTH_MAX = 19
ZONE_KEY_BYTES = 16  # double-length TDES (K1 K2) or AES-128
CHECK_VALUE_BYTES = 3  # shown as 6 hex digits
FORMAT_0_BLOCK_BYTES = 8
FORMAT_4_BLOCK_BYTES = 16
FORMAT_4_RANDOM_FILL_BYTES = 8  # the 16 nibbles after the PIN and its A fill
PIN_FIELD_NIBBLES = 16  # control, length, PIN and fill: all of format 0's field, half of format 4's
PAN_FIELD_0_DIGITS = 12
FORMAT_4_PAN_LENGTH_BASE = 12  # format 4's M nibble is the PAN length minus this
DES_PARITY_MASK = 0xFE  # DES ignores the low bit of every key byte

DECIMAL_DIGITS = frozenset("0123456789")


class PinBlockFormat(enum.StrEnum):
    ISO_0 = "ISO_0"  # ISO 9564-1 format 0, 8-byte block, double-length TDES zone key
    ISO_4 = "ISO_4"  # ISO 9564-1:2017 format 4, 16-byte block, AES-128 zone key


# Per format: the control nibble, the fill nibble after the PIN, the cipher block size.
CONTROL_NIBBLE = {PinBlockFormat.ISO_0: "0", PinBlockFormat.ISO_4: "4"}
FILL_NIBBLE = {PinBlockFormat.ISO_0: "F", PinBlockFormat.ISO_4: "A"}
BLOCK_BYTES = {
    PinBlockFormat.ISO_0: FORMAT_0_BLOCK_BYTES,
    PinBlockFormat.ISO_4: FORMAT_4_BLOCK_BYTES,
}


class ZoneKeyError(ValueError):
    """A zone PIN key is malformed or weak."""


class PinBlockError(Exception):
    """A PIN block, PIN or PAN that cannot be enciphered or deciphered."""


# One message for every way a deciphered field can be wrong: telling them apart (control
# nibble, length, digits, fill) would make the decipherer an oracle on the block's content.
INVALID_PIN_FIELD = "the PIN block does not decipher to a valid PIN field (wrong key, PAN or block)"


@dataclass(frozen=True)
class ZoneKey:
    """A zone PIN key shared with one network, with the PIN block format it enciphers."""

    format: PinBlockFormat
    key: bytes = field(repr=False)  # never in a repr, so never in a log or a traceback
    cipher: Cipher = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "format", PinBlockFormat(self.format))
        except ValueError:
            raise ZoneKeyError("unknown PIN block format") from None
        if not isinstance(self.key, bytes) or len(self.key) != ZONE_KEY_BYTES:
            raise ZoneKeyError(f"a zone PIN key must be {ZONE_KEY_BYTES} bytes")
        if self.format is PinBlockFormat.ISO_0:
            half = ZONE_KEY_BYTES // 2
            left, right = self.key[:half], self.key[half:]
            if without_parity(left) == without_parity(right):
                raise ZoneKeyError("the halves of a TDES zone PIN key are equal: it is single DES")
            # K1 K2 K1 spelled out: the library deprecates the 16-byte two-key form.
            algorithm = TripleDES(self.key + self.key[:half])
        else:
            algorithm = algorithms.AES(self.key)
        object.__setattr__(self, "cipher", Cipher(algorithm, modes.ECB()))

    @property
    def block_bytes(self) -> int:
        return BLOCK_BYTES[self.format]

    def check_value(self) -> str:
        """Key check value: the first 3 bytes of a zero block enciphered (ECB), 6 hex digits."""
        return self.encrypt(bytes(self.block_bytes))[:CHECK_VALUE_BYTES].hex().upper()

    def encrypt(self, block: bytes) -> bytes:
        encryptor = self.cipher.encryptor()
        return encryptor.update(block) + encryptor.finalize()

    def decrypt(self, block: bytes) -> bytes:
        decryptor = self.cipher.decryptor()
        return decryptor.update(block) + decryptor.finalize()


def decipher_pin(zone_key: ZoneKey, pin_block: bytes, pan: str) -> str:
    """The clear PIN in `pin_block`, enciphered under `zone_key` and bound to `pan`."""
    check_pan(pan)
    if not isinstance(pin_block, bytes) or len(pin_block) != zone_key.block_bytes:
        raise PinBlockError(f"an {zone_key.format} PIN block must be {zone_key.block_bytes} bytes")
    if zone_key.format is PinBlockFormat.ISO_0:
        pin_field = xor(zone_key.decrypt(pin_block), pan_field(zone_key.format, pan))
    else:
        block_a = xor(zone_key.decrypt(pin_block), pan_field(zone_key.format, pan))
        pin_field = zone_key.decrypt(block_a)
    return read_pin_field(zone_key.format, pin_field)


def encipher_pin(zone_key: ZoneKey, pin: str, pan: str, *,
                 fill: Callable[[int], bytes] = os.urandom) -> bytes:
    """The PIN block of `pin` bound to `pan`; `fill` gives format 4's random fill bytes."""
    check_pan(pan)
    if not (isinstance(pin, str) and PIN_LENGTH_MIN <= len(pin) <= PIN_LENGTH_MAX
            and set(pin) <= DECIMAL_DIGITS):
        raise PinBlockError(f"a PIN must be {PIN_LENGTH_MIN} to {PIN_LENGTH_MAX} digits")
    control, fill_nibble = CONTROL_NIBBLE[zone_key.format], FILL_NIBBLE[zone_key.format]
    nibbles = f"{control}{len(pin):X}{pin}".ljust(PIN_FIELD_NIBBLES, fill_nibble)
    if zone_key.format is PinBlockFormat.ISO_0:
        return zone_key.encrypt(xor(bytes.fromhex(nibbles), pan_field(zone_key.format, pan)))
    random_fill = fill(FORMAT_4_RANDOM_FILL_BYTES)
    if len(random_fill) != FORMAT_4_RANDOM_FILL_BYTES:
        raise PinBlockError(f"the fill source must give {FORMAT_4_RANDOM_FILL_BYTES} bytes")
    block_a = zone_key.encrypt(bytes.fromhex(nibbles) + random_fill)
    return zone_key.encrypt(xor(block_a, pan_field(zone_key.format, pan)))


def check_pan(pan: str) -> None:
    if not (isinstance(pan, str) and PAN_LENGTH_MIN <= len(pan) <= PAN_LENGTH_MAX
            and set(pan) <= DECIMAL_DIGITS):
        raise PinBlockError(f"a PAN must be {PAN_LENGTH_MIN} to {PAN_LENGTH_MAX} digits")


def pan_field(pin_block_format: PinBlockFormat, pan: str) -> bytes:
    """The clear PAN field of a format for a checked PAN."""
    if pin_block_format is PinBlockFormat.ISO_0:
        # The 12 rightmost digits without the check digit (the last one).
        return bytes.fromhex("0000" + pan[-PAN_FIELD_0_DIGITS - 1:-1])
    nibbles = f"{len(pan) - FORMAT_4_PAN_LENGTH_BASE}{pan}"
    return bytes.fromhex(nibbles.ljust(2 * FORMAT_4_BLOCK_BYTES, "0"))


def read_pin_field(pin_block_format: PinBlockFormat, pin_field: bytes) -> str:
    """The PIN in a clear PIN field, or PinBlockError (one message for every flaw)."""
    nibbles = pin_field.hex().upper()
    length = int(nibbles[1], 16)
    pin = nibbles[2:2 + length]
    fill = nibbles[2 + length:PIN_FIELD_NIBBLES]
    if (nibbles[0] != CONTROL_NIBBLE[pin_block_format]
            or not PIN_LENGTH_MIN <= length <= PIN_LENGTH_MAX
            or not set(pin) <= DECIMAL_DIGITS
            or fill != FILL_NIBBLE[pin_block_format] * len(fill)):
        raise PinBlockError(INVALID_PIN_FIELD)
    return pin


def without_parity(des_key: bytes) -> bytes:
    return bytes(b & DES_PARITY_MASK for b in des_key)


def xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))
