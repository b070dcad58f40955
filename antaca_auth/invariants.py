"""Checks that guard money. They raise, where `assert` would vanish under `python -O`: a broken
invariant stops the operation (its transaction rolls back) instead of writing a wrong ledger."""

from __future__ import annotations


class InvariantBroken(Exception):
    """Code relied on something about money that did not hold: a bug, never a caller's mistake."""


def require(condition: bool, message: str) -> None:
    """Raise InvariantBroken with `message` unless `condition` holds."""
    if not condition:
        raise InvariantBroken(message)
