"""The shared page mechanism without a database: cursors round-trip, name their list, refuse
nonsense; limits are bounded; `cut` finds the page and the next cursor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from antaca_api import pages
from antaca_api.domain_errors import ValidationFailed

SEQ = pages.Keyset("things", tuple[int])
PAIR = pages.Keyset("pairs", tuple[datetime, uuid.UUID])


def test_cursors_round_trip_and_are_opaque_url_safe_text():
    at, some_id = datetime(2026, 11, 28, 12, 30, 1, 123456, tzinfo=UTC), uuid.uuid4()
    for keyset, position in ((SEQ, (42,)), (PAIR, (at, some_id))):
        cursor = pages.encode_cursor(keyset, position)
        assert cursor.replace("-", "").replace("_", "").isalnum() and "=" not in cursor
        assert pages.decode_cursor(keyset, cursor) == position


@pytest.mark.parametrize("cursor", ["", "!!", "bm90IGpzb24", "WzFd",
                                    "x" * (pages.cursor_length_max + 1)])
def test_nonsense_is_refused(cursor):
    with pytest.raises(ValidationFailed):
        pages.decode_cursor(SEQ, cursor)


def test_a_cursor_of_another_list_or_shape_is_refused():
    with pytest.raises(ValidationFailed):
        pages.decode_cursor(pages.Keyset("others", tuple[int]), pages.encode_cursor(SEQ, (1,)))
    with pytest.raises(ValidationFailed):
        pages.decode_cursor(PAIR, pages.encode_cursor(pages.Keyset("pairs", tuple[int]), (1,)))


def test_limits():
    assert pages.request(SEQ, {}).limit == pages.page_size_default
    assert pages.request(SEQ, {"limit": str(pages.page_size_max)}).limit == pages.page_size_max
    for bad in ("0", str(pages.page_size_max + 1), "-1", "1.5", "x", ""):
        with pytest.raises(ValidationFailed):
            pages.request(SEQ, {"limit": bad})
    page = pages.request(SEQ, {"limit": "3", "cursor": pages.encode_cursor(SEQ, (7,))})
    assert (page.limit, page.after, page.fetch) == (3, (7,), 4)


def test_cut():
    page = pages.request(SEQ, {"limit": "2"})
    assert pages.cut([1, 2], page, lambda r: (r,)) == ([1, 2], None)
    assert pages.cut([], page, lambda r: (r,)) == ([], None)
    shown, cursor = pages.cut([1, 2, 3], page, lambda r: (r,))
    assert shown == [1, 2] and pages.decode_cursor(SEQ, cursor) == (2,)
