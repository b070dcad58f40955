"""Unauthenticated endpoints: health and Antaca's public key."""

from __future__ import annotations

from antaca_api import health as database_health
from antaca_api import jwe
from antaca_api.errors import DatabaseUnavailable
from antaca_api.routing import Channel, Context, route
from antaca_api.schema import Body


class Health(Body):
    status: str
    database: str


@route("GET", "/health", channel=Channel.PUBLIC, response=Health,
       summary="Service and database health", errors=(DatabaseUnavailable,))
async def health(ctx: Context, _: None) -> Health:
    if not await database_health.database_answers(ctx.pool):
        raise DatabaseUnavailable()
    return Health(status="ok", database="ok")


async def public_key(ctx: Context, _: None) -> jwe.PublicKeyDocument:
    return jwe.public_key_document(ctx.services.jwe_key)


for _prefix in ("", "/customers", "/secure", "/lifecycle", "/admin"):
    route(
        "GET", f"{_prefix}/public-key", channel=Channel.PUBLIC, authenticated=False,
        response=jwe.PublicKeyDocument, summary="Antaca's RSA public key for JWE (JWK and PEM)", tags=("jwe",),
        errors=(),
    )(public_key)
