"""Base classes for request and response bodies: camelCase on the wire, unknown fields refused."""

from __future__ import annotations

import msgspec


class Body(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """A request or response body."""


class Page(Body, kw_only=True):
    """Pagination of a list: pass `nextCursor` back as `cursor` for the next page; `hasMore`
    says whether there is one (antaca_api/pages.py)."""

    next_cursor: str | None = None
    has_more: bool = False

    def __post_init__(self) -> None:
        self.has_more = self.next_cursor is not None
