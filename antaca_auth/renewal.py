"""Which cards the renewal job renews: those whose expiry falls within the renewal window (pure).

A card is valid to the last day of its expiry month (YYMM). It is due for renewal once that day
is at most `window_days` away, and until it has passed (an expired card is not renewed: its
holder replaces it).
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta

RENEWAL_WINDOW_DAYS_DEFAULT = 30  # cards expiring within this many days are renewed
RENEWAL_WINDOW_DAYS_MAX = 366
RENEWAL_BATCH_SIZE_MAX = 100  # cards renewed in one pass of the job (one transaction each)


def _yymm(year: int, month: int) -> str:
    return f"{year % 100:02d}{month:02d}"


def due_expiries(today: date, window_days: int) -> tuple[str, str] | None:
    """The expiries (YYMM, both bounds included) due for renewal on `today`, or None when no
    month's last day falls in the window."""
    if not 0 <= window_days <= RENEWAL_WINDOW_DAYS_MAX:
        raise ValueError(f"the renewal window must be 0 to {RENEWAL_WINDOW_DAYS_MAX} days")
    horizon = today + timedelta(days=window_days)
    year, month = horizon.year, horizon.month
    if horizon.day != calendar.monthrange(year, month)[1]:  # the horizon's month ends after it
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    if (year, month) < (today.year, today.month):
        return None
    return _yymm(today.year, today.month), _yymm(year, month)
