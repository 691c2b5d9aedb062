"""A protocol-level fake of Apple's push service (APNs): HTTP/2 over TLS, token-based auth.

aioapns talks to it for real. Connections are TLS with ALPN "h2" and the generated server
certificate (see `devtools.credentials`); the fake advertises MAX_CONCURRENT_STREAMS and honours
HTTP/2 flow control both ways. Each `POST /3/device/<token>` must carry `authorization: bearer
<ES256 JWT>` signed by the .p8 key (kid = key id, iss = team id, iat within the hour) and
`apns-topic` equal to the configured topic; `apns-push-type`, `apns-priority`, `apns-expiration`,
`apns-collapse-id` (at most 64 bytes) and the payload (at most 4096 bytes) are checked as Apple
does, and so is the push type against the payload (an `alert` push carries an alert; a
`background` push carries none, nor sound or badge, and has priority 5) and `interruption-level`
(one of Apple's four spellings), the alert's texts and loc keys are strings and its loc args
arrays of strings (`BadPayload`, the fake's own reason: Apple documents no answer for a payload
that breaks its schema, and a test must catch one), and the answer echoes `apns-id`: 200 with no
body, or a status with `{"reason": ...}` (410 adds `timestamp`).

Accepted notifications land in `notifications` with the fake's `name`, so one fake can play
production and another sandbox; the device token of every request, answered or not, lands in
`requests`. Faults: per device token (`set_fault`: status + reason, delay, hang, drop the
connection), for every request (`set_outage`), and a global added latency. The server runs on
127.0.0.1 on a free port in its own thread (see `devtools.fakes`).
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
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

from devtools.credentials import GeneratedCredentials
from devtools.fakes import Recorder, ThreadedFake

MAX_PAYLOAD_BYTES = 4096
MAX_COLLAPSE_ID_BYTES = 64
_PUSH_TYPES = frozenset(
    {"alert", "background", "voip", "complication", "fileprovider", "mdm", "liveactivity"}
)
_INTERRUPTION_LEVELS = frozenset({"passive", "active", "time-sensitive", "critical"})
_NOT_IN_BACKGROUND = ("alert", "sound", "badge")
_ALERT_STRINGS = frozenset(
    {"title", "subtitle", "body", "launch-image", "title-loc-key", "subtitle-loc-key", "loc-key"}
)
_ALERT_ARRAYS = frozenset({"title-loc-args", "subtitle-loc-args", "loc-args"})
_TOKEN = re.compile(r"^/3/device/([0-9A-Fa-f]+)$")
_UUID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")


def _aps_problem(push_type: str, priority: str, aps: dict[str, Any]) -> tuple[int, str] | None:
    """What Apple refuses in `aps` for this push type and priority, or None."""
    if push_type == "alert" and not aps.get("alert"):
        return 400, "InvalidPushType"
    if push_type == "background":
        if any(key in aps for key in _NOT_IN_BACKGROUND) or aps.get("content-available") != 1:
            return 400, "InvalidPushType"
        if priority != "5":
            return 400, "BadPriority"
    if "interruption-level" in aps and aps["interruption-level"] not in _INTERRUPTION_LEVELS:
        return 400, "BadPayload"  # not one of Apple's reasons: Apple documents none for this case
    if _alert_problem(aps.get("alert")):
        return 400, "BadPayload"  # the fake's own reason, as above
    return None


def _alert_problem(alert: object) -> bool:
    """Whether `aps.alert` breaks Apple's schema: a string, or a dictionary whose texts and loc
    keys are strings and whose loc args are arrays of strings."""
    if alert is None or isinstance(alert, str):
        return False
    if not isinstance(alert, dict):
        return True
    for key, value in alert.items():
        if key in _ALERT_ARRAYS:
            if not isinstance(value, list) or not all(isinstance(arg, str) for arg in value):
                return True
        elif key in _ALERT_STRINGS and not isinstance(value, str):
            return True
    return False


@dataclass(frozen=True, slots=True)
class ApnsFault:
    """What the fake does instead of accepting a notification."""

    status: int | None = None
    """Answer this status with `reason` (410 adds a timestamp); None answers normally."""
    reason: str | None = None
    delay_s: float = 0.0
    hang: bool = False
    """Never answer (the client has to time out or reset the stream)."""
    drop_connection: bool = False
    """Abort the TCP connection when this request arrives."""


@dataclass(frozen=True, slots=True)
class ReceivedNotification:
    """One accepted notification: the APNs headers (without credentials) and the decoded payload."""

    fake: str
    token: str
    headers: dict[str, str]
    payload: dict[str, Any]
    received_at: float
    """`time.monotonic()` when the request was complete."""

    @property
    def collapse_id(self) -> str | None:
        return self.headers.get("apns-collapse-id")

    @property
    def expiration(self) -> int | None:
        value = self.headers.get("apns-expiration")
        return int(value) if value is not None else None


@dataclass(slots=True)
class _Stream:
    headers: dict[str, str]
    body: bytearray = field(default_factory=bytearray)


class _Connection(asyncio.Protocol):
    """One HTTP/2 server connection."""

    def __init__(self, fake: ApnsFake) -> None:
        self.fake = fake
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.conn.local_settings = Settings(
            client=False, initial_values={SettingCodes.MAX_CONCURRENT_STREAMS: fake.max_concurrent_streams}
        )
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _Stream] = {}
        self.unanswered: set[int] = set()
        self.pending_bodies: dict[int, bytes] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() not in {None, "h2"}:
            transport.close()
            return
        self.fake.connections.add(self)
        self.fake.connections_accepted += 1
        self.conn.initiate_connection()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - asyncio's signature
        self.fake.connections.discard(self)

    def flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError:
            self.fake.protocol_errors += 1
            self.flush()
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived) and event.stream_id is not None:
                self.streams[event.stream_id] = _Stream(dict(event.headers or []))  # type: ignore[arg-type]
                self.unanswered.add(event.stream_id)
                self.fake.peak_streams = max(self.fake.peak_streams, len(self.unanswered))
            elif isinstance(event, DataReceived) and event.stream_id is not None:
                self.streams[event.stream_id].body += event.data or b""
                self.conn.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
            elif isinstance(event, StreamEnded) and event.stream_id in self.streams:
                self.fake.spawn(self.handle(event.stream_id))
            elif isinstance(event, StreamReset) and event.stream_id is not None:
                self.fake.resets.append(event.stream_id)
                self.forget(event.stream_id)
            elif isinstance(event, WindowUpdated):
                self.send_pending_bodies()
            elif isinstance(event, ConnectionTerminated) and self.transport is not None:
                self.transport.close()
        self.flush()

    def forget(self, stream_id: int) -> None:
        self.streams.pop(stream_id, None)
        self.unanswered.discard(stream_id)
        self.pending_bodies.pop(stream_id, None)

    async def handle(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id)
        answer = await self.fake.answer(stream.headers, bytes(stream.body), self)
        if answer is None or stream_id not in self.unanswered or self.transport is None:
            return
        self.unanswered.discard(stream_id)
        status, reason = answer
        apns_id = stream.headers.get("apns-id") or str(uuid.uuid4())
        headers = [(":status", str(status)), ("apns-id", apns_id)]
        try:
            if status == 200:
                self.conn.send_headers(stream_id, [*headers, ("apns-unique-id", str(uuid.uuid4()))], True)
            else:
                body: dict[str, Any] = {"reason": reason}
                if status == 410:
                    body["timestamp"] = time.time_ns() // 1_000_000
                self.conn.send_headers(stream_id, [*headers, ("content-type", "application/json")])
                self.pending_bodies[stream_id] = json.dumps(body).encode()
                self.send_pending_bodies()
        except StreamClosedError:
            self.forget(stream_id)
        self.flush()

    def send_pending_bodies(self) -> None:
        """Send error bodies the client's flow-control windows have room for; the rest wait."""
        for stream_id, body in list(self.pending_bodies.items()):
            try:
                if self.conn.local_flow_control_window(stream_id) < len(body):
                    continue
                self.conn.send_data(stream_id, body, end_stream=True)
            except StreamClosedError:
                pass
            del self.pending_bodies[stream_id]


