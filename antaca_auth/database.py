"""Where the database is: ANTACA_DATABASE_URL, or an embedded PostgreSQL run by this process."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import msgspec

log = logging.getLogger(__name__)

DATABASE_URL_ENV = "ANTACA_DATABASE_URL"
PGDATA_ENV = "ANTACA_PGDATA"
DEFAULT_PGDATA = Path(".antaca") / "pgdata"
EMBEDDED_DATABASE = "antaca"


@contextlib.contextmanager
def embedded_server(pgdata: Path | None = None, *, throwaway: bool = False) -> Iterator[str]:
    """Start an embedded PostgreSQL (pgserver) and yield a DSN for its `postgres` database.

    The server stops when the block exits; a throwaway cluster is deleted as well.
    """
    import pgserver  # imported lazily: only needed when no server is configured

    if throwaway:
        pgdata = Path(tempfile.mkdtemp(prefix="antaca-pg-"))
    else:
        pgdata = (pgdata or DEFAULT_PGDATA).resolve()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        dead = forget_dead_users(pgdata)
        if dead:
            log.info("the embedded PostgreSQL outlived processes %s (killed): adopting it", dead)
    server = pgserver.get_server(pgdata, cleanup_mode="delete" if throwaway else "stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


# pgserver's list of the processes using a data directory: the last one to leave stops the server.
USERS_FILE = ".handle_pids.json"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def forget_dead_users(pgdata: Path) -> list[int]:
    """Remove from pgserver's list the processes that died without leaving it (SIGKILL, a
    crash): their server is still running, and with them listed it would never stop again. The
    start that follows adopts that server; its clean stop stops it. The dead processes' ids."""
    from pgserver.postgres_server import PostgresServer

    path = pgdata / USERS_FILE
    with PostgresServer._lock:  # pgserver's own lock on the list
        if not path.exists():
            return []
        pids = msgspec.json.decode(path.read_bytes(), type=list[int])
        alive = [pid for pid in pids if process_alive(pid)]
        if len(alive) != len(pids):
            path.write_bytes(msgspec.json.encode(alive))
    return [pid for pid in pids if pid not in alive]


def with_database(dsn: str, database: str) -> str:
    """Return `dsn` with its database name replaced by `database` (URL form only)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


async def ensure_database(admin_dsn: str, database: str) -> None:
    """Create `database` on the server of `admin_dsn` unless it exists."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


@contextlib.contextmanager
def configured_server() -> Iterator[tuple[str, bool]]:
    """Yield (server DSN, embedded?) from ANTACA_DATABASE_URL or a started embedded server."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        yield url, False
        return
    pgdata = Path(os.environ.get(PGDATA_ENV, str(DEFAULT_PGDATA)))
    with embedded_server(pgdata) as dsn:
        log.info("embedded PostgreSQL running with data in %s", pgdata)
        yield dsn, True


async def init_connection(conn: asyncpg.Connection) -> None:
    """Per-connection settings: jsonb values decode to Python objects with msgspec.

    The codec uses jsonb's binary wire format (a version byte, then the JSON text) so that jsonb
    columns can also travel in a binary COPY (the ledger copies its transfers into the table).
    A `str` is taken as JSON text already encoded.
    """
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_encode_jsonb, decoder=_decode_jsonb, format="binary"
    )


_JSONB_VERSION = b"\x01"
_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


def _encode_jsonb(value: object) -> bytes:
    return _JSONB_VERSION + (value.encode() if isinstance(value, str) else _json_encode(value))


def _decode_jsonb(data: bytes) -> object:
    if data[:1] != _JSONB_VERSION:
        raise ValueError(f"unsupported jsonb format version {data[:1]!r}")
    return _json_decode(memoryview(data)[1:])


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to undo when a connection goes back to the pool (asyncpg still rolls back any open transaction).

    Antaca sets no session state (only SET LOCAL inside transactions, no LISTEN, cursors or session
    advisory locks), so asyncpg's default reset, a `RESET ALL; UNLISTEN *; ...` round trip on every
    release, would be pure cost: one extra round trip per request on the network channel.
    """


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    """Open a connection pool with Antaca's per-connection settings."""
    return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=init_connection,
                                     reset=_keep_session)
