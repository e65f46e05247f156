"""A TCP proxy on 127.0.0.1 that injects transient failures, for testing retries.

Faults are armed by the test and fire on traffic after arming:

* :meth:`FaultProxy.reset_after` - each of the next ``times`` new connections is forwarded normally until
  ``n_bytes`` of the server->client stream have gone through; then the proxy resets both sides (``SO_LINGER`` 0,
  so the peers get a TCP RST, not a clean EOF). Connections accepted before arming are not affected.
* :meth:`FaultProxy.http_error` - the next ``times`` HTTP requests, on any connection (kept-alive ones included),
  are answered by the proxy itself with a canned response instead of being forwarded. The response carries
  ``Connection: close`` and the proxy then closes that connection (and its upstream connection): the client
  opens a new one for its next request. Before answering, the proxy reads and drops the request body
  (``Content-Length``) unless the client sent ``Expect: 100-continue``, so closing does not turn into a reset.

To count requests the client->server stream is parsed at request boundaries: the header block up to
``\\r\\n\\r\\n`` and a ``Content-Length`` body. A connection whose first bytes are not an HTTP request line (SSH,
say) or that sends a chunked body is forwarded as raw bytes from then on, and ``http_error`` never fires on it.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import http
import re
import socket
import struct
import termios
import threading
import time
from collections import deque
from collections.abc import Callable

from tests.servers._process import LOOPBACK

SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)
_CHUNK = 64 * 1024
_MAX_HEAD = 64 * 1024
_METHOD = re.compile(rb"[A-Z]{3,10} ")


def _close(sock: socket.socket, *, reset: bool) -> None:
    """Closes ``sock`` (with a TCP RST when ``reset``), waking any thread blocked on it."""
    with contextlib.suppress(OSError):
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RD)  # SHUT_WR would send a FIN before the RST
        else:
            sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _wait_acked(sock: socket.socket, timeout: float = 2.0) -> None:
    """Waits (up to ``timeout``) until the peer has acknowledged all sent data, so a reset discards none of it."""
    outq = getattr(termios, "TIOCOUTQ", None)  # Linux; elsewhere the reset may drop the last unsent bytes
    deadline = time.monotonic() + timeout
    with contextlib.suppress(OSError):
        while outq is not None and time.monotonic() < deadline:
            if struct.unpack("i", fcntl.ioctl(sock.fileno(), outq, b"\0\0\0\0"))[0] == 0:
                return
            time.sleep(0.005)


class _Next(enum.Enum):
    REQUEST = "parse the next request"
    RAW = "forward the rest as raw bytes"
    CLOSED = "the connection was answered and closed"


class _Reader:
    """Buffered reads from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def fill(self) -> bool:
        data = self.sock.recv(_CHUNK)
        self.buf += data
        return bool(data)

    def take(self, n: int | None = None) -> bytes:
        n = len(self.buf) if n is None else n
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def relay(self, n: int, send: Callable[[bytes], object]) -> bool:
        """Passes the next ``n`` bytes to ``send``; False if the stream ends first."""
        while n:
            if not self.buf and not self.fill():
                return False
            data = self.take(n)
            send(data)
            n -= len(data)
        return True


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; see the module docstring for the faults."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server((LOOPBACK, 0))
        self.host = LOOPBACK
        self.port: int = self._listener.getsockname()[1]
        self.endpoint = f"http://{self.host}:{self.port}"
        self.connections = 0
        self.faults_fired = 0
        self._lock = threading.Lock()
        self._resets: deque[int] = deque()
        self._http_errors: deque[bytes] = deque()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self._spawn(self._accept_loop)

    # -- arming

    def reset_after(self, n_bytes: int, times: int = 1) -> None:
        """The next ``times`` new connections are reset after ``n_bytes`` of server->client data."""
        with self._lock:
            self._resets.extend([n_bytes] * times)

    def http_error(
        self,
        status: int = 503,
        times: int = 2,
        body: bytes = SLOW_DOWN_BODY,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next ``times`` HTTP requests get this response from the proxy (default: S3's 503 SlowDown)."""
        fields = {"Content-Type": "application/xml", **(headers or {})}
        fields.update({"Content-Length": str(len(body)), "Connection": "close"})
        head = f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
        with self._lock:
            self._http_errors.extend([head.encode("latin-1") + body] * times)

    def stop(self) -> None:
        """Stops accepting, resets every open connection and waits for the proxy's threads."""
        with self._lock:
            self._stopped = True
            sockets = [self._listener, *self._sockets]
        for sock in sockets:
            _close(sock, reset=True)
        for thread in self._threads:
            thread.join(timeout=10)

    # -- plumbing

    def _spawn(self, target: Callable[..., None], *args: object) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True, name=f"fault-proxy-{self.port}")
        thread.start()
        self._threads.append(thread)
        return thread

    def _track(self, sock: socket.socket) -> bool:
        """Registers ``sock`` for :meth:`stop`; False (and resets it) when the proxy is already stopping."""
        with self._lock:
            if not self._stopped:
                self._sockets.add(sock)
                return True
        _close(sock, reset=True)
        return False

    def _close(self, *socks: socket.socket, reset: bool) -> None:
        for sock in socks:
            with self._lock:
                self._sockets.discard(sock)
            _close(sock, reset=reset)

    def _fire(self) -> None:
        with self._lock:
            self.faults_fired += 1

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed by stop()
            if not self._track(client):
                return
            with self._lock:
                self.connections += 1
                reset_at = self._resets.popleft() if self._resets else None
            self._spawn(self._serve, client, reset_at)

    def _serve(self, client: socket.socket, reset_at: int | None) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            self._close(client, reset=True)
            return
        upstream.settimeout(None)
        if not self._track(upstream):
            self._close(client, reset=True)
            return
        down = self._spawn(self._pump_down, client, upstream, reset_at)
        self._pump_up(client, upstream)
        down.join()
        self._close(client, upstream, reset=False)

    def _pump_down(self, client: socket.socket, upstream: socket.socket, reset_at: int | None) -> None:
        """Server->client: raw bytes; resets both sides once ``reset_at`` bytes have gone through."""
        sent = 0
        try:
            while data := upstream.recv(_CHUNK):
                if reset_at is not None and sent + len(data) >= reset_at:
                    client.sendall(data[: reset_at - sent])
                    _wait_acked(client)
                    self._fire()
                    self._close(client, upstream, reset=True)
                    return
                client.sendall(data)
                sent += len(data)
            client.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(client, upstream, reset=True)

    def _pump_up(self, client: socket.socket, upstream: socket.socket) -> None:
        """Client->server: request by request while the stream looks like HTTP/1.x, raw bytes otherwise."""
        reader = _Reader(client)
        try:
            step = _Next.REQUEST if self._looks_like_http(reader) else _Next.RAW
            while step is _Next.REQUEST:
                step = self._forward_request(reader, upstream)
            if step is _Next.CLOSED:
                return
            while reader.buf or reader.fill():
                upstream.sendall(reader.take())
            upstream.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(client, upstream, reset=True)

    @staticmethod
    def _looks_like_http(reader: _Reader) -> bool:
        """Reads until the first bytes tell an HTTP request line (``GET /...``) from anything else."""
        while len(reader.buf) < 11 and re.fullmatch(rb"[A-Z]*", reader.buf):
            if not reader.fill():
                return False
        return bool(_METHOD.match(reader.buf))

    def _forward_request(self, reader: _Reader, upstream: socket.socket) -> _Next:
        """Forwards one request, or answers it with an armed canned response."""
        while b"\r\n\r\n" not in reader.buf:
            if len(reader.buf) > _MAX_HEAD or not reader.fill():
                return _Next.RAW
        head = reader.take(reader.buf.index(b"\r\n\r\n") + 4)
        lines = head.decode("latin-1").split("\r\n")[1:]
        fields = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        length_field = fields.get("content-length", "0")
        length = int(length_field) if length_field.isdigit() else 0
        with self._lock:
            canned = self._http_errors.popleft() if self._http_errors else None
        if canned is not None:
            if fields.get("expect", "").lower() != "100-continue":
                reader.relay(length, lambda _: None)  # unread request bytes would turn our close into a reset
            reader.sock.sendall(canned)
            self._fire()
            self._close(reader.sock, upstream, reset=False)
            return _Next.CLOSED
        upstream.sendall(head)
        if "chunked" in fields.get("transfer-encoding", "").lower():
            return _Next.RAW
        return _Next.REQUEST if reader.relay(length, upstream.sendall) else _Next.RAW
