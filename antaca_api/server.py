"""`antaca serve`: migrate, open the pool, run the HTTP listener and the background workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import web

from antaca_api.app import create_app
from antaca_api.settings import Settings
from antaca_auth.database import create_pool
from antaca_auth.ledger import Ledger
from antaca_auth.migrations import migrate
from antaca_auth.sweeper import run_sweeper

log = logging.getLogger(__name__)


async def serve(dsn: str, settings: Settings) -> None:
    """Run until SIGINT or SIGTERM."""
    applied = await migrate(dsn)
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    pool = await create_pool(dsn)
    sweeper = asyncio.create_task(run_sweeper(Ledger(pool), settings.sweep_interval))
    runner = web.AppRunner(create_app(pool), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    print(f"antaca listening on http://{settings.host}:{settings.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await runner.cleanup()
        await pool.close()
