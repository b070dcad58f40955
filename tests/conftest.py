"""A real PostgreSQL for every test: ANTACA_DATABASE_URL, or a throwaway embedded cluster.

Migrations run once into a template database; each test gets a fresh clone of it.
"""

from __future__ import annotations

import asyncio
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


@pytest.fixture
def database_url(pg_server: str, template_db: str) -> str:
    """A fresh, migrated database for one test."""
    name = f"antaca_test_{uuid.uuid4().hex[:16]}"
    asyncio.run(_admin(pg_server, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    yield with_database(pg_server, name)
    asyncio.run(_admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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
    from antaca_api.kyc import DeterministicKycProvider
    from antaca_auth.cardkeys import CardKeys
    from antaca_api.services import Services
    from antaca_api.settings import Settings
    from antaca_api.credentials import listen
    from tests.api_harness import start_api

    jwe_key, ca = key_material
    from antaca_api.server import open_authorization_pool
    from antaca_auth.engine import AuthorizationEngine
    from antaca_auth.followups import FollowUps

    # As `antaca serve` does: the engine and the network channel on their own pool.
    authorization_pool = await open_authorization_pool(database_url, Settings().engine)
    services = Services(pool=pool, ledger=Ledger(pool), settings=Settings(), jwe_key=jwe_key, ca=ca,
                        kyc_provider=DeterministicKycProvider(), card_keys=CardKeys.generate(),
                        authorization_pool=authorization_pool)
    services.engine = AuthorizationEngine(authorization_pool, services.authorization_ledger,
                                          services.card_keys, services.settings.engine)
    services.follow_ups = FollowUps(
        authorization_pool, services.authorization_ledger, services.card_keys,
        hold_seconds=services.engine.hold_seconds,
        clearing_tolerance_percent=services.settings.clearing_tolerance_percent)
    await services.engine.start()
    server, runner = await start_api(services, ca)
    # Certificate lookups cached as `antaca serve` does, so every API test runs through the cache.
    listener = asyncio.create_task(listen(database_url, services.credentials))
    for _ in range(200):
        if services.credentials.live:
            break
        await asyncio.sleep(0.01)
    assert services.credentials.live, "the credential listener did not start"
    yield server
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)
    await services.engine.stop()
    await asyncio.gather(*services.tasks, return_exceptions=True)
    for session in server.sessions:
        await session.close()
    await runner.cleanup()
    await services.background_cpu.close()
    await authorization_pool.close()
