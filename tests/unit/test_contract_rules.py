"""The contract's pure rules, without a database: step-up tries, internal transfer pricing, card
states of a removed card, the card data's expiry date, empty bodies, countries, birth dates, and
the decline names of docs/authorization.md against the code."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from antaca_api.countries import ALPHA_2
from antaca_api.customers import AGE_YEARS_MAX, birth_date_problem
from antaca_api.domain_errors import ValidationFailed
from antaca_api.errors import MalformedJson
from antaca_api.routes.cards import expiry_date
from antaca_api.routes.customers import Address
from antaca_api.routing import check_empty_body
from antaca_api.step_up import APP_PIN_LOCK_MINUTES, APP_PIN_TRIES_MAX, judge_try
from antaca_auth import authorization as rules
from antaca_auth import cardstate
from antaca_auth.cardstate import LOCK_REASONS, CardState, CardStatus, CardTransitionError
from antaca_auth.fees import FeeSchedule, price_internal_transfer

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)


# --- step-up: the application PIN's tries ----------------------------------------------------


def test_wrong_tries_lock_the_application_pin_at_the_limit():
    failures, locked_until = 0, None
    for attempt in range(1, APP_PIN_TRIES_MAX):
        outcome = judge_try(False, failures, locked_until, NOW)
        assert (outcome.accepted, outcome.locked, outcome.failures) == (False, False, attempt)
        failures, locked_until = outcome.failures, outcome.locked_until
    outcome = judge_try(False, failures, locked_until, NOW)
    assert outcome.locked and outcome.locked_until == NOW + timedelta(minutes=APP_PIN_LOCK_MINUTES)
    # While locked, even the right PIN is refused and nothing changes.
    during = judge_try(True, outcome.failures, outcome.locked_until, NOW + timedelta(minutes=1))
    assert (during.accepted, during.locked, during.failures) == (False, True, APP_PIN_TRIES_MAX)
    after = judge_try(True, outcome.failures, outcome.locked_until, outcome.locked_until)
    assert (after.accepted, after.failures, after.locked_until) == (True, 0, None)
    # A lock that ran out gives a fresh set of tries: one wrong try does not lock again.
    wrong = judge_try(False, outcome.failures, outcome.locked_until, outcome.locked_until)
    assert (wrong.locked, wrong.failures) == (False, 1)


def test_a_right_pin_resets_the_count():
    assert judge_try(True, APP_PIN_TRIES_MAX - 1, None, NOW).failures == 0


# --- money between users ---------------------------------------------------------------------


def test_internal_transfer_in_one_currency_moves_the_amount_without_fee():
    schedule = FeeSchedule(currency_conversion_bp=200)
    price = price_internal_transfer(schedule, 1_000, None, 2, 2)
    assert (price.received_amount, price.fee) == (1_000, 0)


@pytest.mark.parametrize(("amount", "rate", "exponents", "received", "fee"), [
    (1_000, "4.3125", (2, 2), 4_313, 20),  # 43.125 PLN rounds half up; 2 % of 10.00 EUR
    (1_000, "161.5", (2, 0), 1_615, 20),  # EUR cents to whole yen
    (25, "0.5", (2, 2), 13, 1),  # half a cent up, and the fee's half up too (0.5 -> 1)
])
def test_internal_transfer_converts_half_up_with_the_conversion_fee(amount, rate, exponents,
                                                                   received, fee):
    schedule = FeeSchedule(currency_conversion_bp=200)
    price = price_internal_transfer(schedule, amount, Decimal(rate), *exponents)
    assert (price.received_amount, price.fee) == (received, fee)
    assert price_internal_transfer(None, amount, Decimal(rate), *exponents).fee == 0


def test_a_waiver_rule_waives_the_conversion_fee():
    schedule = msgspec.convert({"currencyConversionBp": 200, "waivers": [
        {"name": "free FX", "fee": "CURRENCY_CONVERSION",
         "when": [{"metric": "APPROVED_COUNT_PREVIOUS_PERIOD", "below": 1_000_000}]}]}, FeeSchedule)
    assert price_internal_transfer(schedule, 1_000, Decimal("2"), 2, 2).fee == 0


# --- cards -----------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", [cardstate.activate, cardstate.unlock, cardstate.remove,
                                  lambda s: cardstate.lock(s, 3)])
def test_every_operation_on_a_removed_card_answers_card_removed(rule):
    with pytest.raises(CardTransitionError) as refused:
        rule(CardStatus(CardState.REMOVED))
    assert refused.value.code == "CARD_REMOVED"


@pytest.mark.parametrize(("yymm", "last_day"), [("2601", date(2026, 1, 31)),
                                                ("2802", date(2028, 2, 29)),
                                                ("2702", date(2027, 2, 28)),
                                                ("3012", date(2030, 12, 31))])
def test_card_data_exp_is_the_last_day_of_the_expiry_month(yymm, last_day):
    assert expiry_date(yymm) == last_day


@pytest.mark.parametrize("raw", [b"", b"  ", b"{}", b" {\n} "])
def test_a_body_less_route_takes_nothing_or_an_empty_object(raw):
    check_empty_body(raw)


@pytest.mark.parametrize(("raw", "error"), [(b"[]", ValidationFailed),
                                            (b'{"a": 1}', ValidationFailed),
                                            (b"null", ValidationFailed), (b"{", MalformedJson)])
def test_a_body_less_route_refuses_anything_else(raw, error):
    with pytest.raises(error):
        check_empty_body(raw)


# --- customers -------------------------------------------------------------------------------


def test_country_codes_are_iso_3166_alpha_2():
    assert len(ALPHA_2) == len(set(ALPHA_2)) == 249
    assert {"PL", "DE", "GB", "US", "SS", "XK"} - set(ALPHA_2) == {"XK"}  # XK is user-assigned
    address = {"line1": "Main 1", "city": "Warsaw", "postalCode": "00-001"}
    assert msgspec.convert({**address, "country": "PL"}, Address).country == "PL"
    for bad in ("XX", "ZZ", "UK", "pl", "POL"):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert({**address, "country": bad}, Address)


@pytest.mark.parametrize(("born", "problem"), [
    (date(2026, 5, 1), None),  # born today: age 0
    (date(1990, 12, 10), None),
    (date(2026 - AGE_YEARS_MAX, 5, 1), None),
    (date(2026, 5, 2), "future"),
    (date(2026 - AGE_YEARS_MAX, 4, 30), "years"),
    (date(1, 1, 1), "years"),
])
def test_birth_dates_must_be_past_and_plausible(born, problem):
    found = birth_date_problem(born, date(2026, 5, 1))
    assert (found is None) if problem is None else (problem in found)


def test_birth_date_check_on_the_29th_of_february():
    assert birth_date_problem(date(1896, 2, 28), date(2026, 2, 28)) is None
    assert birth_date_problem(date(1920, 1, 1), date(2024, 2, 29)) is None


# --- docs/authorization.md ---------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "authorization.md"


def documented_declines() -> dict[str, tuple[str, str | None]]:
    """reason -> (DE39, action code) from the "Checks and codes" table."""
    text = DOC.read_text()
    blocks = text.split("## Checks and codes", 1)[1].split("\n\n")
    table = next(block for block in blocks if block.startswith("|"))
    found = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4:
            continue
        _, de39, action, reasons = cells
        for reason in re.findall(r"`([A-Z0-9_]+)`", reasons):
            found[reason] = (de39, action or None)
    return found


def coded_declines() -> dict[str, tuple[str, str | None]]:
    declines = [v for v in vars(rules).values() if isinstance(v, rules.Decline)]
    declines += [rules.locked(reason) for reason in LOCK_REASONS]
    return {d.reason: (d.response_code, d.action_code) for d in declines}


def test_decline_names_in_the_docs_match_the_code():
    documented, coded = documented_declines(), coded_declines()
    documented.pop("APPROVED")
    assert documented == coded
