"""The background task that releases expired holds."""

from __future__ import annotations

import asyncio
import logging

from antaca_auth.ledger import Ledger

log = logging.getLogger(__name__)


async def run_sweeper(ledger: Ledger, interval: float) -> None:
    """Expire due pending transfers every `interval` seconds until cancelled."""
    while True:
        try:
            expired = await ledger.expire_pending()
            if expired:
                log.info("expired %d pending transfers", expired)
        except asyncio.CancelledError:
            raise
        except Exception:  # a failed sweep is retried next interval; it must not kill the service
            log.exception("expiry sweep failed")
        await asyncio.sleep(interval)
