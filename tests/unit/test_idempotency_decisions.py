"""Idempotency keys without a database: the verdict on a key's row, the key's shape, the request
hash, the sealing of stored answers, and which routes take a key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from antaca_api import idempotency
from antaca_api.domain_errors import ValidationFailed
from antaca_api.idempotency import Caller, Stored, Verdict, verdict
from antaca_api.routes import load_all
from antaca_api.routing import ROUTES, Channel
from antaca_auth.cardkeys import CardKeys

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
HASH, OTHER = b"a" * 32, b"b" * 32


def stored(*, request_hash=HASH, status=None, response=None, lease=60, expires=3600) -> Stored:
    locked_until = NOW + timedelta(seconds=lease) if status is None else None
    return Stored(request_hash, status, response, locked_until, NOW + timedelta(seconds=expires))


def test_verdicts():
    assert verdict(None, HASH, NOW) is Verdict.CLAIM
    assert verdict(stored(status=201, response=b"x"), HASH, NOW) is Verdict.REPLAY
    assert verdict(stored(status=201, response=b"x"), OTHER, NOW) is Verdict.REUSED
    assert verdict(stored(), HASH, NOW) is Verdict.IN_PROGRESS
    assert verdict(stored(), OTHER, NOW) is Verdict.REUSED  # even while the first one runs
    assert verdict(stored(lease=0), HASH, NOW) is Verdict.CLAIM  # its process died: take it over
    assert verdict(stored(lease=0), OTHER, NOW) is Verdict.REUSED
    # Expired: the key is free again, whatever request used it.
    assert verdict(stored(status=201, response=b"x", expires=0), OTHER, NOW) is Verdict.CLAIM
    assert verdict(stored(expires=-1), HASH, NOW) is Verdict.CLAIM


def test_key_shape():
    assert idempotency.check_key("order-42") == "order-42"
    assert idempotency.check_key("k" * idempotency.key_length_max)
    for bad in ("", "k" * (idempotency.key_length_max + 1), "tab\there", "zażółć", "nul\x00"):
        with pytest.raises(ValidationFailed):
            idempotency.check_key(bad)


def test_request_hash_covers_method_path_body_and_public_key():
    hash_key = idempotency.request_hash_key(CardKeys.generate())
    base = idempotency.request_hash(hash_key, "POST", "/secure/customers", b'{"a":1}', None)
    assert base == idempotency.request_hash(hash_key, "POST", "/secure/customers", b'{"a":1}',
                                            None)
    # Keyed: without the card keys, a hash of a body carrying a PIN gives nothing to guess with.
    other_key = idempotency.request_hash_key(CardKeys.generate())
    assert base != idempotency.request_hash(other_key, "POST", "/secure/customers", b'{"a":1}',
                                            None)
    assert len(base) == 32
    for other in (("PUT", "/secure/customers", b'{"a":1}', None),
                  ("POST", "/secure/customers?x=1", b'{"a":1}', None),
                  ("POST", "/secure/customers", b'{"a":2}', None),
                  ("POST", "/secure/customers", b'{"a":1}', "cGVt"),
                  ("POST", "/secure/customer", b's{"a":1}', None)):  # parts are length-prefixed
        assert idempotency.request_hash(hash_key, *other) != base


def test_stored_answers_are_sealed_to_their_caller_and_key():
    keys = CardKeys.generate()
    caller = Caller("partner", uuid.uuid4())
    blob = idempotency.seal(keys, caller, "k1", b'{"cardId":"x"}')
    assert b"cardId" not in blob
    assert idempotency.unseal(keys, caller, "k1", blob) == b'{"cardId":"x"}'
    assert idempotency.unseal(keys, caller, "k2", blob) is None
    assert idempotency.unseal(keys, Caller("admin", caller.id), "k1", blob) is None
    assert idempotency.unseal(CardKeys.generate(), caller, "k1", blob) is None


# POSTs of the partner and admin channels that neither create anything nor move money, and why.
# A new POST must be flagged `idempotent` or named here.
NOT_CREATING = {
    "/admin/sessions": "a login: no caller yet to own a key",
    "/admin/partners/{partnerId}/webhook-secret": "rotates a secret: a retry rotates again",
    "/admin/partners/{partnerId}/certificates/{serial}/revoke": "a state change, idempotent itself",
    "/admin/corporations/{dcCorporationId}/kyb": "a decision on an existing corporation",
    "/lifecycle/v1/corporations/{dcCorporationId}/documents": "multipart, read by its handler",
    "/secure/customers/{customerId}/register": "submits KYC documents of an existing customer",
    "/admin/users/{adminId}/password-reset": "a new temporary password: a retry sets another",
    "/secure/cards/{cardId}/pin": "sets a PIN: a retry sets the same PIN again",
    "/admin/networks/{networkId}/certificates/{serial}/revoke": "a state change, idempotent itself",
    "/secure/controls/{controlId}/promote": "a state change (SHADOW to ACTIVE), refused once done",
    "/admin/controls/{controlId}/promote": "a state change (SHADOW to ACTIVE), refused once done",
    "/admin/customers/{customerId}/kyc": "a decision on an existing customer, refused once made",
    "/admin/partners/{partnerId}/balances/{balanceId}/approve": "a state change, refused once done",
    "/secure/webhooks/{endpointId}/disable": "a state change, idempotent itself",
    "/secure/webhooks/{endpointId}/enable": "a state change, idempotent itself",
    "/secure/webhooks/{endpointId}/rotate-secret": "rotates a secret: a retry rotates again",
    "/secure/simulate/authorizations": "sandbox; its body may carry a PIN, which the key's stored "
                                       "request hash would keep",
}
STATE_CHANGES = ("/activate", "/lock", "/unlock", "/block", "/unblock", "/close", "/cvv")

MOVES_MONEY = {
    "/secure/customers/{customerId}/balances/{balanceId}/reload",
    "/secure/customers/{customerId}/balances/{balanceId}/transfers",
    "/admin/partners/{partnerId}/balances/{balanceId}/reload",
    "/admin/fees/run",
    "/secure/balances/{balanceId}/reload",
    "/secure/customers/{customerId}/balances/{balanceId}/internal-transfers",
}


def test_every_creating_or_money_moving_post_is_idempotent():
    load_all()
    channels = (Channel.PARTNER, Channel.ADMIN)
    posts = [r for r in ROUTES if r.method == "POST" and r.channel in channels]
    unflagged = {r.path for r in posts if not r.idempotent}
    unexplained = {p for p in unflagged if p not in NOT_CREATING and not p.endswith(STATE_CHANGES)}
    assert unexplained == set(), "flag these routes idempotent, or say in NOT_CREATING why not"
    assert MOVES_MONEY <= {r.path for r in posts if r.idempotent}
    for r in posts:
        if r.status in (201, 202) and r.authenticated and not r.multipart:
            assert r.idempotent, r.path
    assert not [r.path for r in ROUTES if r.idempotent and r.channel not in channels]
