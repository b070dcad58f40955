"""Client certificate lookups, cached per process while PostgreSQL tells it of every change.

Every request on the network and partner channels needs the row behind its TLS client certificate
(holder, revocation, expiry, holder status). Looked up per request, that query was a fifth of the
server's CPU under the authorization load. Rows are cached by fingerprint, but only while this
process holds a live LISTEN on `CHANNEL`: triggers (sql/0012) notify it on any change to
certificates, partners or networks, whoever makes it, and the cache is emptied. Without a live
listener (at start, after the connection drops, in tests that do not run one) every lookup goes to
the database. Endpoints that change credentials in this process also empty the cache themselves
right after their commit, so the very next request sees the change whatever the notification's delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "antaca_credentials"
HEALTH_INTERVAL = 5.0  # seconds between checks that the listening connection still answers


class CredentialCache:
    """Certificate rows by (query, fingerprint); only used while `live`."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], asyncpg.Record] = {}
        self._generation = 0
        self.live = False

    async def lookup(self, pool: asyncpg.Pool, query: str, fingerprint: str) -> asyncpg.Record | None:
        """The row `query` finds for `fingerprint`, from the cache when it may be trusted."""
        key = (query, fingerprint)
        if self.live:
            row = self._rows.get(key)
            if row is not None:
                return row
        generation = self._generation
        row = await pool.fetchrow(query, fingerprint)
        # A change notified while the query ran may not be in its result: keep it only if none was.
        if row is not None and self.live and generation == self._generation:
            self._rows[key] = row
        return row

    def clear(self) -> None:
        """Forget every row (a certificate, partner or network changed)."""
        self._generation += 1
        self._rows.clear()

    def _set_live(self, live: bool) -> None:
        self.clear()
        self.live = live


async def listen(dsn: str, cache: CredentialCache, *, retry: float = 1.0) -> None:
    """Keep a connection LISTENing on `CHANNEL` for as long as the task runs; caching is on only meanwhile."""
    while True:
        conn = None
        try:
            conn = await asyncpg.connect(dsn)
            conn.add_termination_listener(lambda _: cache._set_live(False))
            await conn.add_listener(CHANNEL, lambda *_: cache.clear())
            cache._set_live(True)
            while not conn.is_closed():
                await asyncio.sleep(HEALTH_INTERVAL)
                await asyncio.wait_for(conn.fetchval("SELECT 1"), HEALTH_INTERVAL)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database went away: look every certificate up until we listen again
            log.warning("credential change listener lost (%s); certificate lookups uncached", exc)
        finally:
            cache._set_live(False)
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(conn.close(timeout=2))
        await asyncio.sleep(retry)
