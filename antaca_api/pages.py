"""One way to page through a list: keyset pagination behind an opaque cursor.

A list declares its `Keyset`: a name, the type of the position its SQL orders by (a `seq`, or
`(created_at, id)`, ...) and whether it reads newest first. A request's `limit` (bounded by its
route: `Context.page_size`) and `cursor` query parameters become a `PageRequest` (`request`, or
`Context.page`): the position after which to read (None: from the start) and how many rows to
fetch, one more than the page so that the page knows whether more follow. The owning module's
statement reads `WHERE <key> > <position> ORDER BY <key> LIMIT <fetch>` (a descending list:
`<` and `ORDER BY <key> DESC`); `cut` turns its rows into the page and the next cursor. A cursor
is base64url of `[list name, position]`: opaque to callers, refused (400 INVALID_CURSOR) on
another list or when altered into nonsense. It names a position, not a snapshot: rows added
behind it appear on later pages, none is skipped or repeated.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from antaca_api.domain_errors import InvalidCursor

page_size_default = 50  # rows
page_size_max = 200  # rows
cursor_length_max = 512  # characters

Position = TypeVar("Position")
Row = TypeVar("Row")


@dataclass(frozen=True)
class Keyset(Generic[Position]):
    """A paginated list: its name (inside its cursors), the type of its position, and whether it
    reads from the largest key down (newest first)."""

    name: str
    position: Any  # e.g. tuple[int], tuple[datetime, uuid.UUID]
    descending: bool = False


@dataclass(frozen=True)
class PageRequest(Generic[Position]):
    keyset: Keyset
    limit: int
    after: Position | None  # None: the first page

    @property
    def fetch(self) -> int:
        """Rows to read: one more than the page, to know whether more follow."""
        return self.limit + 1

    def after_key(self, first: Any = None) -> Any:
        """A one-column list's key to read after: the cursor's, or `first` on the first page (0
        before every `seq`; None where the statement reads `$n IS NULL OR key > $n`)."""
        return first if self.after is None else self.after[0]


def encode_cursor(keyset: Keyset, position: Any) -> str:
    raw = msgspec.json.encode([keyset.name, position])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(keyset: Keyset, cursor: str) -> Any:
    """The position a cursor of this list names, or InvalidCursor."""
    invalid = InvalidCursor()
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


def request(keyset: Keyset, cursor: str | None, limit: int) -> PageRequest:
    """The page asked for by a `cursor` query parameter (None: the first page) and a `limit`
    already checked against its route's bound (`Context.page`)."""
    after = None if cursor is None else decode_cursor(keyset, cursor)
    return PageRequest(keyset, limit, after)


def cut(rows: Sequence[Row], page: PageRequest,
        position_of: Callable[[Row], Any]) -> tuple[Sequence[Row], str | None]:
    """The page's rows and the cursor of the next page (None: this was the last)."""
    if len(rows) <= page.limit:
        return rows, None
    shown = rows[:page.limit]
    return shown, encode_cursor(page.keyset, position_of(shown[-1]))


def column_position(column: str) -> Callable[[Mapping[str, Any]], tuple[Any]]:
    """The position of a row in a list ordered by one of its columns (a one-column keyset)."""
    return lambda row: (row[column],)


seq_position = column_position("seq")  # lists in insertion order
id_position = column_position("id")  # lists ordered by a sequential or time-ordered id


def resume_cursor(shown: Sequence[Row], page: PageRequest,
                  position_of: Callable[[Row], Any]) -> str | None:
    """For a list that grows at its end (oldest first), the cursor after this page even when it
    is the last: asked again later, it gives what came since (None: an empty first page)."""
    position = position_of(shown[-1]) if shown else page.after
    return None if position is None else encode_cursor(page.keyset, position)
