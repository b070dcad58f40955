"""The payments the authorization benches send, in process and over HTTP: which card, what kind.

`--mix realistic` (the default) sends what an issuer's traffic holds besides approvals:
- INSUFFICIENT_FUNDS_SHARE of the payments go to the POOR cards (that share of the cards), whose
  balance is too small for any payment (bench.cards.prepare_traffic moves their funds out);
- WRONG_CREDENTIALS_SHARE carry a wrong CVC2 or a wrong PIN, all aimed at the TESTED cards (that
  share of the cards): card testing locks them after five wrong CVC2s (reason 7), three wrong PINs
  lock them too (reason 6), and from then on they decline as locked; the share of declines stays;
- every other payment goes to a FUNDED card; of all payments, POS_WITH_PIN_SHARE are POS payments
  with a PIN block (ISO 9564 format 4 under the network's zone PIN key), the others e-commerce with
  the CVC2, and FOREIGN_CURRENCY_SHARE are in USD (converted at the admin's rate, with its fee);
  the program's fee schedule charges a fee on every payment (bench.cards.FEE_SCHEDULE).
`--mix approve` is the earlier traffic: e-commerce in EUR with the right CVC2 on funded cards.
"""

from __future__ import annotations

import enum
import json
import os
import random
import uuid
from dataclasses import dataclass, field

from antaca_auth.authorization import AuthorizationRequest, TxType
from antaca_auth.pinblock import PinBlockFormat, ZoneKey, encipher_pin

INSUFFICIENT_FUNDS_SHARE = 0.05
WRONG_CREDENTIALS_SHARE = 0.01
POS_WITH_PIN_SHARE = 0.20
FOREIGN_CURRENCY_SHARE = 0.10
HOME_CURRENCY = "EUR"  # the programs' currency
FOREIGN_CURRENCY = "USD"
AMOUNT_MIN_MINOR_UNITS = 100
AMOUNT_MAX_MINOR_UNITS = 5000
PIN = "2580"  # every card's PIN (bench.cards.prepare_traffic stores its record)
WRONG_PIN = "0000"
ZONE_KEY_BYTES = 16  # AES-128, for format 4
MERCHANT_CATEGORY = "5411"


class Mix(enum.StrEnum):
    REALISTIC = "realistic"
    APPROVE = "approve"


class Role(enum.StrEnum):
    FUNDED = "funded"
    POOR = "poor"  # a balance too small for any payment
    TESTED = "tested"  # the target of the wrong CVC2s and PINs


@dataclass
class Traffic:
    """Draws payments of a mix over cards ({"pan", "expiry", "cvc2", "role"}, more keys ignored)."""

    mix: Mix
    cards: list[dict]
    zone_key: ZoneKey | None = None  # the networks' zone PIN key (realistic mix)
    _by_role: dict[Role, list[dict]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.mix = Mix(self.mix)
        self._by_role = {role: [c for c in self.cards if c.get("role", Role.FUNDED) == role]
                         for role in Role}

    @classmethod
    def new(cls, mix: Mix, cards: list[dict]) -> Traffic:
        """Give the cards their roles (in place: the "role" key) and the mix a fresh zone key."""
        for card in cards:
            card["role"] = Role.FUNDED
        if mix is Mix.APPROVE:
            return cls(mix, cards)
        shuffled = random.sample(cards, len(cards))
        poor = round(len(cards) * INSUFFICIENT_FUNDS_SHARE)
        tested = max(1, round(len(cards) * WRONG_CREDENTIALS_SHARE))
        for card in shuffled[:poor]:
            card["role"] = Role.POOR
        for card in shuffled[poor:poor + tested]:
            card["role"] = Role.TESTED
        return cls(mix, cards, ZoneKey(PinBlockFormat.ISO_4, os.urandom(ZONE_KEY_BYTES)))

    def of_role(self, role: Role) -> list[dict]:
        return self._by_role[role]

    def payment(self) -> AuthorizationRequest:
        """The next payment of the mix."""
        if self.mix is Mix.APPROVE:
            return self.payment_for(random.choice(self.cards), Role.FUNDED, foreign=False,
                                    pos=False)
        draw = random.random()
        if draw < INSUFFICIENT_FUNDS_SHARE and self._by_role[Role.POOR]:
            role = Role.POOR
        elif draw < INSUFFICIENT_FUNDS_SHARE + WRONG_CREDENTIALS_SHARE:
            role = Role.TESTED
        else:
            role = Role.FUNDED
        return self.payment_for(random.choice(self._by_role[role]), role,
                             foreign=random.random() < FOREIGN_CURRENCY_SHARE,
                             pos=random.random() < POS_WITH_PIN_SHARE)

    def payment_for(self, card: dict, role: Role, *, foreign: bool,
                    pos: bool) -> AuthorizationRequest:
        """A payment on `card`: wrong credentials for the TESTED role; in USD if `foreign`; POS
        with a PIN block if `pos`, else e-commerce with the CVC2."""
        right = role is not Role.TESTED
        common = {"message_id": uuid.uuid4().hex, "pan": card["pan"], "expiry": card["expiry"],
                  "amount": random.randint(AMOUNT_MIN_MINOR_UNITS, AMOUNT_MAX_MINOR_UNITS),
                  "currency": FOREIGN_CURRENCY if foreign else HOME_CURRENCY,
                  "mcc": MERCHANT_CATEGORY, "merchant_name": "bench"}
        if pos:
            pin_block = encipher_pin(self.zone_key, PIN if right else WRONG_PIN, card["pan"])
            return AuthorizationRequest(type=TxType.POS, pin_block=pin_block.hex(), **common)
        cvc2 = card["cvc2"] if right else f"{(int(card['cvc2']) + 1) % 1000:03d}"
        return AuthorizationRequest(type=TxType.ECOM, cvc2=cvc2, **common)

    def to_json(self) -> str:
        """What a load client in another process needs (bench.http_load)."""
        zone_key = None if self.zone_key is None else {"format": str(self.zone_key.format),
                                                       "key": self.zone_key.key.hex()}
        cards = [{k: c[k] for k in ("pan", "expiry", "cvc2", "role")} for c in self.cards]
        return json.dumps({"mix": str(self.mix), "zone_key": zone_key, "cards": cards})

    @classmethod
    def from_json(cls, text: str) -> Traffic:
        data = json.loads(text)
        zone_key = data["zone_key"]
        return cls(Mix(data["mix"]), [dict(c, role=Role(c["role"])) for c in data["cards"]],
                   None if zone_key is None else ZoneKey(PinBlockFormat(zone_key["format"]),
                                                         bytes.fromhex(zone_key["key"])))
