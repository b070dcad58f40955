"""Money guards raise even under `python -O`, which strips `assert`."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from antaca_auth import fees
from antaca_auth.accounts import AMOUNT_MINOR_UNITS_MAX
from antaca_auth.holds import NewTransfers
from antaca_auth.invariants import InvariantBroken

ACCOUNTS = (uuid.uuid4(), uuid.uuid4())


@pytest.mark.parametrize("amount", [0, -1, AMOUNT_MINOR_UNITS_MAX + 1])
def test_a_hold_of_an_unbounded_or_non_positive_amount_is_refused(amount):
    with pytest.raises(InvariantBroken):
        NewTransfers().add(11, *ACCOUNTS, amount, "EUR", pending=True, timeout=60)


def test_a_transfer_between_one_account_and_itself_is_refused():
    with pytest.raises(InvariantBroken):
        NewTransfers().add(11, ACCOUNTS[0], ACCOUNTS[0], 100, "EUR", pending=True)


def test_a_percentage_of_a_negative_amount_is_refused():
    with pytest.raises(InvariantBroken):
        fees.percent_of(-1, 100)


def test_the_guards_hold_under_python_dash_o():
    program = ("import uuid\nfrom antaca_auth.holds import NewTransfers\n"
               "from antaca_auth.invariants import InvariantBroken\n"
               "try:\n    NewTransfers().add(11, uuid.uuid4(), uuid.uuid4(), 0, 'EUR', pending=True)\n"
               "except InvariantBroken:\n    print('refused')\n")
    done = subprocess.run([sys.executable, "-O", "-c", program], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "refused", done.stderr
