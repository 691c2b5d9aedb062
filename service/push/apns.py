"""The APNs adapter: sends a `Push` with aioapns (token auth) and maps Apple's answer to a `PushOutcome`.

The pure half (`build_notification`, `classify_response`, `parse_endpoint`) turns a `Push` into
the APNs headers and payload and Apple's status and reason into an outcome. `ApnsSender` is the
shell: one aioapns client per environment (production, sandbox), chosen by
`Push.apns_environment`, each pointed at its endpoint through a protocol class of its own, so no
global state is touched; an optional extra CA on top of the default trust store; a per-send
timeout. `_ApnsProtocol` repairs three things in aioapns 4.0's HTTP/2 handling that would otherwise
hang or leak on a long-lived connection; its docstring says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import structlog
from aioapns import APNs, NotificationRequest, PushType
from aioapns.common import NotificationResult
from aioapns.connection import APNsTLSClientProtocol
from aioapns.exceptions import ConnectionClosed, MaxAttemptsExceeded
from aioapns.exceptions import ConnectionError as ApnsConnectionError
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError

from service.errors import PushConfigurationError
from service.push.base import ApnsEnvironment, OutcomeKind, Provider, Push, PushKind, PushOutcome

log = structlog.get_logger(__name__)

APPLE_PRODUCTION_URL: Final = "https://api.push.apple.com:443"
APPLE_SANDBOX_URL: Final = "https://api.sandbox.push.apple.com:443"
PRIORITY_IMMEDIATE: Final = 10
PRIORITY_POWER_SAVING: Final = 5
_TOKEN_DEAD_400: Final = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic"})


# -- pure ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApnsNotification:
    """What goes on the wire for one push, minus the device token and credentials."""

    payload: dict[str, Any]
    push_type: PushType
    priority: int
    collapse_id: str
    expiration_s: int
    """`apns-expiration`: absolute UTC epoch seconds."""


def build_notification(push: Push) -> ApnsNotification:
    """The APNs notification for `push`; ValueError if the push cannot be expressed."""
    if push.provider is not Provider.APNS:
        raise ValueError(f"not an APNs push: {push.provider}")
    if "aps" in push.data:
        raise ValueError("data must not use the key 'aps', which APNs reserves")
    expiration_s = push.expires_at_ms // 1000
    if push.kind is PushKind.HANDOFF_CLOSED:
        # A background push: no alert; the app wakes (as iOS allows) and clears the request.
        return ApnsNotification(
            {"aps": {"content-available": 1}, **push.data},
            PushType.BACKGROUND,
            PRIORITY_POWER_SAVING,
            push.collapse_id,
            expiration_s,
        )
    alert = {key: value for key, value in (("title", push.title), ("body", push.body)) if value is not None}
    if not alert:
        raise ValueError("a handoff request needs a title or a body")
    return ApnsNotification(
        {"aps": {"alert": alert, "sound": "default"}, **push.data},
        PushType.ALERT,
        PRIORITY_IMMEDIATE,
        push.collapse_id,
        expiration_s,
    )


def classify_response(status: int, reason: str | None) -> PushOutcome:
    """Map Apple's status and reason onto an outcome; `reason` is Apple's reason string."""
    if status == 200:
        return PushOutcome(OutcomeKind.DELIVERED)
    reason = reason or f"HTTP_{status}"
    if status == 410 or (status == 400 and reason in _TOKEN_DEAD_400):
        return PushOutcome(OutcomeKind.TOKEN_DEAD, reason)
    if status == 429 or status >= 500:
        return PushOutcome(OutcomeKind.RETRY_LATER, reason)
    return PushOutcome(OutcomeKind.REQUEST_BUG, reason)


def parse_endpoint(url: str) -> tuple[str, int]:
    """(host, port) of an `https://host[:port]` endpoint; ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.path not in {"", "/"}:
        raise ValueError(f"APNs endpoint must look like {APPLE_PRODUCTION_URL}: {url!r}")
    return parts.hostname, parts.port or 443


# -- shell --------------------------------------------------------------------------------------------


