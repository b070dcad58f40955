"""Remote authorization's pure parts: reading the partner's answer, the call's budget, the masked
PAN, the decline a verdict makes (antaca_auth/remote.py)."""

from __future__ import annotations

import pytest

from antaca_auth.remote import (
    PARTNER_DECLINED,
    REMOTE_ANSWER_BYTES_MAX,
    REMOTE_REASON_LENGTH_MAX,
    REMOTE_WRITE_RESERVE_SECONDS,
    RemoteOutcome,
    RemoteVerdict,
    call_budget,
    mask_pan,
    partner_refusal,
    read_answer,
)


@pytest.mark.parametrize(("body", "outcome", "amount"), [
    (b'{"decision": "APPROVE"}', RemoteOutcome.APPROVED, 1000),
    (b'{"decision": "APPROVE", "amount": 1000}', RemoteOutcome.APPROVED, 1000),
    (b'{"decision": "APPROVE", "amount": 400}', RemoteOutcome.PARTIAL, 400),
    (b'{"decision": "APPROVE", "amount": 1001}', RemoteOutcome.MALFORMED, None),
    (b'{"decision": "APPROVE", "amount": 0}', RemoteOutcome.MALFORMED, None),
    (b'{"decision": "APPROVE", "amount": -5}', RemoteOutcome.MALFORMED, None),
    (b'{"decision": "APPROVE", "amount": "400"}', RemoteOutcome.MALFORMED, None),
    (b'{"decision": "APPROVE", "amount": true}', RemoteOutcome.MALFORMED, None),
    (b'{"decision": "MAYBE"}', RemoteOutcome.MALFORMED, None),
    (b'{"amount": 5}', RemoteOutcome.MALFORMED, None),
    (b'[]', RemoteOutcome.MALFORMED, None),
    (b'not json', RemoteOutcome.MALFORMED, None),
    (b'', RemoteOutcome.MALFORMED, None),
    (b'{"decision": "DECLINE"}', RemoteOutcome.DECLINED, None),
])
def test_answers_are_read_strictly(body, outcome, amount):
    verdict = read_answer(body, 1000)
    assert (verdict.outcome, verdict.amount) == (outcome, amount)


def test_a_decline_keeps_a_bounded_reason_and_a_long_answer_is_malformed():
    long_reason = "x" * (REMOTE_REASON_LENGTH_MAX + 50)
    verdict = read_answer(b'{"decision": "DECLINE", "reason": "%s"}' % long_reason.encode(), 10)
    assert verdict.outcome is RemoteOutcome.DECLINED
    assert verdict.reason == long_reason[:REMOTE_REASON_LENGTH_MAX]
    padded = b'{"decision": "APPROVE", "pad": "' + b"x" * REMOTE_ANSWER_BYTES_MAX + b'"}'
    assert read_answer(padded, 10).outcome is RemoteOutcome.MALFORMED


def test_only_a_decline_refuses_and_unavailable_outcomes_are_the_stand_in_ones():
    assert partner_refusal(RemoteVerdict(RemoteOutcome.DECLINED, reason="no")) is PARTNER_DECLINED
    assert partner_refusal(None) is None
    for outcome in RemoteOutcome:
        verdict = RemoteVerdict(outcome)
        if outcome is not RemoteOutcome.DECLINED:
            assert partner_refusal(verdict) is None
        assert verdict.unavailable == (outcome in {RemoteOutcome.TIMEOUT, RemoteOutcome.ERROR,
                                                   RemoteOutcome.MALFORMED, RemoteOutcome.BUSY})


def test_the_call_fits_in_the_authorizations_budget():
    assert call_budget(1000, 5.0) == 1.0  # the program's deadline
    assert call_budget(1000, 0.6) == pytest.approx(0.6 - REMOTE_WRITE_RESERVE_SECONDS)
    assert call_budget(1000, 0.05) <= 0  # no time to ask: stand in


def test_the_pan_is_masked():
    assert mask_pan("5355220123456789") == "535522******6789"
    assert mask_pan("5355220123456789012") == "535522*********9012"
