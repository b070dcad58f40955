"""The pure parts of events and webhooks: signatures (against the standardwebhooks package),
backoff with jitter and the retry window, refused target addresses, cursors, event payloads."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from antaca_api import pages, partner_events, webhooks
from antaca_api.domain_errors import InvalidCursor, ValidationFailed, WebhookTargetRefused
from antaca_api.webhook_targets import address_refusal, check_addresses, check_form
from antaca_auth import events


def test_signatures_are_the_standard_webhooks_ones():
    secret = webhooks.new_secret()
    formatted = webhooks.format_secret(secret)
    body, at = b'{"type":"card.issued"}', int(datetime.now(UTC).timestamp())
    ours = webhooks.signature(secret, "msg_1", at, body)
    theirs = Webhook(formatted).sign("msg_1", datetime.fromtimestamp(at, UTC), body.decode())
    assert ours == theirs
    other = webhooks.new_secret()
    header = webhooks.signature_header([secret, other], "msg_1", at, body)
    assert header.split(" ") == [ours, webhooks.signature(other, "msg_1", at, body)]
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(at), "webhook-signature": header}
    for key in (secret, other):  # during an overlap, either secret verifies
        assert Webhook(webhooks.format_secret(key)).verify(body, headers) == {"type": "card.issued"}


def test_backoff_doubles_is_capped_and_jittered():
    assert webhooks.retry_delay_seconds(1, 10, 1.0) == 10
    assert webhooks.retry_delay_seconds(1, 10, 0.0) == 5
    assert webhooks.retry_delay_seconds(4, 10, 1.0) == 80
    assert webhooks.retry_delay_seconds(60, 10, 1.0) == webhooks.BACKOFF_CAP_SECONDS
    assert webhooks.retry_delay_seconds(10_000, 10, 0.5) == webhooks.BACKOFF_CAP_SECONDS * 0.75


def test_a_delivery_fails_once_its_next_try_would_pass_three_days():
    queued = datetime(2026, 1, 1, tzinfo=UTC)
    state, at = webhooks.next_state(1, queued, queued, 10, 1.0)
    assert (state, at) == ("PENDING", queued + timedelta(seconds=10))
    late = queued + timedelta(days=3) - timedelta(hours=1)
    assert webhooks.next_state(30, queued, late, 10, 0.0) == ("FAILED", late)
    assert webhooks.next_state(30, queued, late - timedelta(hours=5), 10, 0.0)[0] == "PENDING"


@pytest.mark.parametrize(("address", "why"), [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"), ("10.0.0.1", "private"), ("172.31.255.255", "private"),
    ("192.168.0.1", "private"), ("fd12::1", "private"), ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"), ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"),
    ("100.100.100.200", "metadata"), ("100.64.0.1", "not a public"), ("0.0.0.0", "unicast"),
    ("224.0.0.1", "unicast"), ("240.0.0.1", "unicast"),
])
def test_refused_addresses(address, why):
    refusal = address_refusal(ipaddress.ip_address(address))
    assert refusal is not None and why in refusal
    with pytest.raises(WebhookTargetRefused):
        check_addresses([ipaddress.ip_address(address)], allow_private=False)
    check_addresses([ipaddress.ip_address(address)], allow_private=True)  # the development setting


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert address_refusal(ipaddress.ip_address(address)) is None


def test_url_forms():
    assert check_form("https://hooks.example.com/antaca", allow_private=False) == (
        "hooks.example.com", 443, False)
    assert check_form("https://93.184.215.14:8443/x", allow_private=False) == (
        "93.184.215.14", 8443, True)
    assert check_form("http://127.0.0.1:9000/x", allow_private=True) == ("127.0.0.1", 9000, True)
    for url in ("http://hooks.example.com/", "ftp://hooks.example.com/", "https:///x",
                "https://u:p@hooks.example.com/", "https://hooks.example.com/#f",
                "https://hooks.example.com:99999/", "https://127.0.0.1/", "https://" + "a" * 3000):
        with pytest.raises(WebhookTargetRefused):
            check_form(url, allow_private=False)


def test_cursors_round_trip_and_refuse_anything_else():
    event_id = uuid.uuid4()
    newest, oldest = partner_events.keyset(None), partner_events.keyset("oldest")
    assert newest is partner_events.keyset("newest") and newest.descending
    assert not oldest.descending
    with pytest.raises(ValidationFailed):
        partner_events.keyset("sideways")
    lists = (newest, oldest, webhooks.DELIVERY_PAGES)
    for keyset in lists:
        cursor = pages.encode_cursor(keyset, (event_id,))
        assert pages.decode_cursor(keyset, cursor) == (event_id,)
        for other in lists:  # a cursor of one direction, or of deliveries, is refused elsewhere
            if other is not keyset:
                with pytest.raises(InvalidCursor):
                    pages.decode_cursor(other, cursor)
    for junk in ("", "!!", "AAAA", pages.encode_cursor(newest, (event_id,))[:-2]):
        with pytest.raises(InvalidCursor):
            pages.decode_cursor(newest, junk)


def test_event_types_and_payloads():
    assert events.card_event_type("CREATED") == events.CARD_ISSUED
    assert events.card_event_type("CVV_RESET") == "card.cvv_reset"
    assert {events.card_event_type(name) for name in events.CARD_EVENTS} <= events.EVENT_TYPES
    for key in ("pan", "PAN", "cvv", "cvc2", "pin", "pinBlock", "expiry"):
        with pytest.raises(ValueError):
            events.check_payload({"cardId": "x", key: "1234"})
    events.check_payload({"cardId": "x", "amount": 1, "pinSet": True})
    with pytest.raises(ValidationFailed):
        webhooks.check_event_types(["card.issued", "no.such"])
    assert webhooks.check_event_types(["card.locked", "card.issued", "card.locked"]) == [
        "card.issued", "card.locked"]


def test_the_first_id_of_a_millisecond_orders_time_ordered_ids():
    from antaca_auth.ids import new_id

    now = datetime.now(UTC)
    made = new_id()
    assert events.first_id_at(now - timedelta(milliseconds=2)) < made
    assert made < events.first_id_at(now + timedelta(milliseconds=50))
