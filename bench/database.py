"""A durable database for benchmarks: ANTACA_DATABASE_URL's server or an embedded one."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg

from antaca_auth.database import DATABASE_URL_ENV, embedded_server, with_database
from antaca_auth.migrations import migrate


@contextlib.asynccontextmanager
async def bench_database(until: int | None = None) -> AsyncIterator[str]:
    """Yield the DSN of a fresh database, migrated (up to migration `until`, when given), dropped
    afterwards."""
    with contextlib.ExitStack() as stack:
        server = os.environ.get(DATABASE_URL_ENV) or stack.enter_context(embedded_server(throwaway=True))
        name = f"antaca_bench_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(server)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
            dsn = with_database(server, name)
            await migrate(dsn, until=until)
            check = await asyncpg.connect(dsn)
            try:
                # The figures are only honest if every commit is durable.
                assert await check.fetchval("SHOW synchronous_commit") == "on", "benchmarks need synchronous_commit=on"
                assert await check.fetchval("SHOW fsync") == "on", "benchmarks need fsync=on"
            finally:
                await check.close()
            yield dsn
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
