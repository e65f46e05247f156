"""PostgreSQL protocol v3 framing for one connection: messages read from the client, messages written to it.

Messages out collect in :attr:`Wire.out` and go to the socket on :meth:`Wire.flush`, which waits until the socket
has drained them: a large result is written chunk by chunk, never all held at once.
"""

from __future__ import annotations

import asyncio
import struct

from audiencehub.query import pgtypes
from audiencehub.query.errors import QueryError
from audiencehub.query.session import Column

FLUSH_BYTES = 1 << 18
"""Messages out held before they are written to the socket."""


class ProtocolError(Exception):
    """The client broke the protocol: answered with a FATAL error, then the connection closes."""


class Wire:
    """A client's stream: typed messages in, typed messages out (buffered until :meth:`flush`)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.out = bytearray()

    async def read(self) -> tuple[bytes, bytes]:
        """The next message: its type byte and its payload."""
        header = await self.reader.readexactly(5)
        (length,) = struct.unpack_from("!i", header, 1)
        if length < 4 or length > 1 << 30:
            raise ProtocolError("invalid message length")
        return header[:1], await self.reader.readexactly(length - 4)

    def send(self, kind: bytes, payload: bytes) -> None:
        self.out += kind + struct.pack("!i", len(payload) + 4) + payload

    async def flush(self) -> None:
        if self.out:
            self.writer.write(bytes(self.out))
            self.out.clear()
        await self.writer.drain()

    def complete(self, tag: str) -> None:
        self.send(b"C", cstr(tag))

    def parameter_status(self, name: str, value: str) -> None:
        self.send(b"S", cstr(name) + cstr(value))

    def row_description(self, columns: list[Column], formats: list[int]) -> None:
        parts = [struct.pack("!h", len(columns))]
        for column, fmt in zip(columns, formats or [0] * len(columns), strict=True):
            t = pgtypes.pg_type(column.type)
            parts.append(cstr(column.name) + struct.pack("!ihihih", 0, 0, t.oid, t.size, -1, fmt))
        self.send(b"T", b"".join(parts))

    def error(self, exc: QueryError, *, fatal: bool = False) -> None:
        severity = b"FATAL" if fatal else b"ERROR"
        fields = b"S" + severity + b"\0V" + severity + b"\0C" + exc.sqlstate.encode() + b"\0M" + exc.message.encode()
        self.send(b"E", fields + b"\0\0")

    def notice(self, message: str, sqlstate: str) -> None:
        self.send(b"N", b"SWARNING\0VWARNING\0C" + sqlstate.encode() + b"\0M" + message.encode() + b"\0\0")


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def read_cstr(buf: bytes, at: int) -> tuple[str, int]:
    """The NUL-terminated string at ``at`` and the offset after it."""
    end = buf.index(b"\0", at)
    return buf[at:end].decode(), end + 1
