"""Base classes for request and response bodies: camelCase on the wire, unknown fields refused."""

from __future__ import annotations

import msgspec


class Body(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """A request or response body."""


class Page(Body, kw_only=True):
    """Pagination of a list: pass `nextCursor` back as `cursor` for the next page."""

    next_cursor: str | None = None
