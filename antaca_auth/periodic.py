"""Background passes: a job run every few seconds that must survive its own failures."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from antaca_auth.observer import JobObserver

log = logging.getLogger(__name__)

# Who hears of every pass; the service sets it to its metrics (antaca_api/server.py).
observer: JobObserver = JobObserver()


def job_name(what: str) -> str:
    """A job's short name, for metrics: its description without the parenthesis."""
    return what.split(" (", 1)[0]


async def every(interval: float, job: Callable[[], Awaitable[object]], what: str) -> None:
    """Run `job` every `interval` seconds until cancelled; a failed pass is logged and retried next time."""
    name = job_name(what)
    while True:
        started = time.monotonic()
        try:
            done = await job()
            if done:
                log.info("%s: %s", what, done)
        except asyncio.CancelledError:
            raise
        except Exception:  # a failed pass must not kill the service
            log.exception("%s failed", what)
            observer.job_ran(name, time.monotonic() - started, failed=True)
        else:
            observer.job_ran(name, time.monotonic() - started, failed=False)
        await asyncio.sleep(interval)
