"""TLS in front of a fake's handlers, as Google's front ends serve FCM: ALPN picks HTTP/2 ("h2")
or falls back to HTTP/1.1 per connection, and every accepted connection is counted.

`TlsFront.serve` listens with TLS; once a connection's handshake completes, the protocol ALPN
selected decides who speaks on it: `h2` goes to `H2Server` (a small HTTP/2 server built on the
`h2` library, honouring flow control both ways), anything else (`http/1.1`, or a client sending
no ALPN) to an aiohttp server's own HTTP/1.1 request handler, so the fake's aiohttp routes serve
HTTP/1.1 unchanged. HTTP/2 requests go to one `H2Handler`: (method, path, headers, body) ->
(status, headers, body), or None to drop the connection.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError, StreamClosedError
from h2.settings import SettingCodes, Settings

from devtools.credentials import TlsFiles

H2Reply = tuple[int, list[tuple[str, str]], bytes]
H2Handler = Callable[[str, str, dict[str, str], bytes], Awaitable[H2Reply | None]]


@dataclass
class ConnectionStats:
    """What the front saw, for benchmarks and tests (updated on the fake's thread)."""

    tls_handshakes: int = 0
    """Completed TLS handshakes: one per accepted connection (no session resumption is offered)."""
    protocols: Counter[str] = field(default_factory=Counter)
    """Connections by the protocol ALPN selected ("h2", "http/1.1", "none")."""
    open: int = 0
    peak_open: int = 0
    h2_streams: int = 0
    """HTTP/2 requests served."""
    token_connections: int = 0
    """Connections whose first request was for the token endpoint (`/token`): a client's OAuth2
    fetch, as opposed to its sends."""


@dataclass(slots=True)
class _Stream:
    headers: dict[str, str]
    body: bytearray = field(default_factory=bytearray)


class H2Server(asyncio.Protocol):
    """One HTTP/2 server connection handing each complete request to `handler`."""

    def __init__(self, front: TlsFront) -> None:
        self.front = front
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.conn.local_settings = Settings(
            client=False, initial_values={SettingCodes.MAX_CONCURRENT_STREAMS: front.max_concurrent_streams}
        )
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _Stream] = {}
        self.pending_bodies: dict[int, bytes] = {}
        self.first_path: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError:
            self.flush()
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived) and event.stream_id is not None:
                self.streams[event.stream_id] = _Stream(dict(event.headers or []))  # type: ignore[arg-type]
                if self.first_path is None:
                    self.first_path = self.streams[event.stream_id].headers.get(":path", "")
                    self.front.stats.token_connections += self.first_path == "/token"
            elif isinstance(event, DataReceived) and event.stream_id in self.streams:
                self.streams[event.stream_id].body += event.data or b""
                self.conn.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
            elif isinstance(event, StreamEnded) and event.stream_id in self.streams:
                self.front.spawn(self.handle(event.stream_id))
            elif isinstance(event, StreamReset) and event.stream_id is not None:
                self.streams.pop(event.stream_id, None)
                self.pending_bodies.pop(event.stream_id, None)
            elif isinstance(event, WindowUpdated):
                self.send_pending_bodies()
            elif isinstance(event, ConnectionTerminated) and self.transport is not None:
                self.transport.close()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - asyncio's signature
        self.front.closed(self)

    async def handle(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id)
        self.front.stats.h2_streams += 1
        headers = stream.headers
        reply = await self.front.h2_handler(
            headers.get(":method", ""), headers.get(":path", ""), headers, bytes(stream.body)
        )
        if self.transport is None or self.transport.is_closing():
            return
        if reply is None:
            self.transport.abort()
            return
        status, response_headers, body = reply
        try:
            self.conn.send_headers(
                stream_id,
                [(":status", str(status)), ("content-length", str(len(body))), *response_headers],
                end_stream=not body,
            )
            if body:
                self.pending_bodies[stream_id] = body
                self.send_pending_bodies()
        except StreamClosedError:
            self.pending_bodies.pop(stream_id, None)
        self.flush()

    def send_pending_bodies(self) -> None:
        """Send the bodies the client's flow-control windows have room for; the rest wait."""
        for stream_id, body in list(self.pending_bodies.items()):
            try:
                window = min(
                    self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size
                )
                if window <= 0:
                    continue
                chunk, rest = body[:window], body[window:]
                self.conn.send_data(stream_id, chunk, end_stream=not rest)
            except StreamClosedError:
                rest = b""
            if rest:
                self.pending_bodies[stream_id] = rest
            else:
                del self.pending_bodies[stream_id]


class _AlpnDispatch(asyncio.Protocol):
    """Placeholder protocol for a new connection: after the handshake, hands the transport to
    the protocol ALPN selected."""

    def __init__(self, front: TlsFront) -> None:
        self.front = front

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        protocol = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        stats = self.front.stats
        stats.tls_handshakes += 1
        stats.protocols[protocol or "none"] += 1
        stats.open += 1
        stats.peak_open = max(stats.peak_open, stats.open)
        inner: asyncio.BaseProtocol
        if protocol == "h2":
            inner = H2Server(self.front)
            self.front.h2_connections.add(inner)
        else:
            inner = _Http1(self.front, self.front.http1_factory())
        transport.set_protocol(inner)
        inner.connection_made(transport)


class _Http1(asyncio.Protocol):
    """aiohttp's HTTP/1.1 request handler, with the connection counted when it closes."""

    def __init__(self, front: TlsFront, handler: Any) -> None:
        self.front = front
        self.handler = handler
        self.seen_request = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self.seen_request:
            self.seen_request = True
            self.front.stats.token_connections += data.startswith(b"POST /token ")
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return bool(self.handler.eof_received())

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.handler.connection_lost(exc)
        self.front.closed(self)


class TlsFront:
    """Serves one aiohttp app (HTTP/1.1) and one `H2Handler` (HTTP/2) behind TLS with ALPN."""

    def __init__(self, tls: TlsFiles, h2_handler: H2Handler, *, max_concurrent_streams: int = 100) -> None:
        self.tls = tls
        self.h2_handler = h2_handler
        self.max_concurrent_streams = max_concurrent_streams
        self.stats = ConnectionStats()
        self.h2_connections: set[H2Server] = set()
        self.http1_factory: Callable[[], Any] = lambda: None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls.server_cert, self.tls.server_key)
        context.set_alpn_protocols(["h2", "http/1.1"])
        return context

    async def serve(self, runner: web.AppRunner) -> int:
        """Listen on a free port of 127.0.0.1 (the fake's loop); `runner` is set up already."""
        server = runner.server
        assert server is not None
        self.http1_factory = server
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _AlpnDispatch(self), "127.0.0.1", 0, ssl=self.ssl_context()
        )
        return int(self._server.sockets[0].getsockname()[1])

    def closed(self, protocol: asyncio.BaseProtocol) -> None:
        self.stats.open -= 1
        if isinstance(protocol, H2Server):
            self.h2_connections.discard(protocol)

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop listening, drop HTTP/2 connections and their handlers (the aiohttp runner's
        cleanup closes the HTTP/1.1 ones)."""
        if self._server is not None:
            self._server.close()
        for connection in list(self.h2_connections):
            if connection.transport is not None:
                connection.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
