"""ISO 8583 fields to the engine's and follow-ups' requests, and their answers back (pure).

Nothing here touches the network or the database: the listener decodes a frame with `SPEC`,
asks this module what the message means, calls one domain function and encodes the answer built
here. Every field's check raises `FormatError` naming the field, never its value.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import msgspec

from antaca_api.iso8583.spec import CURRENCY_ALPHABETIC, CURRENCY_NUMERIC
from antaca_auth.authorization import AuthorizationRequest, TxType
from antaca_auth.engine import AuthorizationResult

# DE39 answers of the listener itself (the engine's own codes come from its decisions).
APPROVED = "00"
INVALID_TRANSACTION = "12"  # an MTI or processing code Antaca does not handle
INVALID_AMOUNT = "13"
ORIGINAL_NOT_FOUND = "25"  # a reversal or clearing whose original Antaca cannot find
FORMAT_ERROR = "30"
SYSTEM_MALFUNCTION = "96"

# DE3's first two digits: the transaction type.
PURCHASE, CASH, REFUND, BALANCE_INQUIRY = "00", "01", "20", "31"
# DE22's first two digits (PAN entry mode) that make a purchase an e-commerce payment.
ECOMMERCE_ENTRY_MODES = frozenset({"81", "10"})
# DE70: network management information codes.
SIGN_ON, SIGN_OFF, ECHO = "001", "002", "301"
CVC2_TAG = "92"  # DE48 subfield (tag n2, length n2, value) carrying the CVC2, as Mastercard's
AVAILABLE_BALANCE = "02"  # DE54 amount type
ACQUIRER_DIGITS = 11  # DE32 right-justified with zeros, as in DE90
AMOUNT_DIGITS = 12
AMOUNT_MAX = 10**AMOUNT_DIGITS - 1
APPROVAL_CODE_CHARACTERS = 6
FOLLOW_UP_CAPTURE_SUFFIX = ":capture"  # the clearing half of a 0200's message identity

# Requests and advices (repeats, ending in 1, answer like the first) and their answers' MTIs.
RESPONSE_MTI = {
    "0100": "0110", "0101": "0110", "0120": "0130", "0121": "0130",
    "0200": "0210", "0201": "0210", "0220": "0230", "0221": "0230",
    "0400": "0410", "0401": "0410", "0420": "0430", "0421": "0430",
    "0800": "0810", "0801": "0810",
}
REJECT_MTI = "0620"  # administrative advice: an unreadable or unknown MTI, or an unasked answer
# Fields an answer repeats from its request so the network can match it (STAN, RRN, time, ...).
ECHOED_FIELDS = ("2", "3", "4", "7", "11", "12", "13", "32", "37", "41", "42", "49", "90")

_NUMERIC = re.compile(r"[0-9]+")
_ANSWERS_WITHOUT_PAN = ("0810",)


class FormatError(Exception):
    """A field is missing or malformed: answered DE39 30. Carries the field's number only."""

    def __init__(self, field: str) -> None:
        super().__init__(f"DE{field} missing or malformed")
        self.field = field


class Unsupported(Exception):
    """A well-formed message asking for what Antaca does not do (answered with `code`)."""

    def __init__(self, code: str) -> None:
        super().__init__(f"DE39 {code}")
        self.code = code


def response_mti(mti: str) -> str:
    """The MTI answering `mti`: its own response class, or the reject advice for anything else."""
    known = RESPONSE_MTI.get(mti)
    if known is not None:
        return known
    if len(mti) == 4 and mti.isdigit() and mti[2] in "02" and mti[3] in "01":
        return mti[:2] + str(int(mti[2]) + 1) + "0"
    return REJECT_MTI


def numeric(fields: dict, field: str, length: int | None = None, *,
            required: bool = True) -> str | None:
    """A field of digits (of exactly `length` when given), or None when absent and optional."""
    value = fields.get(field)
    if value is None:
        if required:
            raise FormatError(field)
        return None
    if not _NUMERIC.fullmatch(value) or (length is not None and len(value) != length):
        raise FormatError(field)
    return value


