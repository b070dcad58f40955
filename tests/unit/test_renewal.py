"""The renewal window and the replacement rule, without a database."""

from __future__ import annotations

from datetime import date

import pytest

from antaca_auth import cardstate
from antaca_auth.cardstate import CardState, CardStatus, CardTransitionError
from antaca_auth.renewal import due_expiries


@pytest.mark.parametrize(("today", "window", "expected"), [
    (date(2030, 6, 10), 30, ("3006", "3006")),  # June 30 is 20 days away, July 31 is 51
    (date(2030, 6, 10), 20, ("3006", "3006")),  # June 30 is exactly 20 days away
    (date(2030, 6, 10), 19, None),  # June 30 is 20 days away: not yet
    (date(2030, 6, 10), 60, ("3006", "3007")),
    (date(2030, 6, 30), 0, ("3006", "3006")),  # the last valid day itself
    (date(2030, 12, 15), 30, ("3012", "3012")),
    (date(2030, 12, 15), 50, ("3012", "3101")),  # across a year: January 31 is 47 days away
    (date(2031, 1, 5), 3, None),
])
def test_due_expiries(today, window, expected):
    assert due_expiries(today, window) == expected


def test_the_window_is_bounded():
    with pytest.raises(ValueError):
        due_expiries(date(2030, 1, 1), -1)
    with pytest.raises(ValueError):
        due_expiries(date(2030, 1, 1), 367)


@pytest.mark.parametrize("before", [
    CardStatus(CardState.ACTIVE), CardStatus(CardState.INACTIVE),
    CardStatus(CardState.LOCKED, 7, CardState.ACTIVE),
    CardStatus(CardState.LOCKED, 1, CardState.ACTIVE),  # lost, now replaced: 8 replaces 1
])
def test_a_replaced_card_is_locked_for_good_with_reason_8(before):
    after = cardstate.replaced(before)
    assert (after.state, after.lock_reason) == (CardState.LOCKED, 8)
    assert after.state_before_lock in (CardState.ACTIVE, CardState.INACTIVE)
    with pytest.raises(CardTransitionError) as refused:
        cardstate.unlock(after)
    assert refused.value.code == "CARD_LOCK_IRREVERSIBLE"
    with pytest.raises(CardTransitionError) as again:
        cardstate.replaced(after)
    assert again.value.code == "CARD_ALREADY_REPLACED"


@pytest.mark.parametrize("state", [CardState.PENDING, CardState.FAILED, CardState.ORDERED,
                                   CardState.REMOVED])
def test_cards_that_never_lived_or_are_gone_are_not_replaced(state):
    with pytest.raises(CardTransitionError) as refused:
        cardstate.replaced(CardStatus(state))
    assert refused.value.code == "CARD_NOT_REPLACEABLE"


def test_the_renewal_window_is_a_setting(monkeypatch):
    from antaca_api.settings import Settings
    from antaca_auth.renewal import RENEWAL_WINDOW_DAYS_DEFAULT

    assert Settings.from_env().renewal_window_days == RENEWAL_WINDOW_DAYS_DEFAULT
    monkeypatch.setenv("ANTACA_CARD_RENEWAL_WINDOW_DAYS", "45")
    monkeypatch.setenv("ANTACA_CARD_RENEWAL_INTERVAL", "600")
    settings = Settings.from_env()
    assert (settings.renewal_window_days, settings.renewal_interval) == (45, 600.0)
