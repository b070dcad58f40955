"""Background passes: a job run every few seconds that must survive its own failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def every(interval: float, job: Callable[[], Awaitable[object]], what: str) -> None:
    """Run `job` every `interval` seconds until cancelled; a failed pass is logged and retried next time."""
    while True:
        try:
            done = await job()
            if done:
                log.info("%s: %s", what, done)
        except asyncio.CancelledError:
            raise
        except Exception:  # a failed pass must not kill the service
            log.exception("%s failed", what)
        await asyncio.sleep(interval)