def text(fields: dict, field: str) -> str | None:
    """A free-text field, trailing spaces removed; None when absent or blank."""
    value = fields.get(field)
    if value is None:
        return None
    return value.rstrip() or None


def acquirer(fields: dict) -> str:
    """DE32, right-justified with zeros to 11 digits as DE90 carries it."""
    return numeric(fields, "32").rjust(ACQUIRER_DIGITS, "0")


def message_identity(fields: dict) -> str:
    """The engine's message id for the network's message: DE32 (11 digits), DE7, DE11.

    A repeat (MTI ending in 1) carries the same three, so it is answered as the first was."""
    return acquirer(fields) + numeric(fields, "7", 10) + numeric(fields, "11", 6)


def original_identity(fields: dict) -> str:
    """The message id of the original a reversal or advice names in DE90.

    DE90: original MTI (4), STAN (6), transmission date and time (10), acquirer (11),
    forwarding institution (11)."""
    original = numeric(fields, "90", 42)
    return original[20:31] + original[10:20] + original[4:10]


def amount(fields: dict, field: str = "4") -> int:
    value = numeric(fields, field, AMOUNT_DIGITS)
    if int(value) <= 0:
        raise Unsupported(INVALID_AMOUNT)
    return int(value)


def currency(fields: dict) -> str:
    code = numeric(fields, "49", 3)
    alphabetic = CURRENCY_ALPHABETIC.get(code)
    if alphabetic is None:
        raise Unsupported("57")  # transaction not permitted: a currency Antaca cannot name
    return alphabetic


def is_balance_inquiry(fields: dict) -> bool:
    return numeric(fields, "3", 6)[:2] == BALANCE_INQUIRY


def _presence(fields: dict) -> TxType:
    """POS, or ECOM when DE22's entry mode says e-commerce."""
    entry_mode = numeric(fields, "22", 3, required=False)
    online = entry_mode is not None and entry_mode[:2] in ECOMMERCE_ENTRY_MODES
    return TxType.ECOM if online else TxType.POS


def transaction_type(fields: dict) -> TxType:
    processing = numeric(fields, "3", 6)[:2]
    if processing == PURCHASE:
        return _presence(fields)
    if processing == CASH:
        return TxType.ATM
    if processing == REFUND:
        return TxType.REFUND
    raise Unsupported(INVALID_TRANSACTION)  # a balance inquiry never reaches here


def cvc2(fields: dict) -> str | None:
    """The CVC2 in DE48's tag 92, if any. DE48 is tag (2), length (2), value, repeated."""
    data = fields.get("48")
    if data is None:
        return None
    position = 0
    while position < len(data):
        tag, length = data[position:position + 2], data[position + 2:position + 4]
        if not (_NUMERIC.fullmatch(tag) and _NUMERIC.fullmatch(length)):
            raise FormatError("48")
        value = data[position + 4:position + 4 + int(length)]
        if len(value) != int(length):
            raise FormatError("48")
        if tag == CVC2_TAG:
            return value
        position += 4 + int(length)
    return None


# An inquiry's request needs a positive amount (AuthorizationRequest); the inquiry reads none, and
# its DE4 is usually zero.
INQUIRY_AMOUNT_PLACEHOLDER = 1


def authorization_request(fields: dict) -> AuthorizationRequest:
    """The engine's request for a 0100, 0120 or 0200 (their repeats too). A balance inquiry (DE3
    `31`) is checked as a payment at the point of sale (e-commerce by DE22) and has no amount."""
    inquiry = is_balance_inquiry(fields)
    body = {
        "messageId": message_identity(fields),
        "pan": numeric(fields, "2"),
        "expiry": numeric(fields, "14", 4),
        "amount": INQUIRY_AMOUNT_PLACEHOLDER if inquiry else amount(fields),
        "currency": currency(fields),
        "type": str(_presence(fields) if inquiry else transaction_type(fields)),
    }
    optional = {"cvc2": cvc2(fields), "mcc": numeric(fields, "18", 4, required=False),
                "posEntryMode": numeric(fields, "22", 3, required=False),
                "terminalId": text(fields, "41"), "merchantId": text(fields, "42")}
    pin_block = fields.get("52")
    if pin_block is not None:
        optional["pinBlock"] = pin_block.upper()
    location = fields.get("43")
    if location is not None:
        if len(location) != 40:
            raise FormatError("43")
        optional["merchantName"] = location[:25].rstrip() or None
        optional["merchantCountry"] = location[38:40].rstrip() or None
    body.update({key: value for key, value in optional.items() if value is not None})
    try:
        return msgspec.convert(body, AuthorizationRequest)
    except msgspec.ValidationError as exc:
        raise FormatError(_field_of(str(exc))) from None


