"""A network's side of the ISO 8583 channel for tests and the benchmark, written from the
standard's layout (MTI, binary bitmaps, fixed fields, LLVAR and LLLVAR) without Antaca's own
field specification, so that a mistake in that specification cannot hide on both sides."""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime

# Field number: (layout, size). F: fixed ASCII of exactly `size`; LL / LLL: ASCII with a 2- or
# 3-digit length; LLB: binary with a 2-digit length counting bytes (Antaca's DE52).
LAYOUT = {
    2: ("LL", 19), 3: ("F", 6), 4: ("F", 12), 7: ("F", 10), 11: ("F", 6), 12: ("F", 6),
    13: ("F", 4), 14: ("F", 4), 18: ("F", 4), 22: ("F", 3), 32: ("LL", 11), 37: ("F", 12),
    38: ("F", 6), 39: ("F", 2), 41: ("F", 8), 42: ("F", 15), 43: ("F", 40), 44: ("LL", 25),
    48: ("LLL", 999), 49: ("F", 3), 52: ("LLB", 16), 54: ("LLL", 120), 70: ("F", 3),
    90: ("F", 42), 95: ("F", 42),
}


def encode(mti: str, fields: dict[int, str | bytes]) -> bytes:
    """One message with its 2-byte big-endian length prefix."""
    numbers = sorted(fields)
    secondary = any(number > 64 for number in numbers)
    bitmap = bytearray(16 if secondary else 8)
    if secondary:
        bitmap[0] |= 0x80
    body = b""
    for number in numbers:
        bitmap[(number - 1) // 8] |= 0x80 >> ((number - 1) % 8)
        layout, size = LAYOUT[number]
        value = fields[number]
        data = value if isinstance(value, bytes) else value.encode("ascii")
        if layout == "F":
            assert len(data) == size, (number, len(data))
            body += data
        else:
            digits = 3 if layout == "LLL" else 2
            assert len(data) <= size, number
            body += str(len(data)).zfill(digits).encode() + data
    message = mti.encode() + bytes(bitmap) + body
    return len(message).to_bytes(2, "big") + message


def decode(message: bytes) -> tuple[str, dict[int, str]]:
    """A message without its length prefix: (MTI, fields; binary ones in hex)."""
    mti = message[:4].decode()
    position = 4
    bitmap = message[position:position + 8]
    position += 8
    if bitmap[0] & 0x80:
        bitmap += message[position:position + 8]
        position += 8
    fields = {}
    for number in range(2, len(bitmap) * 8 + 1):
        if not bitmap[(number - 1) // 8] & (0x80 >> ((number - 1) % 8)):
            continue
        layout, size = LAYOUT[number]
        if layout != "F":
            digits = 3 if layout == "LLL" else 2
            size = int(message[position:position + digits])
            position += digits
        data = message[position:position + size]
        position += size
        fields[number] = data.hex().upper() if layout == "LLB" else data.decode("ascii")
    assert position == len(message), "trailing bytes"
    return mti, fields


class NetworkClient:
    """One connection: requests pipelined, answers matched by STAN and RRN (DE11, DE37)."""

    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.waiting: dict[tuple[str | None, str | None], asyncio.Future] = {}
        self.unmatched: asyncio.Queue[tuple[str, dict[int, str]]] = asyncio.Queue()
        self.closed = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def connect(self, port: int, tls: ssl.SSLContext | None = None) -> NetworkClient:
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=tls, server_hostname="127.0.0.1" if tls else None)
        self._task = asyncio.create_task(self._receive())
        return self

    async def _receive(self) -> None:
        try:
            while True:
                prefix = await self.reader.readexactly(2)
                message = await self.reader.readexactly(int.from_bytes(prefix, "big"))
                mti, fields = decode(message)
                future = self.waiting.pop((fields.get(11), fields.get(37)), None)
                if future is not None and not future.done():
                    future.set_result((mti, fields))
                else:
                    self.unmatched.put_nowait((mti, fields))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed.set()

    def send(self, mti: str, fields: dict[int, str | bytes]) -> asyncio.Future:
        """Write one request; the future gets its (MTI, fields) answer."""
        future = asyncio.get_running_loop().create_future()
        self.waiting[(fields.get(11), fields.get(37))] = future
        self.writer.write(encode(mti, fields))
        return future

    async def request(self, mti: str, fields: dict, timeout: float = 10) -> tuple[str, dict]:
        return await asyncio.wait_for(self.send(mti, fields), timeout)

    def write_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def transmission_time() -> str:
    return datetime.now(UTC).strftime("%m%d%H%M%S")
