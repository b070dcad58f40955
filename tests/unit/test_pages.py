"""The shared page mechanism without a database: cursors round-trip, name their list, refuse
nonsense (INVALID_CURSOR); a request reads one row more than its page; `cut` finds the page and
the next cursor, `resume_cursor` the cursor an oldest-first list polls with."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from antaca_api import pages
from antaca_api.domain_errors import InvalidCursor

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
    with pytest.raises(InvalidCursor):
        pages.decode_cursor(SEQ, cursor)


def test_a_cursor_of_another_list_or_shape_is_refused():
    with pytest.raises(InvalidCursor):
        pages.decode_cursor(pages.Keyset("others", tuple[int]), pages.encode_cursor(SEQ, (1,)))
    with pytest.raises(InvalidCursor):
        pages.decode_cursor(PAIR, pages.encode_cursor(pages.Keyset("pairs", tuple[int]), (1,)))


def test_a_request_reads_one_more_row_than_its_page():
    first = pages.request(SEQ, None, 50)
    assert (first.limit, first.after, first.fetch) == (50, None, 51)
    assert first.after_key(0) == 0 and first.after_key() is None
    page = pages.request(SEQ, pages.encode_cursor(SEQ, (7,)), 3)
    assert (page.limit, page.after, page.fetch, page.after_key(0)) == (3, (7,), 4, 7)
    with pytest.raises(InvalidCursor):
        pages.request(SEQ, "x", 3)


def test_cut():
    page = pages.request(SEQ, None, 2)
    assert pages.cut([1, 2], page, lambda r: (r,)) == ([1, 2], None)
    assert pages.cut([], page, lambda r: (r,)) == ([], None)
    shown, cursor = pages.cut([1, 2, 3], page, lambda r: (r,))
    assert shown == [1, 2] and pages.decode_cursor(SEQ, cursor) == (2,)
    rows = [{"seq": 5, "id": 9}, {"seq": 6, "id": 8}, {"seq": 7, "id": 7}]
    shown, cursor = pages.cut(rows, page, pages.seq_position)
    assert shown == rows[:2] and pages.decode_cursor(SEQ, cursor) == (6,)
    assert pages.id_position(rows[2]) == (7,)


def test_an_oldest_first_list_keeps_a_cursor_past_its_last_page():
    first = pages.request(SEQ, None, 2)
    assert pages.resume_cursor([], first, lambda r: (r,)) is None  # nothing yet: start over
    assert pages.decode_cursor(SEQ, pages.resume_cursor([4], first, lambda r: (r,))) == (4,)
    later = pages.request(SEQ, pages.encode_cursor(SEQ, (4,)), 2)
    # An empty page keeps the cursor it was asked with: asking again gives what came since.
    assert pages.decode_cursor(SEQ, pages.resume_cursor([], later, lambda r: (r,))) == (4,)