class ApnsFake(ThreadedFake):
    """An APNs endpoint on 127.0.0.1; `name` tags what it records ("production", "sandbox")."""

    def __init__(
        self,
        credentials: GeneratedCredentials,
        *,
        name: str,
        topic: str,
        latency_s: float = 0.0,
        max_concurrent_streams: int = 1000,
    ) -> None:
        """Serve with `credentials`' server certificate; accept provider tokens of its APNs key."""
        super().__init__(f"apns-fake-{name}")
        self.name = name
        self.key_id = credentials.apns_key_id
        self.team_id = credentials.apns_team_id
        self.topic = topic
        self.latency_s = latency_s
        self.max_concurrent_streams = max_concurrent_streams
        self.notifications: Recorder[ReceivedNotification] = Recorder()
        self.requests: Recorder[str] = Recorder()
        """The device token of every complete request, as it arrives (before any fault or check)."""
        self.resets: Recorder[int] = Recorder()
        """Ids of the streams the client reset (RST_STREAM), e.g. after giving up on an answer."""
        self.connections: set[_Connection] = set()
        self.connections_accepted = 0
        self.peak_streams = 0
        """The most requests left unanswered at once on one connection."""
        self.protocol_errors = 0
        """HTTP/2 protocol violations by clients (e.g. more streams than advertised)."""
        self._credentials = credentials
        key = serialization.load_pem_private_key(credentials.apns_key.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError("the APNs auth key must be an EC key")
        self._public_key = key.public_key()
        self._verified_iat: dict[str, int] = {}
        self._faults: dict[str, ApnsFault] = {}
        self._outage: ApnsFault | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- configuration (any thread) ------------------------------------------------------------

    def set_fault(self, token: str, fault: ApnsFault) -> None:
        self._faults[token] = fault

    def clear_faults(self) -> None:
        self._faults.clear()

    def set_outage(self, fault: ApnsFault | None) -> None:
        """Apply `fault` to every request, e.g. `ApnsFault(503, "ServiceUnavailable")`; None ends it."""
        self._outage = fault

    @property
    def provider_tokens_seen(self) -> int:
        """How many distinct provider JWTs the fake has verified."""
        return len(self._verified_iat)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # -- lifecycle --------------------------------------------------------------------------------

    async def _serve(self) -> int:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self._credentials.server_cert, self._credentials.server_key)
        context.set_alpn_protocols(["h2"])
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), "127.0.0.1", 0, ssl=context)
        return int(self._server.sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- request handling (fake's thread) -----------------------------------------------------------

    async def answer(
        self, headers: dict[str, str], body: bytes, connection: _Connection
    ) -> tuple[int, str | None] | None:
        """(status, reason) for one request, or None for no answer at all."""
        token_match = _TOKEN.match(headers.get(":path", ""))
        self.requests.append(token_match.group(1) if token_match else "")
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self._outage is not None:
            return await self._apply(self._outage, connection)
        problem = self._problem(headers, body, token_match)
        if problem is not None:
            return problem
        assert token_match is not None
        token = token_match.group(1)
        fault = self._faults.get(token)
        if fault is not None and (fault.status is not None or fault.hang or fault.drop_connection):
            return await self._apply(fault, connection)
        if fault is not None and fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        public_headers = {k: v for k, v in headers.items() if not k.startswith(":") and k != "authorization"}
        self.notifications.append(
            ReceivedNotification(self.name, token, public_headers, json.loads(body), time.monotonic())
        )
        return 200, None

    async def _apply(self, fault: ApnsFault, connection: _Connection) -> tuple[int, str | None] | None:
        if fault.drop_connection:
            if connection.transport is not None:
                connection.transport.abort()
            return None
        if fault.hang:
            await asyncio.Event().wait()  # until the fake stops and cancels it
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        return fault.status or 200, fault.reason

    def _problem(  # noqa: PLR0911 - Apple's checks, in order, read best as early returns
        self, headers: dict[str, str], body: bytes, token_match: re.Match[str] | None
    ) -> tuple[int, str] | None:
        if headers.get(":method") != "POST":
            return 405, "MethodNotAllowed"
        if token_match is None:
            return (
                (400, "MissingDeviceToken")
                if headers.get(":path") == "/3/device/"
                else (400, "BadDeviceToken")
            )
        auth_problem = self._auth_problem(headers.get("authorization"))
        if auth_problem is not None:
            return 403, auth_problem
        if "apns-topic" not in headers:
            return 400, "MissingTopic"
        if headers["apns-topic"] != self.topic:
            return 400, "TopicDisallowed"
        push_type = headers.get("apns-push-type", "alert")
        if push_type not in _PUSH_TYPES:
            return 400, "InvalidPushType"
        priority = headers.get("apns-priority", "10")
        if priority not in {"1", "5", "10"} or (push_type == "background" and priority == "10"):
            return 400, "BadPriority"
        if not headers.get("apns-expiration", "0").isdigit():
            return 400, "BadExpirationDate"
        if len(headers.get("apns-collapse-id", "").encode()) > MAX_COLLAPSE_ID_BYTES:
            return 400, "BadCollapseId"
        if "apns-id" in headers and not _UUID.match(headers["apns-id"]):
            return 400, "BadMessageId"
        if not body:
            return 400, "PayloadEmpty"
        if len(body) > MAX_PAYLOAD_BYTES:
            return 413, "PayloadTooLarge"
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, "BadPayload"  # not one of Apple's reasons: real APNs is silent on this case
        if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
            return 400, "BadPayload"
        return _aps_problem(push_type, priority, payload["aps"])

    def _auth_problem(self, authorization: str | None) -> str | None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "MissingProviderToken"
        iat = self._verified_iat.get(token)
        if iat is None:
            iat = self._verify(token)
            if iat is None:
                return "InvalidProviderToken"
            self._verified_iat[token] = iat
        age_s = time.time() - iat
        if age_s < -60:
            return "InvalidProviderToken"
        return "ExpiredProviderToken" if age_s > 3600 else None

    def _verify(self, token: str) -> int | None:
        """The `iat` of a provider JWT signed by our key with our key id and team id, else None."""
        try:
            if jwt.get_unverified_header(token).get("kid") != self.key_id:
                return None
            claims = jwt.decode(
                token, self._public_key, algorithms=["ES256"], options={"require": ["iss", "iat"]}
            )
        except jwt.PyJWTError:
            return None
        return int(claims["iat"]) if claims["iss"] == self.team_id else None