class _ExpiringRequest(NotificationRequest):
    """A NotificationRequest whose `apns-expiration` header is an absolute deadline.

    aioapns takes only a relative `time_to_live` and writes `int(time.time()) + time_to_live` when
    it builds the headers, possibly after waiting for a connection. Computing the TTL at that
    moment makes the header equal the deadline (it can come out one second early, when the two
    `time.time()` calls straddle a second boundary, never late).
    """

    __slots__ = ("expires_at_s",)

    def __init__(self, *, expires_at_s: int, **kwargs: Any) -> None:
        self.expires_at_s = expires_at_s
        super().__init__(**kwargs)

    @property
    def time_to_live(self) -> int:
        return self.expires_at_s - int(time.time())

    @time_to_live.setter
    def time_to_live(self, _: object) -> None:
        """Ignore what the NotificationRequest constructor assigns: the deadline decides."""


class _ApnsProtocol(APNsTLSClientProtocol):
    """aioapns' HTTP/2 client protocol with three repairs, confined to our connections.

    1. It returns flow-control credit for response bodies. aioapns never does, so after about
       64 KiB of error bodies (about a thousand 410s) on one connection the server may send no more
       and every later error answer hangs (aioapns pull request #75, still open).
    2. It forgets the stream of each finished request: aioapns keeps one entry per successful push
       until the connection closes, which under steady traffic is never.
    3. When a send is cancelled (our timeout), it resets the stream, frees its slot and forgets
       the request; aioapns would keep the slot taken and resolve the cancelled future when a late
       answer came, and the InvalidStateError that raises there kills the whole connection.
    """

    def on_response_received(self, headers: dict[bytes, bytes]) -> None:
        if not self._abandoned(headers.get(b"apns-id", b"").decode()):
            super().on_response_received(headers)

    def on_data_received(self, data: bytes, stream_id: int) -> None:
        self.conn.acknowledge_received_data(len(data), stream_id)  # APNs sends no padding
        if not self._abandoned(self.request_streams.get(stream_id)):
            super().on_data_received(data, stream_id)

    def on_stream_ended(self, stream_id: int) -> None:
        super().on_stream_ended(stream_id)
        self.request_streams.pop(stream_id, None)

    def connection_lost(self, exc: Exception | None) -> None:
        for notification_id in [n for n, future in self.requests.items() if future.done()]:
            del self.requests[notification_id]
        super().connection_lost(exc)

    async def send_notification(self, request: NotificationRequest) -> NotificationResult:
        try:
            return await super().send_notification(request)
        except asyncio.CancelledError:
            self._abandon(request.notification_id)
            raise

    def _abandoned(self, notification_id: str | None) -> bool:
        future = self.requests.get(notification_id) if notification_id else None
        return future is not None and future.done()

    def _abandon(self, notification_id: str) -> None:
        self.requests.pop(notification_id, None)
        self.request_statuses.pop(notification_id, None)
        stream_id = next((s for s, n in self.request_streams.items() if n == notification_id), None)
        if stream_id is None:  # still waiting for a free stream, or already answered
            return
        del self.request_streams[stream_id]
        # ProtocolError: the server reset it first (aioapns ignores that event, never frees the slot).
        with contextlib.suppress(ProtocolError):
            self.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
        if self.transport is not None and not self.transport.is_closing():
            self.flush()
        self.free_channels.release()


def _protocol_for(host: str, port: int) -> type[_ApnsProtocol]:
    """A protocol class of our own for one endpoint: aioapns reads host and port from it."""
    return type(f"_ApnsProtocol[{host}:{port}]", (_ApnsProtocol,), {"APNS_SERVER": host, "APNS_PORT": port})


async def _ignore_error(_request: NotificationRequest, _result: NotificationResult) -> None:
    """Replaces aioapns' error log line per failed push; `ApnsSender` logs outcomes itself."""


