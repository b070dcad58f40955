"""Whether the service can reach its database."""

from __future__ import annotations

import asyncio

import asyncpg

PING = "SELECT 1"
# A health probe must answer fast: a database slower than this counts as unavailable.
PING_TIMEOUT_SECONDS = 1.0


async def database_answers(pool: asyncpg.Pool) -> bool:
    """Whether a connection answers a query within the timeout."""
    try:
        async with asyncio.timeout(PING_TIMEOUT_SECONDS):
            async with pool.acquire() as conn:
                await conn.fetchval(PING)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    return True
