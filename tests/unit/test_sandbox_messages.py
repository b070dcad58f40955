"""The sandbox's pure parts: the production refusal, message ids bound to their card, and the
network message built for a card (no database)."""

from __future__ import annotations

import os
import uuid

import pytest

from antaca_api import cli, sandbox
from antaca_api.domain_errors import NotFound
from antaca_api.settings import Environment, Settings, SettingsRefused
from antaca_auth import pinblock
from antaca_auth.authorization import TxType
from antaca_auth.pinblock import PinBlockFormat, ZoneKey

CARD = sandbox.SandboxCard(uuid.uuid4(), "5355220000000003", "2912", "123")
NETWORK = sandbox.SandboxNetwork(sandbox.SANDBOX_NETWORK_ID, 1500,
                                 ZoneKey(PinBlockFormat.ISO_4, os.urandom(16)))


def test_the_sandbox_is_off_by_default_and_refused_in_production(monkeypatch):
    assert Settings().sandbox is False and Settings().environment is Environment.DEVELOPMENT
    with pytest.raises(SettingsRefused):
        Settings(sandbox=True, environment=Environment.PRODUCTION)
    monkeypatch.setenv("ANTACA_SANDBOX", "1")
    assert Settings.from_env().sandbox is True
    monkeypatch.setenv("ANTACA_ENVIRONMENT", "production")
    with pytest.raises(SettingsRefused):
        Settings.from_env()
    monkeypatch.setenv("ANTACA_ENVIRONMENT", "staging")
    with pytest.raises(SettingsRefused):
        Settings.from_env()
    monkeypatch.delenv("ANTACA_SANDBOX")
    monkeypatch.setenv("ANTACA_ENVIRONMENT", "PRODUCTION")
    assert Settings.from_env().environment is Environment.PRODUCTION


def test_serve_refuses_to_start_a_production_sandbox(monkeypatch, capsys):
    monkeypatch.setenv("ANTACA_SANDBOX", "1")
    monkeypatch.setenv("ANTACA_ENVIRONMENT", "production")
    assert cli.main(["serve"]) == 2
    assert "ANTACA_SANDBOX=1 is refused" in capsys.readouterr().err


def test_message_ids_are_bound_to_their_card():
    card_id, other = uuid.uuid4(), uuid.uuid4()
    first, second = sandbox.message_id(card_id), sandbox.message_id(card_id)
    assert first != second and len(first) <= 64
    assert sandbox.check_message_of_card(card_id, first) == first
    for foreign in (sandbox.message_id(other), "some-network-message", card_id.hex):
        with pytest.raises(NotFound):
            sandbox.check_message_of_card(card_id, foreign)


def test_the_message_carries_the_cards_data():
    ecom = sandbox.authorization_request(NETWORK, CARD, sandbox.Payment(amount=100,
                                                                         currency="EUR"), "m1")
    assert (ecom.pan, ecom.expiry, ecom.cvc2, ecom.type, ecom.pin_block) == \
        (CARD.pan, "2912", "123", TxType.ECOM, None)
    wrong = sandbox.authorization_request(NETWORK, CARD, sandbox.Payment(
        amount=100, currency="EUR", cvc2="999", expiry="3001"), "m2")
    assert (wrong.cvc2, wrong.expiry) == ("999", "3001")
    pos = sandbox.authorization_request(NETWORK, CARD, sandbox.Payment(
        amount=100, currency="EUR", type=TxType.POS), "m3")
    assert pos.cvc2 is None and pos.terminal_id is not None


def test_a_pin_is_sent_only_as_a_pin_block_under_the_sandbox_key():
    atm = sandbox.authorization_request(NETWORK, CARD, sandbox.Payment(
        amount=100, currency="EUR", type=TxType.ATM, pin="4821"), "m4")
    assert "4821" not in atm.pin_block and len(atm.pin_block) == 32
    block = bytes.fromhex(atm.pin_block)
    assert pinblock.decipher_pin(NETWORK.zone_key, block, CARD.pan) == "4821"
