"""A partner's events as a paged list (`GET /secure/events`), so a partner can reconcile without
webhooks. The events themselves are antaca_auth/events.py's; the cursor is antaca_api/pages.py's."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from antaca_api import pages
from antaca_api.domain_errors import ValidationFailed
from antaca_auth import events

PAGE_SIZE_MAX = events.PAGE_SIZE_MAX
# One list each way, by event id (time-ordered): a cursor of one direction is refused in the other.
EVENT_PAGES = {
    "newest": pages.Keyset("events-newest-first", tuple[uuid.UUID], descending=True),
    "oldest": pages.Keyset("events-oldest-first", tuple[uuid.UUID]),
}


@dataclass(frozen=True)
class EventPage:
    items: list[events.Event]
    # None: no more events now (oldest first, the last page's cursor serves to ask again later)
    next_cursor: str | None
    has_more: bool


def keyset(order: str | None) -> pages.Keyset:
    """The list an `order` query parameter names: newest first (the default) or oldest first."""
    chosen = EVENT_PAGES.get("newest" if order is None else order)
    if chosen is None:
        raise ValidationFailed("order must be newest or oldest")
    return chosen


def _event_position(event: events.Event) -> tuple[uuid.UUID]:
    return (event.id,)


async def list_events(pool: asyncpg.Pool, partner_id: uuid.UUID, page: pages.PageRequest, *,
                      event_type: str | None, object_id: str | None) -> EventPage:
    """A page of the partner's events (one of EVENT_PAGES), filtered by type and object id when
    given."""
    if event_type is not None and event_type not in events.EVENT_TYPES:
        raise ValidationFailed("unknown event type")
    try:
        object_uuid = None if object_id is None else uuid.UUID(object_id)
    except ValueError:
        raise ValidationFailed("objectId must be a UUID") from None
    found = await events.page(pool, partner_id, after=page.after_key(),
                              newest_first=page.keyset.descending, event_type=event_type,
                              object_id=object_uuid, limit=page.fetch)
    items, next_cursor = pages.cut(found, page, _event_position)
    has_more = next_cursor is not None
    if not page.keyset.descending:  # oldest first, the last page's cursor polls for what follows
        next_cursor = pages.resume_cursor(items, page, _event_position)
    return EventPage(list(items), next_cursor, has_more)
