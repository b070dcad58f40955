"""Events and webhooks on the partner channel: the events list, webhook endpoints (create, list,
choose event types, disable, rotate the secret), their deliveries and replays (docs/partners.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, ClassVar

import asyncpg
import msgspec
from msgspec import Meta

from antaca_api import partner_events, webhooks
from antaca_api.routing import Channel, Context, route
from antaca_api.schema import Body
from antaca_auth import events

TAGS = ("events and webhooks",)
EventType = Annotated[str, Meta(max_length=64, description="an event type, e.g. card.locked")]
EventTypes = Annotated[list[EventType], Meta(max_length=webhooks.EVENT_TYPES_PER_ENDPOINT_MAX,
                                             description="the types it receives; empty: all")]
WebhookUrl = Annotated[str, Meta(max_length=2048, description="https, to a public address")]


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


CURSOR_PARAMETER = _query("cursor", "The previous page's nextCursor (opaque).", {"type": "string"})


class Event(Body):
    event_id: uuid.UUID
    type: str
    created_at: datetime
    partner_id: uuid.UUID
    object_id: uuid.UUID
    payload: dict[str, Any]  # never PAN, CVV or PIN


class EventList(Body):
    query_parameters: ClassVar[list[dict[str, Any]]] = [
        CURSOR_PARAMETER,
        _query("limit", "Events per page.", {
            "type": "integer", "minimum": 1, "maximum": partner_events.PAGE_SIZE_MAX,
            "default": partner_events.PAGE_SIZE_DEFAULT}),
        _query("order", "newest (default) or oldest first.",
               {"type": "string", "enum": ["newest", "oldest"]}),
        _query("type", "Only events of this type.", {"type": "string",
                                                     "enum": sorted(events.EVENT_TYPES)}),
        _query("objectId", "Only events about this object.", {"type": "string", "format": "uuid"}),
    ]
    items: list[Event]
    next_cursor: str | None
    has_more: bool


def event_view(event: events.Event) -> Event:
    return Event(event_id=event.id, type=event.type, created_at=event.created_at,
                 partner_id=event.partner_id, object_id=event.object_id, payload=event.payload)


@route("GET", "/secure/events", channel=Channel.PARTNER, response=EventList, tags=TAGS,
       page_size_max=partner_events.PAGE_SIZE_MAX,
       summary="The partner's events, newest or oldest first, by type and object, with a cursor")
async def list_events(ctx: Context, _: None) -> EventList:
    query = ctx.request.query
    page = await partner_events.list_events(
        ctx.pool, ctx.partner_id, cursor=query.get("cursor"), order=query.get("order"),
        event_type=query.get("type"), object_id=query.get("objectId"),
        limit=ctx.page_size())
    return EventList(items=[event_view(e) for e in page.items], next_cursor=page.next_cursor,
                     has_more=page.has_more)


# --- endpoints -------------------------------------------------------------------------------
class NewWebhookEndpoint(Body):
    url: WebhookUrl
    event_types: EventTypes = []


class WebhookEndpoint(Body):
    endpoint_id: uuid.UUID
    url: str
    event_types: list[str]  # empty: every type
    enabled: bool
    previous_secret_valid_until: datetime | None  # a rotated secret still signing until then
    created_at: datetime
    updated_at: datetime


class NewWebhookEndpointResult(WebhookEndpoint, kw_only=True):
    secret: str  # whsec_...: shown here and on rotation only


class WebhookEndpoints(Body):
    items: list[WebhookEndpoint]


class EventTypesChange(Body):
    event_types: EventTypes


class RotatedSecret(Body):
    endpoint: WebhookEndpoint
    secret: str  # the new whsec_... secret
    previous_secret_valid_until: datetime  # the old one signs beside it until then


def endpoint_view(row: asyncpg.Record) -> WebhookEndpoint:
    return WebhookEndpoint(
        endpoint_id=row["id"], url=row["url"], event_types=list(row["event_types"]),
        enabled=row["enabled"], previous_secret_valid_until=row["previous_secret_until"],
        created_at=row["created_at"], updated_at=row["updated_at"])


@route("POST", "/secure/webhooks", channel=Channel.PARTNER, body=NewWebhookEndpoint,
       response=NewWebhookEndpointResult, status=201, tags=TAGS,
       summary="Register a webhook endpoint (the answer carries its signing secret, once)")
async def create_endpoint(ctx: Context, body: NewWebhookEndpoint) -> NewWebhookEndpointResult:
    row, secret = await webhooks.create_endpoint(
            ctx.pool, ctx.services.card_keys, ctx.partner_id, url=body.url,
            event_types=body.event_types,
            allow_private=ctx.services.settings.webhook_allow_private_targets)
    return NewWebhookEndpointResult(**msgspec.structs.asdict(endpoint_view(row)), secret=secret)


@route("GET", "/secure/webhooks", channel=Channel.PARTNER, response=WebhookEndpoints, tags=TAGS,
       summary="The partner's webhook endpoints")
async def list_endpoints(ctx: Context, _: None) -> WebhookEndpoints:
    rows = await webhooks.endpoints_of(ctx.pool, ctx.partner_id)
    return WebhookEndpoints(items=[endpoint_view(r) for r in rows])


@route("GET", "/secure/webhooks/{endpointId}", channel=Channel.PARTNER, response=WebhookEndpoint,
       tags=TAGS, summary="One webhook endpoint")
async def get_endpoint(ctx: Context, _: None) -> WebhookEndpoint:
    row = await webhooks.endpoint(ctx.pool, ctx.partner_id, ctx.path_id("endpointId"))
    return endpoint_view(row)


@route("PUT", "/secure/webhooks/{endpointId}/event-types", channel=Channel.PARTNER,
       body=EventTypesChange, response=WebhookEndpoint, tags=TAGS,
       summary="Choose the event types an endpoint receives (empty: all)")
async def set_event_types(ctx: Context, body: EventTypesChange) -> WebhookEndpoint:
    row = await webhooks.set_event_types(ctx.pool, ctx.partner_id, ctx.path_id("endpointId"),
                                         body.event_types)
    return endpoint_view(row)


@route("POST", "/secure/webhooks/{endpointId}/disable", channel=Channel.PARTNER,
       response=WebhookEndpoint, tags=TAGS,
       summary="Disable an endpoint: nothing more is queued or sent to it")
async def disable_endpoint(ctx: Context, _: None) -> WebhookEndpoint:
    return endpoint_view(await webhooks.set_enabled(ctx.pool, ctx.partner_id,
                                                    ctx.path_id("endpointId"), False))


@route("POST", "/secure/webhooks/{endpointId}/enable", channel=Channel.PARTNER,
       response=WebhookEndpoint, tags=TAGS, summary="Enable a disabled endpoint again")
async def enable_endpoint(ctx: Context, _: None) -> WebhookEndpoint:
    return endpoint_view(await webhooks.set_enabled(ctx.pool, ctx.partner_id,
                                                    ctx.path_id("endpointId"), True))


@route("POST", "/secure/webhooks/{endpointId}/rotate-secret", channel=Channel.PARTNER,
       response=RotatedSecret, tags=TAGS,
       summary="A new signing secret; the old one keeps signing beside it for 24 hours")
async def rotate_secret(ctx: Context, _: None) -> RotatedSecret:
    row, secret = await webhooks.rotate_secret(ctx.pool, ctx.services.card_keys, ctx.partner_id,
                                               ctx.path_id("endpointId"), ctx.services.clock())
    return RotatedSecret(endpoint=endpoint_view(row), secret=secret,
                         previous_secret_valid_until=row["previous_secret_until"])


# --- deliveries and replays ------------------------------------------------------------------
class DeliveryAttempt(Body):
    attempt: int
    ok: bool
    status_code: int | None
    error: str | None
    created_at: datetime


class WebhookDelivery(Body):
    delivery_id: uuid.UUID  # the webhook-id header of its requests
    event_id: uuid.UUID
    event_type: str
    state: str  # PENDING, SENT or FAILED
    attempts: list[DeliveryAttempt]
    next_attempt_at: datetime | None  # PENDING only
    last_error: str | None
    sent_at: datetime | None
    replay: bool
    created_at: datetime


class WebhookDeliveries(Body):
    query_parameters: ClassVar[list[dict[str, Any]]] = [
        CURSOR_PARAMETER,
        _query("limit", "Deliveries per page.", {"type": "integer", "minimum": 1,
                                                 "maximum": webhooks.DELIVERY_PAGE_SIZE_MAX,
                                                 "default": 50}),
    ]
    items: list[WebhookDelivery]
    next_cursor: str | None
    has_more: bool


class ReplayRequest(Body):
    event_id: uuid.UUID | None = None  # one event
    # or every event at or after this time (exactly one of the two)
    since: Annotated[datetime, Meta(tz=True)] | None = None


class ReplayResult(Body):
    queued: int
    has_more: bool  # more events than one replay queues: replay again from the last one's time


@route("GET", "/secure/webhooks/{endpointId}/deliveries", channel=Channel.PARTNER,
       response=WebhookDeliveries, tags=TAGS, page_size_max=webhooks.DELIVERY_PAGE_SIZE_MAX,
       summary="An endpoint's deliveries, newest first, with every attempt")
async def list_deliveries(ctx: Context, _: None) -> WebhookDeliveries:
    page = await webhooks.deliveries(
        ctx.pool, ctx.partner_id, ctx.path_id("endpointId"), cursor=ctx.request.query.get("cursor"),
        limit=ctx.page_size())
    items = [WebhookDelivery(
        delivery_id=d["id"], event_id=d["event_id"], event_type=d["event_type"], state=d["state"],
        attempts=[DeliveryAttempt(attempt=a["attempt"], ok=a["ok"], status_code=a["status_code"],
                                  error=a["error"], created_at=a["created_at"])
                  for a in page.attempts[d["id"]]],
        next_attempt_at=d["next_attempt_at"] if d["state"] == "PENDING" else None,
        last_error=d["last_error"], sent_at=d["sent_at"], replay=d["replay"],
        created_at=d["created_at"]) for d in page.deliveries]
    return WebhookDeliveries(items=items, next_cursor=page.next_cursor, has_more=page.has_more)


@route("POST", "/secure/webhooks/{endpointId}/replay", channel=Channel.PARTNER, body=ReplayRequest,
       response=ReplayResult, status=202, tags=TAGS,
       summary="Send one event, or every event since a time, to the endpoint again")
async def replay(ctx: Context, body: ReplayRequest) -> ReplayResult:
    done = await webhooks.replay(ctx.pool, ctx.partner_id, ctx.path_id("endpointId"),
                                 event_id=body.event_id, since=body.since, now=ctx.services.clock())
    return ReplayResult(queued=done.queued, has_more=done.has_more)
