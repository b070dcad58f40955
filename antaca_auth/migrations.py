"""Numbered plain-SQL migrations from `sql/`, applied in order, each in its own transaction.

A migration whose first line is `-- antaca:no-transaction` runs outside a transaction (for
`CREATE INDEX CONCURRENTLY`); it must be safe to run again, since a failure leaves it unrecorded.
Every migration runs with `lock_timeout` and `statement_timeout`, so a migration that waits behind
a long transaction fails fast instead of stalling the traffic queued behind its lock. A database
ahead of this code (a migration it does not know) or diverging from it (an applied migration whose
checksum differs) is refused: `check_current` for the service's start and readiness.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

SQL_DIR = Path(os.environ.get("ANTACA_SQL_DIR", Path(__file__).resolve().parent.parent / "sql"))
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Any constant works; it only keeps two migrators from interleaving.
_ADVISORY_LOCK = 0x616E7461
NO_TRANSACTION_MARKER = "-- antaca:no-transaction"
# A migration waiting longer than this for a lock fails (and is retried by the operator) rather
# than queueing every request behind its lock request.
LOCK_TIMEOUT_MILLISECONDS = int(os.environ.get("ANTACA_MIGRATION_LOCK_TIMEOUT_MS", "5000"))
# One statement of a migration may run this long (a large backfill belongs in a background job).
STATEMENT_TIMEOUT_MILLISECONDS = int(os.environ.get("ANTACA_MIGRATION_STATEMENT_TIMEOUT_MS",
                                                    "600000"))

CREATE_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())"""
SELECT_APPLIED = """
    SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version"""
TABLE_EXISTS = "SELECT to_regclass('schema_migrations') IS NOT NULL"
INSERT_APPLIED = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"


class MigrationError(Exception):
    """The migrations on disk and those recorded in the database disagree."""


class DatabaseAhead(MigrationError):
    """The database has migrations this code does not know (a newer release migrated it)."""


class MigrationChanged(MigrationError):
    """An applied migration's file changed since."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def transactional(self) -> bool:
        first_line = self.sql.lstrip().split("\n", 1)[0].strip()
        return first_line != NO_TRANSACTION_MARKER


@dataclass(frozen=True)
class MigrationState:
    """One migration as `antaca migrate --status` shows it."""

    version: int
    name: str
    applied_at: datetime | None  # None: pending
    transactional: bool


def load_migrations(directory: Path = SQL_DIR) -> list[Migration]:
    """Read `NNNN_name.sql` files in version order; refuse gaps and duplicates."""
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file name not of the form NNNN_name.sql: {path.name}")
        migrations.append(Migration(int(match.group(1)), path.stem, path.read_text()))
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise MigrationError(f"expected migration {expected:04d}, found {migration.name}")
    return migrations


def pending_against(migrations: list[Migration],
                    applied: dict[int, asyncpg.Record]) -> list[Migration]:
    """The migrations not yet applied; raises when the database is ahead or diverges."""
    unknown = sorted(set(applied) - {m.version for m in migrations})
    if unknown:
        raise DatabaseAhead(f"database has migrations this code does not know: {unknown}")
    pending = []
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is None:
            pending.append(migration)
        elif recorded["checksum"] != migration.checksum:
            raise MigrationChanged(f"migration {migration.name} changed after it was applied")
    return pending


async def _applied(conn: asyncpg.Connection) -> dict[int, asyncpg.Record]:
    if not await conn.fetchval(TABLE_EXISTS):
        return {}
    return {r["version"]: r for r in await conn.fetch(SELECT_APPLIED)}


async def check_current(conn: asyncpg.Connection,
                        migrations: list[Migration] | None = None) -> list[Migration]:
    """The pending migrations (empty: the database is current); raises MigrationError when the
    database is ahead of or diverges from this code's migrations (by default those of `sql/`)."""
    known = load_migrations() if migrations is None else migrations
    return pending_against(known, await _applied(conn))


async def status(dsn: str, directory: Path = SQL_DIR) -> list[MigrationState]:
    """Every migration, applied (with its time) or pending; raises when the history diverges."""
    migrations = load_migrations(directory)
    conn = await asyncpg.connect(dsn)
    try:
        applied = await _applied(conn)
    finally:
        await conn.close()
    pending_against(migrations, applied)
    return [MigrationState(m.version, m.name,
                           applied[m.version]["applied_at"] if m.version in applied else None,
                           m.transactional) for m in migrations]


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    await conn.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MILLISECONDS};"
                       f"SET statement_timeout = {STATEMENT_TIMEOUT_MILLISECONDS}")
    try:
        if migration.transactional:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(INSERT_APPLIED, migration.version, migration.name,
                                   migration.checksum)
            return
        # Outside a transaction: asyncpg sends a script without arguments as one simple query,
        # which PostgreSQL runs as one implicit transaction; statement by statement instead.
        for statement in _statements(migration.sql):
            await conn.execute(statement)
        await conn.execute(INSERT_APPLIED, migration.version, migration.name, migration.checksum)
    finally:
        await conn.execute("RESET lock_timeout; RESET statement_timeout")


def _statements(sql: str) -> list[str]:
    """A non-transactional migration's statements: split at semicolons ending a line (such a
    migration holds plain DDL, no function bodies)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", "\n".join(lines)) if s.strip()]


async def migrate(dsn: str, directory: Path = SQL_DIR, until: int | None = None,
                  dry_run: bool = False) -> list[str]:
    """Apply pending migrations (those numbered up to `until`, when given: the benchmarks compare
    schemas); return the names applied (empty when up to date). `dry_run`: only name them."""
    migrations = [m for m in load_migrations(directory) if until is None or m.version <= until]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _ADVISORY_LOCK)
        if dry_run:
            return [m.name for m in pending_against(migrations, await _applied(conn))]
        await conn.execute(CREATE_TABLE)
        pending = pending_against(migrations, await _applied(conn))
        for migration in pending:
            await _apply(conn, migration)
        return [m.name for m in pending]
    finally:
        await conn.close()
