"""Whether the service can reach its database."""

from __future__ import annotations

import asyncio
import functools

import asyncpg
import msgspec

from antaca_auth.engine import AuthorizationEngine
from antaca_auth.migrations import (
    DatabaseAhead,
    Migration,
    MigrationError,
    check_current,
    load_migrations,
)

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


class Readiness(msgspec.Struct, frozen=True):
    """What `GET /health/ready` checks; each "ok" or what is wrong."""

    database: str
    migrations: str
    engine: str

    @property
    def ready(self) -> bool:
        return self.database == self.migrations == self.engine == "ok"


@functools.cache
def _known_migrations() -> tuple[Migration, ...]:
    return tuple(load_migrations())


async def readiness(pool: asyncpg.Pool, engine: AuthorizationEngine | None) -> Readiness:
    """Database reachable, its migrations those of this code, the engine deciding."""
    engine_state = "ok" if engine is not None and engine.running else "not started"
    try:
        async with asyncio.timeout(PING_TIMEOUT_SECONDS):
            async with pool.acquire() as conn:
                pending = await check_current(conn, list(_known_migrations()))
    except DatabaseAhead:
        # A newer release migrated the database while this one serves (docs/operations.md,
        # "Upgrading without downtime"): its migrations only expand, this version keeps serving.
        return Readiness("ok", "ok", engine_state)
    except MigrationError as exc:
        return Readiness("ok", str(exc), engine_state)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return Readiness("unavailable", "unknown", engine_state)
    migrations = "ok" if not pending else f"{len(pending)} pending"
    return Readiness("ok", migrations, engine_state)
