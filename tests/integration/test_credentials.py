"""Certificate lookups are cached per process, and every change to a certificate or its holder reaches the
cache: through the endpoint that made it at once, through PostgreSQL's notification otherwise."""

from __future__ import annotations

import asyncio

from antaca_api.credentials import listen
from tests.api_harness import customer_body


async def status_of(partner, api) -> int:
    async with partner.get(f"{api.https}/secure/customers") as r:
        await r.read()
        return r.status


async def eventually_refused(partner, api, seconds: float = 5.0) -> float:
    """How long until the partner's requests are refused (fails after `seconds`)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < seconds:
        if await status_of(partner, api) == 401:
            return loop.time() - start
        await asyncio.sleep(0.01)
    raise AssertionError("the change never reached the cache")


async def test_an_operators_revocation_in_sql_reaches_the_cache(api):
    partner_id, partner = await api.partner()
    assert await status_of(partner, api) == 200
    cache = api.services.credentials
    assert cache.live and len(cache._rows) == 1  # the certificate's row is now served from memory
    assert await status_of(partner, api) == 200

    # Another process (here: an operator's SQL) revokes it; the trigger's notification empties the cache.
    async with api.services.pool.acquire() as conn:
        await conn.execute("UPDATE partner_certificates SET revoked_at = now() WHERE partner_id = $1",
                           partner_id)
    assert await eventually_refused(partner, api) < 5.0
    async with partner.post(f"{api.https}/secure/customers", json=customer_body()) as r:
        assert r.status == 401 and (await r.json())["code"] == "CERTIFICATE_REQUIRED"


async def test_a_suspension_in_sql_reaches_the_cache(api):
    partner_id, partner = await api.partner()
    assert await status_of(partner, api) == 200
    async with api.services.pool.acquire() as conn:
        await conn.execute("UPDATE partners SET status = 'SUSPENDED' WHERE id = $1", partner_id)
    loop = asyncio.get_running_loop()
    start = loop.time()
    while (status := await status_of(partner, api)) == 200 and loop.time() - start < 5:
        await asyncio.sleep(0.01)
    assert status == 403


async def test_without_a_listener_nothing_is_cached(api, database_url):
    cache = api.services.credentials
    partner_id, partner = await api.partner()
    cache._set_live(False)  # as when the listening connection is lost
    assert await status_of(partner, api) == 200
    assert cache._rows == {}
    async with api.services.pool.acquire() as conn:
        await conn.execute("UPDATE partner_certificates SET revoked_at = now() WHERE partner_id = $1",
                           partner_id)
    assert await status_of(partner, api) == 401  # no notification needed: the database was asked


async def test_the_listener_turns_caching_on_and_off(database_url):
    from antaca_api.credentials import CredentialCache

    cache = CredentialCache()
    task = asyncio.create_task(listen(database_url, cache))
    for _ in range(300):
        if cache.live:
            break
        await asyncio.sleep(0.01)
    assert cache.live
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not cache.live
