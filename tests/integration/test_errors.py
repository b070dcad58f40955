"""Malformed requests over real HTTP and TLS: each is a JSON 4xx with its code, never a 500, and leaves no rows."""

from __future__ import annotations

import dataclasses
import json

import pytest

from antaca_api.settings import Settings
from tests.api_harness import bearer, customer_body, start_api

ROW_TABLES = ("partners", "customers", "kyc_events", "partner_certificates", "audit_log", "admin_sessions")


async def row_counts(api) -> dict[str, int]:
    async with api.services.pool.acquire() as conn:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in ROW_TABLES}


async def expect_error(response, status: int, code: str) -> dict:
    """The response is a JSON {"code", "message"} error with this status and code."""
    text = await response.text()
    assert response.status == status, text
    assert response.content_type == "application/json", text
    body = json.loads(text)
    assert set(body) == {"code", "message", "requestId"} and body["code"] == code, body
    return body


@pytest.fixture
async def callers(api):
    """(admin token, partner client) with the row counts taken after they exist."""
    token = await api.admin_token()
    _, partner = await api.partner(token)
    return token, partner, await row_counts(api)


async def test_unknown_fields_are_refused(api, callers):
    """An unknown field at the top level or nested is 400 VALIDATION_ERROR naming the field."""
    token, partner, before = callers
    nested = customer_body()
    nested["address"]["floor"] = 3
    for body in (customer_body(kycStatus="VERIFIED"), customer_body(partnerId="x"), nested):
        async with partner.post(f"{api.https}/secure/customers", json=body) as r:
            error = await expect_error(r, 400, "VALIDATION_ERROR")
        assert any(field in error["message"] for field in ("kycStatus", "partnerId", "floor")), error
    async with api.client().post(f"{api.http}/admin/partners", json={"name": "P", "status": "ACTIVE"},
                                 headers=bearer(token)) as r:
        await expect_error(r, 400, "VALIDATION_ERROR")
    assert await row_counts(api) == before


async def test_wrong_types_and_values_are_refused(api, callers):
    """Wrong JSON types, impossible dates, out-of-pattern values and non-object bodies are 400 VALIDATION_ERROR."""
    token, partner, before = callers
    bodies = [
        customer_body(firstName=5),
        customer_body(birthDate="1990-02-30"),
        customer_body(birthDate=19901210),
        customer_body(address="Main 1, Warsaw"),
        customer_body(country="Poland"),
        customer_body(email="not-an-email"),
        customer_body(firstName=""),
        {k: v for k, v in customer_body().items() if k != "lastName"},
        [customer_body()],
        None,
        "a string",
    ]
    for body in bodies:
        async with partner.post(f"{api.https}/secure/customers", data=json.dumps(body).encode(),
                                headers={"Content-Type": "application/json"}) as r:
            await expect_error(r, 400, "VALIDATION_ERROR")
    for body in ({"name": None}, {"name": ["P"]}, {}):
        async with api.client().post(f"{api.http}/admin/partners", json=body, headers=bearer(token)) as r:
            await expect_error(r, 400, "VALIDATION_ERROR")
    async with api.client().put(f"{api.http}/admin/partners/{(await _partner_ids(api))[0]}/status",
                                json={"status": "DELETED"}, headers=bearer(token)) as r:
        await expect_error(r, 400, "VALIDATION_ERROR")
    assert await row_counts(api) == before


async def _partner_ids(api) -> list[str]:
    async with api.services.pool.acquire() as conn:
        return [str(r["id"]) for r in await conn.fetch("SELECT id FROM partners ORDER BY created_at")]


async def test_malformed_json_is_refused(api, callers):
    """Truncated JSON, non-JSON, trailing garbage, invalid UTF-8 and an empty body are 400 MALFORMED_JSON."""
    token, partner, before = callers
    valid = json.dumps(customer_body()).encode()
    for raw in (valid[:-1], b"externalId=1&firstName=Ada", valid + b"}", valid.replace(b"Ada", b"A\xffda"), b"",
                b"{'externalId': 'x'}"):
        async with partner.post(f"{api.https}/secure/customers", data=raw,
                                headers={"Content-Type": "application/json"}) as r:
            await expect_error(r, 400, "MALFORMED_JSON")
    async with api.client().post(f"{api.http}/admin/sessions", data=b'{"email": ',
                                 headers={"Content-Type": "application/json"}) as r:
        await expect_error(r, 400, "MALFORMED_JSON")
    assert await row_counts(api) == before


async def test_nul_characters_are_refused_not_500(api, callers):
    """A NUL character, which PostgreSQL text cannot hold, is 400 VALIDATION_ERROR in plain and JSON columns."""
    token, partner, before = callers
    address = customer_body()["address"] | {"city": "War\u0000saw"}
    for body in (customer_body(firstName="A\u0000da"), customer_body(address=address)):
        async with partner.post(f"{api.https}/secure/customers", json=body) as r:
            await expect_error(r, 400, "VALIDATION_ERROR")
    async with api.client().post(f"{api.http}/admin/partners", json={"name": "P\u0000"}, headers=bearer(token)) as r:
        await expect_error(r, 400, "VALIDATION_ERROR")
    assert await row_counts(api) == before


