"""Antaca's ISO 8583:1987 field specification for `pyiso8583` (docs/iso8583.md, field by field).

ASCII fields, binary bitmaps, no header. Every field of the standard is declared so that a
message carrying fields Antaca does not use still decodes (they are ignored); the fields Antaca
reads or writes are listed in `USED_FIELDS` with the one deviation from 1987 (DE52).
"""

from __future__ import annotations

import copy

import iso8583.specs

LENGTH_PREFIX_BYTES = 2  # every message travels behind a 2-byte big-endian length
MESSAGE_BYTES_MAX = 4096  # a longer announced length breaks the framing: the connection closes
MESSAGE_BYTES_MIN = 12  # MTI (4) and the primary bitmap (8)


def _field(data_encoding: str, length_digits: int, max_length: int, description: str) -> dict:
    return {"data_enc": data_encoding, "len_enc": "ascii", "len_type": length_digits,
            "max_len": max_length, "desc": description}


SPEC: dict = copy.deepcopy(iso8583.specs.default)
SPEC.update({
    "h": _field("ascii", 0, 0, "no header"),
    "t": _field("ascii", 0, 4, "Message Type Indicator"),
    "p": _field("b", 0, 8, "Primary bitmap (binary)"),
    "1": _field("b", 0, 8, "Secondary bitmap (binary)"),
    "2": _field("ascii", 2, 19, "PAN, n..19"),
    "3": _field("ascii", 0, 6, "Processing code, n6"),
    "4": _field("ascii", 0, 12, "Amount, transaction, n12, minor units"),
    "7": _field("ascii", 0, 10, "Transmission date and time, MMDDhhmmss, n10"),
    "11": _field("ascii", 0, 6, "System trace audit number (STAN), n6"),
    "12": _field("ascii", 0, 6, "Time, local transaction, hhmmss, n6"),
    "13": _field("ascii", 0, 4, "Date, local transaction, MMDD, n4"),
    "14": _field("ascii", 0, 4, "Date, expiration, YYMM, n4"),
    "18": _field("ascii", 0, 4, "Merchant category code, n4"),
    "22": _field("ascii", 0, 3, "POS entry mode, n3"),
    "32": _field("ascii", 2, 11, "Acquiring institution id, n..11"),
    "37": _field("ascii", 0, 12, "Retrieval reference number, an12"),
    "38": _field("ascii", 0, 6, "Approval code, an6"),
    "39": _field("ascii", 0, 2, "Response code, an2"),
    "41": _field("ascii", 0, 8, "Card acceptor terminal id, ans8"),
    "42": _field("ascii", 0, 15, "Card acceptor id, ans15"),
    "43": _field("ascii", 0, 40, "Card acceptor name (25), city (13), country (2), ans40"),
    "44": _field("ascii", 2, 25, "Additional response data: the failure action code, ans..25"),
    "48": _field("ascii", 3, 999, "Additional data, private: tag n2, length n2, value; CVC2 in 92"),
    "49": _field("ascii", 0, 3, "Currency code, transaction, ISO 4217 numeric, n3"),
    # 1987 defines DE52 as b 64 (8 bytes, a format 0 block); a format 4 block is 16 bytes, so
    # Antaca reads it as a binary LLVAR of 8 or 16 bytes (the length counts bytes).
    "52": _field("b", 2, 16, "PIN block, ISO 9564 format 0 (8 bytes) or 4 (16 bytes), LLVAR b..16"),
    "54": _field("ascii", 3, 120, "Additional amounts, an...120"),
    "70": _field("ascii", 0, 3, "Network management information code, n3"),
    "90": _field("ascii", 0, 42, "Original data elements, n42"),
    "95": _field("ascii", 0, 42, "Replacement amounts, an42"),
})

USED_FIELDS = ("2", "3", "4", "7", "11", "12", "13", "14", "18", "22", "32", "37", "38", "39",
               "41", "42", "43", "44", "48", "49", "52", "54", "70", "90", "95")

# ISO 4217: numeric code (DE49) to the alphabetic code the engine and the ledger use.
CURRENCY_ALPHABETIC = {
    "036": "AUD", "124": "CAD", "156": "CNY", "203": "CZK", "208": "DKK", "348": "HUF",
    "392": "JPY", "578": "NOK", "643": "RUB", "752": "SEK", "756": "CHF", "826": "GBP",
    "840": "USD", "949": "TRY", "946": "RON", "975": "BGN", "978": "EUR", "980": "UAH",
    "985": "PLN", "986": "BRL", "484": "MXN", "356": "INR", "710": "ZAR", "554": "NZD",
    "702": "SGD", "344": "HKD",
}
CURRENCY_NUMERIC = {alphabetic: numeric for numeric, alphabetic in CURRENCY_ALPHABETIC.items()}
