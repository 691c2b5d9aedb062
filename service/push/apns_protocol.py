"""aioapns 4.0 adapted for long-lived connections: absolute expirations, HTTP/2 repairs, one provider token.

`ExpiringRequest` makes `apns-expiration` the round's deadline; `ApnsProtocol` repairs aioapns'
HTTP/2 client protocol where it would hang or leak and makes every connection sign with the
sender's shared `ProviderToken`; `protocol_for` makes the protocol class for one endpoint. Only
`service/push/apns.py` uses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, ClassVar

from aioapns import NotificationRequest
from aioapns.common import NotificationResult
from aioapns.connection import APNsTLSClientProtocol
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError

from service.push.apns_token import ProviderToken


class ExpiringRequest(NotificationRequest):
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


class ApnsProtocol(APNsTLSClientProtocol):
    """aioapns' HTTP/2 client protocol with three repairs, confined to our connections.

    1. It returns flow-control credit for response bodies. aioapns never does, so after about
       64 KiB of error bodies (about a thousand 410s) on one connection the server may send no more
       and every later error answer hangs (aioapns pull request #75, still open).
    2. It forgets the stream of each finished request: aioapns keeps one entry per successful push
       until the connection closes, which under steady traffic is never.
    3. When a send is cancelled (our timeout), it resets the stream, frees its slot and forgets
       the request; aioapns would keep the slot taken and resolve the cancelled future when a late
       answer came, and the InvalidStateError that raises there kills the whole connection.

    Besides, every connection signs its requests with the sender's shared `PROVIDER_TOKEN`
    instead of the token provider aioapns makes per connection (see `apns_token.py`).
    """

    PROVIDER_TOKEN: ClassVar[ProviderToken]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.auth_provider = self.PROVIDER_TOKEN

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


def protocol_for(host: str, port: int, token: ProviderToken) -> type[ApnsProtocol]:
    """A protocol class of our own for one endpoint: aioapns reads host and port from it."""
    return type(
        f"ApnsProtocol[{host}:{port}]",
        (ApnsProtocol,),
        {"APNS_SERVER": host, "APNS_PORT": port, "PROVIDER_TOKEN": token},
    )