async def test_body_over_the_configured_limit_is_413(api):
    """With max_body_bytes=2048, a 4 KiB body is 413 PAYLOAD_TOO_LARGE and a small one is served."""
    settings = Settings(max_body_bytes=2048)
    services = dataclasses.replace(api.services, settings=settings)
    small_api, runner = await start_api(services, api.ca)
    try:
        token = await small_api.admin_token()
        before = await row_counts(api)
        big = {"name": "P", "contactEmail": "a@b.cd", "webhookUrl": "https://x.test/" + "a" * 4096}
        async with small_api.client().post(f"{small_api.http}/admin/partners", json=big, headers=bearer(token)) as r:
            await expect_error(r, 413, "PAYLOAD_TOO_LARGE")
        assert await row_counts(api) == before
        async with small_api.client().post(f"{small_api.http}/admin/partners", json={"name": "P"},
                                           headers=bearer(token)) as r:
            assert r.status == 201
    finally:
        for session in small_api.sessions:
            await session.close()
        await runner.cleanup()


async def test_body_over_one_mebibyte_is_413_by_default(api, callers):
    """The default limit refuses a body over 1 MiB on the partner channel over TLS."""
    _, partner, before = callers
    body = customer_body(padding="x" * (1024 * 1024 + 1))
    async with partner.post(f"{api.https}/secure/customers", json=body) as r:
        await expect_error(r, 413, "PAYLOAD_TOO_LARGE")
    assert await row_counts(api) == before


async def test_unknown_route_and_wrong_method_are_json(api):
    """An unknown path is 404 NOT_FOUND and a known path with another method 405 METHOD_NOT_ALLOWED, both JSON."""
    client = api.client()
    for base in (api.http, api.https):
        for path in ("/nope", "/secure/nope", "/admin/partners/x/y/z", "/"):
            async with client.get(f"{base}{path}") as r:
                await expect_error(r, 404, "NOT_FOUND")
        for method, path in (("DELETE", "/admin/partners"), ("PUT", "/secure/customers"), ("POST", "/health"),
                             ("PATCH", "/public-key")):
            async with client.request(method, f"{base}{path}", json={}) as r:
                await expect_error(r, 405, "METHOD_NOT_ALLOWED")


async def test_body_sent_to_a_bodyless_endpoint_is_400(api, callers):
    """A body on an endpoint that takes none is 400 VALIDATION_ERROR, before the handler acts."""
    token, _, before = callers
    partner_id = (await _partner_ids(api))[0]
    async with api.client().get(f"{api.http}/admin/partners/{partner_id}/certificates", headers=bearer(token)) as r:
        serial = (await r.json())["items"][0]["serial"]
    async with api.client().post(f"{api.http}/admin/partners/{partner_id}/certificates/{serial}/revoke",
                                 json={"reason": "x"}, headers=bearer(token)) as r:
        await expect_error(r, 400, "VALIDATION_ERROR")
    async with api.client().delete(f"{api.http}/admin/sessions/current", json={"all": True},
                                   headers=bearer(token)) as r:
        await expect_error(r, 400, "VALIDATION_ERROR")
    assert await row_counts(api) == before
    async with api.client().get(f"{api.http}/admin/partners/{partner_id}/certificates", headers=bearer(token)) as r:
        assert r.status == 200, "the session was not revoked"
        assert (await r.json())["items"][0]["revokedAt"] is None


async def test_nul_in_a_path_parameter_is_not_500(api, callers):
    """A NUL character in a free-form path parameter (a certificate serial) is 404 NOT_FOUND, never 500."""
    token, _, before = callers
    partner_id = (await _partner_ids(api))[0]
    async with api.client().post(f"{api.http}/admin/partners/{partner_id}/certificates/ab%00cd/revoke",
                                 headers=bearer(token)) as r:
        await expect_error(r, 404, "NOT_FOUND")
    assert await row_counts(api) == before


async def test_text_postgresql_cannot_store_is_400_from_any_route(api):
    """A NUL reaching the database from any route (here a test-only one) is 400 VALIDATION_ERROR, not 500."""
    from antaca_api.routing import Channel, Context, Route

    async def store(ctx: Context, _: None) -> dict:
        return {"stored": await ctx.pool.fetchval("SELECT $1::text", ctx.request.match_info["text"])}

    route = Route("GET", "/test/store/{text}", store, Channel.PUBLIC, "store", authenticated=False)
    server, runner = await start_api(api.services, api.ca, extra_routes=[route])
    try:
        async with server.client().get(f"{server.http}/test/store/abc") as r:
            assert r.status == 200 and await r.json() == {"stored": "abc"}
        async with server.client().get(f"{server.http}/test/store/a%00c") as r:
            await expect_error(r, 400, "VALIDATION_ERROR")
    finally:
        for session in server.sessions:
            await session.close()
        await runner.cleanup()