class ApnsSender:
    """`PushSender` for APNs. Build it with `await ApnsSender.create(...)`; `close()` when done."""

    def __init__(self, *, clients: dict[ApnsEnvironment, APNs], timeout_s: float) -> None:
        self._clients = clients
        self._timeout_s = timeout_s

    @classmethod
    async def create(  # noqa: PLR0913 - the settings of one provider, all keyword-only
        cls,
        *,
        key_file: Path,
        key_id: str,
        team_id: str,
        topic: str,
        production_url: str = APPLE_PRODUCTION_URL,
        sandbox_url: str = APPLE_SANDBOX_URL,
        extra_ca_file: Path | None = None,
        timeout_s: float = 10.0,
        max_connections: int = 10,
        max_connection_attempts: int = 3,
    ) -> ApnsSender:
        """A sender signing with the .p8 auth key in `key_file` for the app `topic` (its bundle id).

        `extra_ca_file` (PEM) is trusted in addition to the system's CAs: for local fakes.
        `max_connection_attempts` is how often aioapns tries a push over a fresh connection when
        one breaks under it, within the same `timeout_s`.
        """
        try:
            key_pem = await asyncio.to_thread(key_file.read_text)
            key = load_pem_private_key(key_pem.encode(), password=None)
            endpoints = {
                ApnsEnvironment.PRODUCTION: parse_endpoint(production_url),
                ApnsEnvironment.SANDBOX: parse_endpoint(sandbox_url),
            }
            context = ssl.create_default_context()
            if extra_ca_file is not None:
                context.load_verify_locations(cafile=str(extra_ca_file))
        except (OSError, ValueError, TypeError) as error:
            raise PushConfigurationError(
                f"APNs settings unusable: {type(error).__name__}: {error}"
            ) from error
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise PushConfigurationError(f"APNs auth key in {key_file} is not an EC P-256 key")
        if timeout_s <= 0:
            raise PushConfigurationError(f"APNs send timeout must be positive: {timeout_s}")
        context.set_alpn_protocols(["h2"])
        clients: dict[ApnsEnvironment, APNs] = {}
        for environment, (host, port) in endpoints.items():
            client = APNs(
                key=key_pem,
                key_id=key_id,
                team_id=team_id,
                topic=topic,
                max_connections=max_connections,
                max_connection_attempts=max_connection_attempts,
                ssl_context=context,
                err_func=_ignore_error,
            )
            # aioapns takes host and port from the pool's protocol class; this pool gets its own.
            client.pool.protocol_class = _protocol_for(host, port)
            clients[environment] = client
        log.info("apns_sender_ready", topic=topic, production=production_url, sandbox=sandbox_url)
        return cls(clients=clients, timeout_s=timeout_s)

    @property
    def provider(self) -> Provider:
        return Provider.APNS

    async def send(self, push: Push) -> PushOutcome:
        outcome = await self._send(push)
        _log_outcome(push, outcome)
        return outcome

    async def _send(self, push: Push) -> PushOutcome:
        try:
            notification = build_notification(push)
        except ValueError:
            return PushOutcome(OutcomeKind.REQUEST_BUG, "invalid_push")
        request = _ExpiringRequest(
            expires_at_s=notification.expiration_s,
            device_token=push.token,
            message=notification.payload,
            priority=notification.priority,
            collapse_key=notification.collapse_id,
            push_type=notification.push_type,
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await self._clients[push.apns_environment].send_notification(request)
        except TimeoutError:
            return PushOutcome(OutcomeKind.RETRY_LATER, "timeout")
        except (MaxAttemptsExceeded, ApnsConnectionError, ConnectionClosed, OSError, ProtocolError):
            return PushOutcome(OutcomeKind.RETRY_LATER, "connection_error")
        return classify_response(int(result.status), result.description)

    async def close(self) -> None:
        for client in self._clients.values():
            client.pool.close()


def _log_outcome(push: Push, outcome: PushOutcome) -> None:
    fields = {
        "provider": Provider.APNS.value,
        "environment": push.apns_environment.value,
        "kind": push.kind.value,
        "collapse_id": push.collapse_id,
    }
    if outcome.kind is OutcomeKind.DELIVERED:
        log.debug("push_delivered", **fields)
    elif outcome.kind is OutcomeKind.REQUEST_BUG:
        log.warning("push_failed", outcome=outcome.kind.value, reason=outcome.reason, **fields)
    else:
        log.info("push_failed", outcome=outcome.kind.value, reason=outcome.reason, **fields)
