"""A real PostgreSQL for every test: ANTACA_DATABASE_URL, or a throwaway embedded cluster.

Migrations run once into a template database; each test gets a fresh clone of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid

import asyncpg
import pytest

from antaca_auth.database import DATABASE_URL_ENV, create_pool, embedded_server, with_database
from antaca_auth.ledger import Ledger
from antaca_auth.migrations import migrate


async def _admin(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_server() -> str:
    """DSN of a maintenance database on the server the tests use."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        yield url
        return
    with embedded_server(throwaway=True) as dsn:
        # A throwaway cluster needs no durability; the benchmarks keep it on.
        asyncio.run(
            _admin(
                dsn,
                "ALTER SYSTEM SET fsync = off",
                "ALTER SYSTEM SET synchronous_commit = off",
                "ALTER SYSTEM SET full_page_writes = off",
                "SELECT pg_reload_conf()",
            )
        )
        yield dsn


@pytest.fixture(scope="session")
def template_db(pg_server: str) -> str:
    name = f"antaca_template_{os.getpid()}"
    asyncio.run(_admin(pg_server, f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"'))
    asyncio.run(migrate(with_database(pg_server, name)))
    yield name
    asyncio.run(_admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def fresh_database(pg_server: str, template_db: str):
    """A fresh, migrated database (a clone of the template), dropped on exit: its URL."""
    name = f"antaca_test_{uuid.uuid4().hex[:16]}"
    asyncio.run(_admin(pg_server, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    try:
        yield with_database(pg_server, name)
    finally:
        asyncio.run(_admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database_url(pg_server: str, template_db: str) -> str:
    """A fresh, migrated database for one test."""
    with fresh_database(pg_server, template_db) as url:
        yield url


@pytest.fixture
async def pool(database_url: str):
    p = await create_pool(database_url, min_size=1, max_size=10)
    yield p
    await p.close()


@pytest.fixture
async def ledger(pool) -> Ledger:
    return Ledger(pool)


@pytest.fixture(scope="session")
def key_material(tmp_path_factory):
    """One JWE key and one CA for the whole session (RSA generation is slow)."""
    from antaca_api.jwe import generate_key
    from antaca_api.pki import CertificateAuthority

    ca, _ = CertificateAuthority.load_or_create(tmp_path_factory.mktemp("keys"))
    return generate_key(2048), ca


@pytest.fixture
async def api(pool, key_material, database_url):
    """The whole application on real HTTP and TLS listeners, on a fresh database."""
    from tests.api_harness import running_api

    async with running_api(pool, key_material, database_url) as server:
        yield server
