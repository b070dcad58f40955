"""The background task that releases expired holds."""

from __future__ import annotations

import logging

from antaca_auth.ledger import Ledger
from antaca_auth.periodic import every

log = logging.getLogger(__name__)


async def run_sweeper(ledger: Ledger, interval: float) -> None:
    """Expire due pending transfers every `interval` seconds until cancelled."""
    await every(interval, ledger.expire_pending, "expiry sweep (pending transfers expired)")
