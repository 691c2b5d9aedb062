"""The APNs adapter: sends a `Push` with aioapns (token auth) and maps Apple's answer to a `PushOutcome`.

The pure half (`build_notification`, `classify_response`, `settle_environment`, `parse_endpoint`)
lives in apns_payload.py: it turns a `Push` into the APNs headers and payload and Apple's answers
into an outcome. `ApnsSender`, here, is the shell: one aioapns client per environment
(production, sandbox), chosen by `Push.apns_environment`, each pointed at its endpoint through a
protocol class of its own, so no global state is touched; one provider token for all its
connections (`apns_token.py`); an optional extra CA on top of the default trust store; a per-send
timeout. A `BadDeviceToken` is tried once
in the other environment, since that is also Apple's answer for a token of the other environment.
`apns_protocol.py` repairs three things in aioapns 4.0's HTTP/2 handling that would otherwise hang
or leak on a long-lived connection.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import OrderedDict
from pathlib import Path
from typing import Final

import structlog
from aioapns import APNs, NotificationRequest
from aioapns.common import NotificationResult
from aioapns.exceptions import ConnectionClosed, MaxAttemptsExceeded
from aioapns.exceptions import ConnectionError as ApnsConnectionError
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from h2.exceptions import ProtocolError

from service.clock import Clock, SystemClock
from service.domain.push import (
    ApnsEnvironment,
    AuthHealth,
    OutcomeKind,
    Provider,
    Push,
    PushOutcome,
)
from service.errors import PushConfigurationError
from service.push.apns_payload import (
    APPLE_PRODUCTION_URL,
    APPLE_SANDBOX_URL,
    ApnsNotification,
    ApnsStyle,
    build_notification,
    classify_response,
    is_bad_device_token,
    other_environment,
    parse_endpoint,
    settle_environment,
)
from service.push.apns_protocol import ExpiringRequest, protocol_for
from service.push.apns_token import ProviderToken
from service.push.limits import PayloadTooLargeError

log = structlog.get_logger(__name__)

_PROVIDER_TOKEN_REFUSALS: Final = frozenset(
    {"ExpiredProviderToken", "InvalidProviderToken", "MissingProviderToken"}
)
_LEARNED_ENVIRONMENTS: Final = 10_000
"""How many tokens found in the other environment the sender remembers; the oldest goes first."""


async def _ignore_error(_request: NotificationRequest, _result: NotificationResult) -> None:
    """Replaces aioapns' error log line per failed push: the fan-out logs outcomes (push_outcomes.py)."""


class ApnsSender:
    """`PushSender` for APNs. Build it with `await ApnsSender.create(...)`; `close()` when done."""

    def __init__(
        self,
        *,
        clients: dict[ApnsEnvironment, APNs],
        provider_token: ProviderToken,
        timeout_s: float,
        style: ApnsStyle | None = None,
    ) -> None:
        self._clients = clients
        self._style = style or ApnsStyle()
        self.provider_token = provider_token
        self._timeout_s = timeout_s
        self._learned: OrderedDict[str, ApnsEnvironment] = OrderedDict()
        """Tokens found in the other environment than their push named -> where they belong."""
        self._auth = AuthHealth()

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
        clock: Clock | None = None,
        style: ApnsStyle | None = None,
    ) -> ApnsSender:
        """A sender signing with the .p8 auth key in `key_file` for the app `topic` (its bundle id).

        `extra_ca_file` (PEM) is trusted in addition to the system's CAs: for local fakes.
        `max_connection_attempts` is how often aioapns tries a push over a fresh connection when
        one breaks under it, within the same `timeout_s`. `style`: how the pushes look on the
        phone (interruption level, sound, closing update as an alert or a background push).
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
        token = ProviderToken(key_pem=key_pem, key_id=key_id, team_id=team_id, clock=clock or SystemClock())
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
            client.pool.protocol_class = protocol_for(host, port, token)
            clients[environment] = client
        log.info("apns_sender_ready", topic=topic, production=production_url, sandbox=sandbox_url)
        return cls(clients=clients, provider_token=token, timeout_s=timeout_s, style=style)

    @property
    def provider(self) -> Provider:
        return Provider.APNS

    @property
    def auth(self) -> AuthHealth:
        return self._auth

    async def send(self, push: Push) -> PushOutcome:
        try:
            notification = build_notification(push, self._style)
        except PayloadTooLargeError:
            return PushOutcome(OutcomeKind.REQUEST_BUG, "payload_too_large")
        except ValueError:
            return PushOutcome(OutcomeKind.REQUEST_BUG, "invalid_push")
        tried = self._learned.get(push.token, push.apns_environment)
        first = await self._request(tried, push, notification)
        retried = None
        if is_bad_device_token(first):
            retried = await self._request(other_environment(tried), push, notification)
        outcome = settle_environment(push.apns_environment, tried, first, retried)
        if outcome.actual_environment is not None:
            self._learned[push.token] = outcome.actual_environment
            self._learned.move_to_end(push.token)
            while len(self._learned) > _LEARNED_ENVIRONMENTS:
                self._learned.popitem(last=False)
        elif outcome.kind in {OutcomeKind.DELIVERED, OutcomeKind.TOKEN_DEAD}:
            self._learned.pop(push.token, None)
        return outcome

    async def _request(
        self, environment: ApnsEnvironment, push: Push, notification: ApnsNotification
    ) -> PushOutcome:
        """Apple's answer from `environment`, or the transport failure, as an outcome."""
        request = ExpiringRequest(
            expires_at_s=notification.expiration_s,
            device_token=push.token,
            message=notification.payload,
            priority=notification.priority,
            collapse_key=notification.collapse_id,
            push_type=notification.push_type,
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await self._clients[environment].send_notification(request)
        except TimeoutError:
            return PushOutcome(OutcomeKind.RETRY_LATER, "timeout")
        except (MaxAttemptsExceeded, ApnsConnectionError, ConnectionClosed, OSError, ProtocolError):
            return PushOutcome(OutcomeKind.RETRY_LATER, "connection_error")
        outcome = classify_response(int(result.status), result.description)
        self._track_auth(outcome)
        return outcome

    def _track_auth(self, outcome: PushOutcome) -> None:
        """A 403 about the provider token counts against it; a verdict on a device proves it works."""
        auth = self._auth
        if outcome.reason in _PROVIDER_TOKEN_REFUSALS:
            self._auth = AuthHealth(auth.failures_total + 1, auth.consecutive_failures + 1)
        elif auth.consecutive_failures and outcome.kind in {OutcomeKind.DELIVERED, OutcomeKind.TOKEN_DEAD}:
            self._auth = AuthHealth(auth.failures_total, 0)

    async def close(self) -> None:
        for client in self._clients.values():
            client.pool.close()
