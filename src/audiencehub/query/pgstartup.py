"""A PostgreSQL client's startup: the startup packet (TLS refused, cancel requests passed on, protocol 3.0 only)
and the clear-text password exchange. What the client asked for comes back as a :class:`Login`; opening the
session with it is the connection's (``pgwire.py``)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from audiencehub.query.errors import QueryError
from audiencehub.query.pgmessages import ProtocolError, Wire

SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102


@dataclass(frozen=True)
class Login:
    """Who connects to which database, with which password, and the settings the startup packet sent."""

    user: str
    password: str
    database: str
    settings: dict[str, str]
    """The startup packet's parameters, with the ``-c name=value`` pairs of its ``options`` over them."""


async def handshake(wire: Wire, cancel: Callable[[int, int], None]) -> Login | None:
    """Reads the startup packet and asks for the password; None when the connection has nothing more to do (a
    CancelRequest, passed to ``cancel(pid, key)``, or a packet without a user, answered with a FATAL error)."""
    while True:
        (length,) = struct.unpack("!i", await wire.reader.readexactly(4))
        if not 8 <= length <= 10_000:
            raise ProtocolError("invalid length of startup packet")
        body = await wire.reader.readexactly(length - 4)
        (code,) = struct.unpack_from("!i", body)
        if code in (SSL_REQUEST, GSSENC_REQUEST):
            wire.writer.write(b"N")  # no TLS here: put a TLS-terminating proxy in front
            continue
        if code == CANCEL_REQUEST:
            pid, key = struct.unpack_from("!ii", body, 4)
            cancel(pid, key)
            return None
        break
    if code >> 16 != 3:
        raise ProtocolError(f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: only 3.0 is")
    items = body[4:].split(b"\0")
    params = {k.decode(): v.decode() for k, v in zip(items[::2], items[1::2], strict=False) if k}
    unknown = [k for k in params if k.startswith("_pq_.")]
    if code & 0xFFFF or unknown:
        payload = struct.pack("!ii", 0, len(unknown)) + b"".join(k.encode() + b"\0" for k in unknown)
        wire.send(b"v", payload)
    user = params.get("user")
    if not user:
        wire.error(QueryError("no PostgreSQL user name specified in startup packet", "28000"), fatal=True)
        await wire.flush()
        return None
    database = params.get("database") or user
    wire.send(b"R", struct.pack("!i", 3))  # AuthenticationCleartextPassword
    await wire.flush()
    kind, payload = await wire.read()
    if kind != b"p":
        raise ProtocolError(f"expected a password message, got {kind!r}")
    password = payload.rstrip(b"\0").decode()
    return Login(user, password, database, {**params, **_options(params.get("options", ""))})


def _options(options: str) -> dict[str, str]:
    """``-c name=value`` and ``--name=value`` pairs of the startup packet's ``options``."""
    out, words = {}, options.split()
    for i, word in enumerate(words):
        pair = words[i + 1] if word == "-c" and i + 1 < len(words) else word[2:] if word.startswith("--") else ""
        if "=" in pair:
            key, value = pair.split("=", 1)
            out[key.replace("-", "_")] = value
    return out
