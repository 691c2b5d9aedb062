"""The APNs adapter: sends a `Push` with aioapns (token auth) and maps Apple's answer to a `PushOutcome`.

The pure half (`build_notification`, `classify_response`, `settle_environment`, `parse_endpoint`)
turns a `Push` into the APNs headers and payload and Apple's answers into an outcome. `ApnsSender`
is the shell: one aioapns client per environment (production, sandbox), chosen by
`Push.apns_environment`, each pointed at its endpoint through a protocol class of its own, so no
global state is touched; one provider token for all its connections (`apns_token.py`); an optional
extra CA on top of the default trust store; a per-send timeout. A `BadDeviceToken` is tried once
in the other environment, since that is also Apple's answer for a token of the other environment.
`apns_protocol.py` repairs three things in aioapns 4.0's HTTP/2 handling that would otherwise hang
or leak on a long-lived connection.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec
import structlog
from aioapns import APNs, NotificationRequest, PushType
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
    PushKind,
    PushOutcome,
)
from service.errors import PushConfigurationError
from service.push.apns_protocol import ExpiringRequest, protocol_for
from service.push.apns_token import ProviderToken
from service.push.limits import PayloadTooLargeError, collapse_id_for, ensure_fits, fit_texts

log = structlog.get_logger(__name__)

APPLE_PRODUCTION_URL: Final = "https://api.push.apple.com:443"
APPLE_SANDBOX_URL: Final = "https://api.sandbox.push.apple.com:443"
PRIORITY_IMMEDIATE: Final = 10
PRIORITY_POWER_SAVING: Final = 5
BAD_DEVICE_TOKEN: Final = "BadDeviceToken"  # noqa: S105 -- an APNs reason, not a credential
_TOKEN_DEAD_400: Final = frozenset({BAD_DEVICE_TOKEN, "DeviceTokenNotForTopic"})
_PROVIDER_TOKEN_REFUSALS: Final = frozenset(
    {"ExpiredProviderToken", "InvalidProviderToken", "MissingProviderToken"}
)
_json: Final = msgspec.json.Encoder()
_JSON_CONTAINERS: Final = (dict, list, tuple)
_LEARNED_ENVIRONMENTS: Final = 10_000
"""How many tokens found in the other environment the sender remembers (about 1 MB at most)."""


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
    """The APNs notification for `push`; ValueError if the push cannot be expressed.

    The collapse id is derived from the chat id so that it fits Apple's 64 bytes, and the alert's
    title and body are cut (`fit_texts`) so that the payload, as aioapns serializes it, fits
    Apple's 4096 bytes (`limits.py`); `PayloadTooLargeError` if it cannot.
    """
    if push.provider is not Provider.APNS:
        raise ValueError(f"not an APNs push: {push.provider}")
    if "aps" in push.data:
        raise ValueError("data must not use the key 'aps', which APNs reserves")
    expiration_s = push.expires_at_ms // 1000
    collapse_id = collapse_id_for(push.collapse_id)
    if push.kind is PushKind.HANDOFF_CLOSED:
        # A background push: no alert; the app wakes (as iOS allows) and clears the request.
        background: dict[str, Any] = {"aps": {"content-available": 1}, **push.data}
        ensure_fits(payload_size(background))
        return ApnsNotification(
            background, PushType.BACKGROUND, PRIORITY_POWER_SAVING, collapse_id, expiration_s
        )
    if push.title is None and push.body is None:
        raise ValueError("a handoff request needs a title or a body")

    def alert_payload(title: str | None, body: str | None) -> dict[str, Any]:
        alert = {key: value for key, value in (("title", title), ("body", body)) if value is not None}
        return {"aps": {"alert": alert, "sound": "default"}, **push.data}

    title, body = fit_texts(push.title, push.body, lambda t, b: payload_size(alert_payload(t, b)))
    return ApnsNotification(
        alert_payload(title, body), PushType.ALERT, PRIORITY_IMMEDIATE, collapse_id, expiration_s
    )


def payload_size(payload: dict[str, Any]) -> int:
    """The payload's size in bytes as aioapns 4.0 sends it: `json.dumps(payload, ensure_ascii=False)`.

    Measured as msgspec's compact encoding (the same escapes) plus the space `json.dumps` puts after
    every `:` and `,`: about 2 us per push instead of `json.dumps`' 17 us.
    """
    return len(_json.encode(payload)) + _separator_spaces(payload)


def _separator_spaces(value: dict[str, Any] | list[Any] | tuple[Any, ...]) -> int:
    """How many `": "` and `", "` separators `json.dumps` writes for `value` (one space each)."""
    items: Iterable[Any]
    if isinstance(value, dict):
        spaces, items = (2 * len(value) - 1 if value else 0), value.values()
    else:
        spaces, items = (len(value) - 1 if value else 0), value
    for item in items:
        if isinstance(item, _JSON_CONTAINERS):
            spaces += _separator_spaces(item)
    return spaces


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


def other_environment(environment: ApnsEnvironment) -> ApnsEnvironment:
    if environment is ApnsEnvironment.PRODUCTION:
        return ApnsEnvironment.SANDBOX
    return ApnsEnvironment.PRODUCTION


def is_bad_device_token(outcome: PushOutcome) -> bool:
    return outcome.kind is OutcomeKind.TOKEN_DEAD and outcome.reason == BAD_DEVICE_TOKEN


def settle_environment(
    named: ApnsEnvironment, tried: ApnsEnvironment, first: PushOutcome, retried: PushOutcome | None
) -> PushOutcome:
    """The outcome of a push sent to `tried` (answer `first`) and, after a `BadDeviceToken`, to the
    other environment (answer `retried`). `named` is the environment the device's snapshot names.

    Apple answers `BadDeviceToken` both for a malformed or unknown token and for a token of the
    other environment. So: the other environment delivers it or says 410 → the token belongs
    there (`actual_environment` set, the answer is that environment's); it says `BadDeviceToken`
    too → a dead token; it gives no verdict (timeout, 5xx, a request bug) → that answer's kind,
    with a reason naming both answers, and the device is not dropped on a guess.
    """
    answered_by, outcome = tried, first
    if retried is not None:
        answered_by = other_environment(tried)
        if is_bad_device_token(retried):
            return PushOutcome(OutcomeKind.TOKEN_DEAD, BAD_DEVICE_TOKEN)
        if retried.kind not in {OutcomeKind.DELIVERED, OutcomeKind.TOKEN_DEAD}:
            return replace(retried, reason=f"{BAD_DEVICE_TOKEN};{answered_by.value}:{retried.reason}")
        outcome = retried
    verdict = outcome.kind is OutcomeKind.DELIVERED or (
        outcome.kind is OutcomeKind.TOKEN_DEAD and not is_bad_device_token(outcome)
    )
    if verdict and answered_by is not named:
        return replace(outcome, actual_environment=answered_by)
    return outcome


def parse_endpoint(url: str) -> tuple[str, int]:
    """(host, port) of an `https://host[:port]` endpoint; ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.path not in {"", "/"}:
        raise ValueError(f"APNs endpoint must look like {APPLE_PRODUCTION_URL}: {url!r}")
    return parts.hostname, parts.port or 443


# -- shell --------------------------------------------------------------------------------------------


async def _ignore_error(_request: NotificationRequest, _result: NotificationResult) -> None:
    """Replaces aioapns' error log line per failed push: the fan-out logs outcomes (push_outcomes.py)."""


class ApnsSender:
    """`PushSender` for APNs. Build it with `await ApnsSender.create(...)`; `close()` when done."""

    def __init__(
        self, *, clients: dict[ApnsEnvironment, APNs], provider_token: ProviderToken, timeout_s: float
    ) -> None:
        self._clients = clients
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
        return cls(clients=clients, provider_token=token, timeout_s=timeout_s)

    @property
    def provider(self) -> Provider:
        return Provider.APNS

    @property
    def auth(self) -> AuthHealth:
        return self._auth

    async def send(self, push: Push) -> PushOutcome:
        try:
            notification = build_notification(push)
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

