"""The aiohttp application."""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec
from aiohttp import web

POOL = web.AppKey("pool", asyncpg.Pool)


class Health(msgspec.Struct):
    status: str
    database: str


def json_response(body: msgspec.Struct, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status, content_type="application/json")


async def health(request: web.Request) -> web.Response:
    """200 when the database answers within a second, 503 otherwise."""
    try:
        async with asyncio.timeout(1.0):
            async with request.app[POOL].acquire() as conn:
                await conn.fetchval("SELECT 1")
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return json_response(Health(status="unavailable", database="unreachable"), status=503)
    return json_response(Health(status="ok", database="ok"))


def create_app(pool: asyncpg.Pool) -> web.Application:
    """Build the application around an open connection pool."""
    app = web.Application()
    app[POOL] = pool
    app.router.add_get("/health", health)
    return app
