"""Unauthenticated endpoints: health and Antaca's public key."""

from __future__ import annotations

from antaca_api import health as database_health
from antaca_api import jwe
from antaca_api.errors import DatabaseUnavailable, NotReady
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


class Liveness(Body):
    status: str


class Readiness(Body):
    status: str
    database: str
    migrations: str
    engine: str


@route("GET", "/health/live", channel=Channel.PUBLIC, response=Liveness,
       summary="The process is up (no dependency checked)")
async def health_live(ctx: Context, _: None) -> Liveness:
    return Liveness(status="ok")


@route("GET", "/health/ready", channel=Channel.PUBLIC, response=Readiness,
       summary="Ready for traffic: database reachable, migrations current, engine started",
       errors=(NotReady,))
async def health_ready(ctx: Context, _: None) -> Readiness:
    state = await database_health.readiness(ctx.pool, ctx.services.engine)
    if not state.ready:
        raise NotReady(f"not ready: database {state.database}, migrations {state.migrations},"
                       f" engine {state.engine}")
    return Readiness(status="ok", database=state.database, migrations=state.migrations,
                     engine=state.engine)


async def public_key(ctx: Context, _: None) -> jwe.PublicKeyDocument:
    return jwe.public_key_document(ctx.services.jwe_key)


for _prefix in ("", "/customers", "/secure", "/lifecycle", "/admin"):
    route(
        "GET", f"{_prefix}/public-key", channel=Channel.PUBLIC, authenticated=False,
        response=jwe.PublicKeyDocument, summary="Antaca's RSA public key for JWE (JWK and PEM)", tags=("jwe",),
        errors=(),
    )(public_key)
