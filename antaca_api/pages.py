"""One way to page through a list: keyset pagination behind an opaque cursor.

A list declares its `Keyset`: a name and the type of the position its SQL orders by (a `seq`, or
`(created_at, id)`, ...). A request's `limit` and `cursor` query parameters become a
`PageRequest`: the position after which to read (None: from the start) and how many rows to
fetch, one more than the page so that the page knows whether more follow. The owning module's
statement reads `WHERE <key> > <position> ORDER BY <key> LIMIT <fetch>`; `cut` turns its rows
into the page and the next cursor. A cursor is base64url of `[list name, position]`: opaque to
callers, refused (400) on another list or when altered into nonsense. It names a position, not a
snapshot: rows added behind it appear on later pages, none is skipped or repeated.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from antaca_api.domain_errors import ValidationFailed

page_size_default = 50  # rows
page_size_max = 200  # rows
cursor_length_max = 512  # characters

Position = TypeVar("Position")
Row = TypeVar("Row")


@dataclass(frozen=True)
class Keyset(Generic[Position]):
    """A paginated list: its name (inside its cursors) and the type of its position."""

    name: str
    position: Any  # e.g. tuple[int], tuple[datetime, uuid.UUID]


@dataclass(frozen=True)
class PageRequest(Generic[Position]):
    keyset: Keyset
    limit: int
    after: Position | None  # None: the first page

    @property
    def fetch(self) -> int:
        """Rows to read: one more than the page, to know whether more follow."""
        return self.limit + 1


def encode_cursor(keyset: Keyset, position: Any) -> str:
    raw = msgspec.json.encode([keyset.name, position])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(keyset: Keyset, cursor: str) -> Any:
    """The position a cursor of this list names, or ValidationFailed."""
    invalid = ValidationFailed("query parameter cursor is not a cursor of this list")
    if not 1 <= len(cursor) <= cursor_length_max:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        name, position = msgspec.json.decode(raw, type=tuple[str, keyset.position])
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise invalid from None
    if name != keyset.name:
        raise invalid
    return position


def _limit(raw: str | None) -> int:
    if raw is None:
        return page_size_default
    if not raw.isdigit() or not 1 <= int(raw) <= page_size_max:
        raise ValidationFailed(f"query parameter limit must be between 1 and {page_size_max}")
    return int(raw)


def request(keyset: Keyset, query: Mapping[str, str]) -> PageRequest:
    """The page a request asks for, from its `limit` and `cursor` query parameters."""
    cursor = query.get("cursor")
    after = None if cursor is None else decode_cursor(keyset, cursor)
    return PageRequest(keyset, _limit(query.get("limit")), after)


def cut(rows: Sequence[Row], page: PageRequest,
        position_of: Callable[[Row], Any]) -> tuple[Sequence[Row], str | None]:
    """The page's rows and the cursor of the next page (None: this was the last)."""
    if len(rows) <= page.limit:
        return rows, None
    shown = rows[:page.limit]
    return shown, encode_cursor(page.keyset, position_of(shown[-1]))
