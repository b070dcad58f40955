"""A partner's events as a list with an opaque cursor (`GET /secure/events`), so a partner can
reconcile without webhooks. The events themselves are antaca_auth/events.py's."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass

import asyncpg

from antaca_api.domain_errors import InvalidCursor, ValidationFailed
from antaca_auth import events

PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = events.PAGE_SIZE_MAX
CURSOR_VERSION = b"e1"  # the first bytes of every cursor: a later format can tell its own apart


def encode_cursor(last_id: uuid.UUID, newest_first: bool) -> str:
    """An opaque cursor: the last id a page gave and its direction (a cursor of one direction is
    refused in the other)."""
    raw = CURSOR_VERSION + (b"n" if newest_first else b"o") + last_id.bytes
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, newest_first: bool) -> uuid.UUID:
    """The id after which the next page starts; InvalidCursor for anything this list did not
    give."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursor() from None
    expected = CURSOR_VERSION + (b"n" if newest_first else b"o")
    if len(raw) != len(expected) + 16 or not raw.startswith(expected):
        raise InvalidCursor()
    return uuid.UUID(bytes=raw[len(expected):])


@dataclass(frozen=True)
class EventPage:
    items: list[events.Event]
    # None: no more events now (oldest first, the last page's cursor serves to ask again later)
    next_cursor: str | None
    has_more: bool


def parse_order(order: str | None) -> bool:
    """True for newest first (the default), False for oldest first."""
    if order in (None, "newest"):
        return True
    if order == "oldest":
        return False
    raise ValidationFailed("order must be newest or oldest")


async def list_events(pool: asyncpg.Pool, partner_id: uuid.UUID, *, cursor: str | None,
                      order: str | None, event_type: str | None, object_id: str | None,
                      limit: int) -> EventPage:
    """A page of the partner's events, filtered by type and object id when given."""
    newest_first = parse_order(order)
    after = None if cursor is None else decode_cursor(cursor, newest_first)
    if event_type is not None and event_type not in events.EVENT_TYPES:
        raise ValidationFailed("unknown event type")
    try:
        object_uuid = None if object_id is None else uuid.UUID(object_id)
    except ValueError:
        raise ValidationFailed("objectId must be a UUID") from None
    found = await events.page(pool, partner_id, after=after, newest_first=newest_first,
                              event_type=event_type, object_id=object_uuid, limit=limit + 1)
    items, has_more = found[:limit], len(found) > limit
    # Oldest first, the last page's cursor still lets a partner poll for what comes next.
    last = items[-1].id if items else after
    next_cursor = None if last is None or (newest_first and not has_more) \
        else encode_cursor(last, newest_first)
    return EventPage(items, next_cursor, has_more)
