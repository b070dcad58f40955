"""Migrations apply in order, once, and refuse a changed or unknown history."""

from __future__ import annotations

import shutil

import asyncpg
import pytest

from antaca_auth.migrations import SQL_DIR, MigrationError, load_migrations, migrate


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
