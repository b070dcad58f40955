"""Time-ordered ids (the UUIDv7 layout): new rows land at the right edge of their B-tree indexes.

Random UUIDv4 keys scatter inserts across the whole index, which costs page splits and cache
misses once a table outgrows memory; the authorization path inserts three rows per payment.
"""

from __future__ import annotations

import os
import time
import uuid


_UUID, _new, _set, _UNKNOWN = uuid.UUID, object.__new__, object.__setattr__, uuid.SafeUUID.unknown


def new_id() -> uuid.UUID:
    """A UUID whose first 48 bits are the Unix time in milliseconds, then 74 random bits (RFC 9562 v7)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & (2**48 - 1)) << 80 | 0x7 << 76 | ((rand >> 62) & 0xFFF) << 64 | 0b10 << 62 | (rand & (2**62 - 1))
    # What uuid.UUID(int=value) builds, without its argument checks: three ids per payment on the hot path.
    u = _new(_UUID)
    _set(u, "int", value)
    _set(u, "is_safe", _UNKNOWN)
    return u
