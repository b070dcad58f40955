"""Migrations apply in order, once, and refuse a changed or unknown history."""

from __future__ import annotations

import shutil
import time

import asyncpg
import pytest

from antaca_auth import migrations
from antaca_auth.migrations import (
    NO_TRANSACTION_MARKER,
    SQL_DIR,
    MigrationError,
    check_current,
    load_migrations,
    migrate,
    status,
)


async def test_migrating_twice_changes_nothing(database_url):
    assert await migrate(database_url) == []  # the template already ran them
    conn = await asyncpg.connect(database_url)
    try:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
    finally:
        await conn.close()
    assert versions == [m.version for m in load_migrations()]


async def test_changed_migration_is_refused(database_url, tmp_path):
    directory = tmp_path / "sql"
    shutil.copytree(SQL_DIR, directory)
    first = sorted(directory.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(database_url, directory)


async def test_new_migration_applies_in_its_own_transaction(database_url, tmp_path):
    directory = tmp_path / "sql"
    shutil.copytree(SQL_DIR, directory)
    version = len(load_migrations()) + 1
    (directory / f"{version:04d}_broken.sql").write_text("CREATE TABLE half_done (x int); SELECT 1/0;")
    with pytest.raises(asyncpg.DivisionByZeroError):
        await migrate(database_url, directory)
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == version - 1
    finally:
        await conn.close()
    (directory / f"{version:04d}_broken.sql").write_text("CREATE TABLE half_done (x int);")
    assert await migrate(database_url, directory) == [f"{version:04d}_broken"]


def test_file_names_must_be_numbered_without_gaps(tmp_path):
    (tmp_path / "0001_a.sql").write_text("")
    (tmp_path / "0003_c.sql").write_text("")
    with pytest.raises(MigrationError, match="expected migration 0002"):
        load_migrations(tmp_path)
    (tmp_path / "notes.sql").write_text("")
    with pytest.raises(MigrationError, match="NNNN_name"):
        load_migrations(tmp_path)


def _copy(tmp_path):
    directory = tmp_path / "sql"
    shutil.copytree(SQL_DIR, directory)
    return directory, len(load_migrations()) + 1


async def test_status_lists_applied_and_pending_and_dry_run_applies_nothing(database_url, tmp_path):
    directory, version = _copy(tmp_path)
    (directory / f"{version:04d}_next.sql").write_text("CREATE TABLE next_one (x int);")
    states = await status(database_url, directory)
    assert [s.name for s in states if s.applied_at is None] == [f"{version:04d}_next"]
    assert all(s.applied_at is not None for s in states[:-1])
    assert await migrate(database_url, directory, dry_run=True) == [f"{version:04d}_next"]
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('next_one')") is None
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == version - 1
    finally:
        await conn.close()


async def test_a_non_transactional_migration_creates_an_index_concurrently(database_url, tmp_path):
    directory, version = _copy(tmp_path)
    (directory / f"{version:04d}_concurrent.sql").write_text(
        f"{NO_TRANSACTION_MARKER}\n-- an index built without blocking writes\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS cards_updated_at ON cards (updated_at);\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS cards_created_at ON cards (created_at);\n")
    assert not load_migrations(directory)[-1].transactional
    assert await migrate(database_url, directory) == [f"{version:04d}_concurrent"]
    conn = await asyncpg.connect(database_url)
    try:
        valid = await conn.fetch("SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c"
                                 " ON c.oid = i.indexrelid WHERE c.relname LIKE 'cards_%_at'")
        assert sorted((r["relname"], r["indisvalid"]) for r in valid) == [
            ("cards_created_at", True), ("cards_updated_at", True)]
    finally:
        await conn.close()
    states = await status(database_url, directory)
    assert not states[-1].transactional and states[-1].applied_at is not None


async def test_a_migration_waiting_for_a_lock_gives_up_at_the_lock_timeout(database_url, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setattr(migrations, "LOCK_TIMEOUT_MILLISECONDS", 200)
    directory, version = _copy(tmp_path)
    (directory / f"{version:04d}_alter.sql").write_text("ALTER TABLE cards ADD COLUMN nickname text;")
    holder = await asyncpg.connect(database_url)
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("LOCK TABLE cards IN ACCESS SHARE MODE")  # a long reader
        started = time.monotonic()
        with pytest.raises(asyncpg.LockNotAvailableError):
            await migrate(database_url, directory)
        assert time.monotonic() - started < 5
        await transaction.rollback()
    finally:
        await holder.close()
    assert await migrate(database_url, directory) == [f"{version:04d}_alter"]


async def test_a_database_ahead_of_the_code_is_refused_by_start_and_readiness(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        assert await check_current(conn) == []
        await conn.execute("INSERT INTO schema_migrations (version, name, checksum)"
                           " VALUES (9999, '9999_from_a_newer_release', 'x')")
        with pytest.raises(MigrationError, match="does not know"):
            await check_current(conn)
    finally:
        await conn.close()
    with pytest.raises(MigrationError, match="does not know"):
        await migrate(database_url)
    with pytest.raises(MigrationError, match="does not know"):
        await status(database_url)
    with pytest.raises(MigrationError, match="does not know"):
        await migrate(database_url, dry_run=True)