# The JSON name of each request field and the data element it came from, for FormatError.
_REQUEST_FIELDS = {"pan": "2", "expiry": "14", "cvc2": "48", "pinBlock": "52", "mcc": "18",
                   "posEntryMode": "22",
                   "merchantId": "42", "merchantName": "43", "merchantCountry": "43",
                   "terminalId": "41", "messageId": "11"}


def _field_of(message: str) -> str:
    """The data element a msgspec validation message (which names the path) is about."""
    for name, field in _REQUEST_FIELDS.items():
        if f"$.{name}`" in message:
            return field
    return "0"


@dataclass(frozen=True, slots=True)
class Reversal:
    message_id: str
    original_message_id: str
    amount: int | None  # released; None: the whole hold


def reversal(fields: dict) -> Reversal:
    """A 0400 or 0420: full, or partial when DE95's actual amount is below the original DE4."""
    original_amount = amount(fields)
    replacement = fields.get("95")
    released = None
    if replacement is not None:
        actual = replacement[:AMOUNT_DIGITS]
        if len(replacement) != 42 or not _NUMERIC.fullmatch(actual):
            raise FormatError("95")
        if int(actual) >= original_amount:
            raise Unsupported(INVALID_AMOUNT)
        if int(actual) > 0:
            released = original_amount - int(actual)
    return Reversal(message_identity(fields), original_identity(fields), released)


def approval_code(authorization_id: uuid.UUID) -> str:
    """DE38: six characters of the authorization id (its random end, not its time prefix)."""
    return authorization_id.hex[-APPROVAL_CODE_CHARACTERS:].upper()


def answer(request: dict, mti: str, response_code: str) -> dict:
    """An answer to `request`: its response MTI, the echoed fields, DE39."""
    fields = {"t": mti, "39": response_code}
    for field in ECHOED_FIELDS:
        value = request.get(field)
        if value is not None and not (field == "2" and mti in _ANSWERS_WITHOUT_PAN):
            fields[field] = value
    return fields


def authorization_answer(request: dict, mti: str, result: AuthorizationResult) -> dict:
    """0110/0210: DE39, DE38 when approved, DE44 the action code, DE54 the available balance."""
    fields = answer(request, mti, result.response_code)
    if result.decision == "APPROVED":
        fields["38"] = approval_code(result.authorization_id)
        if result.approved_amount != int(request.get("4", "0")):
            fields["4"] = str(result.approved_amount).zfill(AMOUNT_DIGITS)
    if result.action_code is not None:
        fields["44"] = result.action_code
    _available_balance(fields, result)
    return fields


def inquiry_answer(request: dict, mti: str, result: AuthorizationResult) -> dict:
    """A balance inquiry's 0110/0210: DE39, DE44 on a decline, DE54 the available balance; no
    approval code (nothing was authorized)."""
    fields = answer(request, mti, result.response_code)
    if result.action_code is not None:
        fields["44"] = result.action_code
    _available_balance(fields, result)
    return fields


def _available_balance(fields: dict, result: AuthorizationResult) -> None:
    """DE54: the available balance in the balance's own currency (converted payments included);
    left out when the result names no currency or Antaca has no numeric code for it."""
    if result.available_after is None or result.balance_currency is None:
        return
    numeric_currency = CURRENCY_NUMERIC.get(result.balance_currency)
    if numeric_currency is None or abs(result.available_after) > AMOUNT_MAX:
        return
    sign = "C" if result.available_after >= 0 else "D"
    fields["54"] = ("00" + AVAILABLE_BALANCE + numeric_currency + sign
                    + str(abs(result.available_after)).zfill(AMOUNT_DIGITS))
