"""The FCM adapter: sends a `Push` to FCM HTTP v1 and maps the answer to a `PushOutcome`.

The pure half (`build_message`, `ttl_seconds`, `fcm_error_code`, `parse_retry_after`,
`classify_error`, `outcome_of_answer`) turns a `Push` into a `messaging.Message` and FCM's answer
into an outcome; it is tested with plain values. `FcmSender` is the shell.

firebase-admin does what it does well: the service-account credentials, the OAuth2 access token
(kept valid off the event loop, failures retried and counted: `fcm_token.py`), the message model,
its validation and its encoding into the v1 JSON shape. Its send path does not: measured against
local fakes (benchmarks/push.py, docs/benchmarks.md), `send_each_async` cost 5,449 us of CPU per
push and reached 170 pushes/s, most of it in httpx's connection pool re-checking every pooled
connection per request; posting the same encoded body through one shared aiohttp session costs
about 200 us (a bare aiohttp client posting a hand-built body: about 180 us). So the body
firebase-admin encodes is serialised by msgspec and posted by aiohttp, with the headers
firebase-admin would send. What runs per push is kept lean: no timer besides aiohttp's own, headers
built once per access token, the token's freshness checked without google-auth's datetime arithmetic.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import firebase_admin
import msgspec
import structlog
from firebase_admin import credentials, messaging

from service.clock import Clock
from service.domain.push import AuthHealth, OutcomeKind, Provider, Push, PushKind, PushOutcome
from service.errors import PushConfigurationError
from service.push.fcm_token import RETRY_BASE_S as TOKEN_RETRY_BASE_S
from service.push.fcm_token import AccessToken
from service.push.limits import PayloadTooLargeError, collapse_id_for, ensure_fits, fit_texts

log = structlog.get_logger(__name__)

FCM_ENDPOINT: Final = "https://fcm.googleapis.com"
MAX_TTL_S: Final = 2_419_200
"""FCM refuses a TTL above 28 days."""
_FCM_ERROR_TYPE: Final = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_TOKEN_DEAD: Final = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})
_TRANSIENT: Final = frozenset(
    {"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "ABORTED"}
)


# -- pure: Push -> Message ------------------------------------------------------------------------


def ttl_seconds(expires_at_ms: int, now_ms: int) -> int:
    """Whole seconds left until the deadline (rounded down, so FCM never outlives it), 0 to 28 days."""
    return min(MAX_TTL_S, max(0, expires_at_ms - now_ms) // 1000)


def build_message(push: Push, now_ms: int) -> messaging.Message:
    """The FCM v1 message for `push`; ValueError if the push cannot be expressed.

    The collapse key and the notification tag are the chat's derived collapse id (`limits.py`),
    the same as APNs'. The 4096-byte limit is enforced where the message is encoded
    (`body_bytes`), so that firebase-admin's encoder runs once per push.
    """
    if push.provider is not Provider.FCM:
        raise ValueError(f"not an FCM push: {push.provider}")
    collapse_id = collapse_id_for(push.collapse_id)
    fields: dict[str, Any] = {"data": dict(push.data)}
    android: dict[str, Any] = {
        "collapse_key": collapse_id,
        "priority": "high",
        "ttl": ttl_seconds(push.expires_at_ms, now_ms),
    }
    if push.kind is PushKind.HANDOFF_REQUESTED:
        if push.title is None and push.body is None:
            raise ValueError("a handoff request needs a title or a body")
        fields["notification"] = messaging.Notification(title=push.title, body=push.body)
        # The tag makes a later notification for the same chat replace this one on the phone.
        android["notification"] = messaging.AndroidNotification(tag=collapse_id)
    # HANDOFF_CLOSED stays data-only, still high priority: on a dozing phone a normal-priority
    # message waits for a maintenance window, and the stale alert would stay up until then.
    fields["android"] = messaging.AndroidConfig(**android)
    # Message(token=...) warns since firebase-admin 7.5: FCM is moving devices from registration
    # tokens to Firebase installation IDs (`Message.fid`). They are different identifiers and our
    # apps register registration tokens, which the v1 API still takes in `message.token`; putting
    # one in `fid` would be wrong. So we keep `token`, set as the attribute the constructor would
    # set (and the encoder validates), which does not warn: no per-push `warnings.catch_warnings()`
    # (it copies the global filter list each time) and no process-wide filter. Should a later
    # firebase-admin warn on the attribute too, the tests (warnings are errors) say so. Moving to
    # FIDs starts in the apps.
    message = messaging.Message(**fields)
    message.token = push.token
    return message


# -- pure: FCM answer -> PushOutcome ------------------------------------------------------------


def fcm_error_code(body: object) -> str | None:
    """The `errorCode` of the FcmError detail in an FCM v1 error body, if there is one."""
    error = body.get("error") if isinstance(body, Mapping) else None
    details = error.get("details") if isinstance(error, Mapping) else None
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, Mapping) and detail.get("@type") == _FCM_ERROR_TYPE:
            code = detail.get("errorCode")
            return str(code) if code else None
    return None


def rpc_status(body: object) -> str | None:
    """The Google RPC status (`error.status`, e.g. "UNAVAILABLE") of an error body, if any."""
    error = body.get("error") if isinstance(body, Mapping) else None
    status = error.get("status") if isinstance(error, Mapping) else None
    return str(status) if status else None


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or bad."""
    if value is None or not value.strip():
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_s)


def classify_error(
    *, http_status: int | None, error_code: str | None, status: str | None, retry_after_s: float | None = None
) -> PushOutcome:
    """Map FCM's error (HTTP status, FcmError code, RPC status) onto an outcome; reason = FCM's code."""
    reason = error_code or status or (f"HTTP_{http_status}" if http_status else "UNKNOWN")
    if error_code in _TOKEN_DEAD:
        return PushOutcome(OutcomeKind.TOKEN_DEAD, reason)
    transient_status = http_status is not None and (http_status == 429 or http_status >= 500)
    if error_code in _TRANSIENT or status in _TRANSIENT or transient_status:
        return PushOutcome(OutcomeKind.RETRY_LATER, reason, retry_after_s)
    return PushOutcome(OutcomeKind.REQUEST_BUG, reason)


def outcome_of_answer(http_status: int, body: object, retry_after: str | None, now_s: float) -> PushOutcome:
    """Map FCM's HTTP answer to one send (status, decoded JSON body, Retry-After) onto an outcome."""
    if http_status == 200:
        return PushOutcome(OutcomeKind.DELIVERED)
    return classify_error(
        http_status=http_status,
        error_code=fcm_error_code(body),
        status=rpc_status(body),
        retry_after_s=parse_retry_after(retry_after, now_s),
    )


def encode_body(message: messaging.Message) -> dict[str, Any]:
    """The v1 request body, encoded and validated by firebase-admin (ValueError if invalid)."""
    return {"message": messaging._MessagingService.encode_message(message)}  # noqa: SLF001 -- its encoder


_json: Final = msgspec.json.Encoder()
_TARGETS: Final = frozenset({"token", "fid", "topic", "condition"})


def body_bytes(message: messaging.Message) -> bytes:
    """`encode_body(message)` as JSON bytes (msgspec: a sixth of `json.dumps`'s CPU per push),
    with the notification's title and body cut (`fit_texts`) so that `payload_size` is at most
    4096 bytes; `PayloadTooLargeError` if it cannot be."""
    body = encode_body(message)
    encoded: dict[str, Any] = body["message"]
    notification = encoded.get("notification")
    if not isinstance(notification, dict):
        ensure_fits(payload_size(encoded))
        return _json.encode(body)

    def with_texts(title: str | None, text: str | None) -> dict[str, Any]:
        texts = {key: value for key, value in (("title", title), ("body", text)) if value is not None}
        others = {key: value for key, value in notification.items() if key not in {"title", "body"}}
        return {**encoded, "notification": {**others, **texts}}

    title, text = fit_texts(
        notification.get("title"), notification.get("body"), lambda t, b: payload_size(with_texts(t, b))
    )
    if (title, text) == (notification.get("title"), notification.get("body")):
        return _json.encode(body)
    return _json.encode({"message": with_texts(title, text)})


def payload_size(encoded: Mapping[str, Any]) -> int:
    """What FCM's 4096-byte limit is held against: the encoded v1 `message` without its target
    (`token`), as compact UTF-8 JSON. FCM documents the limit for the data and notification
    payload; the whole message is a superset of that, so what fits here fits FCM."""
    return len(_json.encode({key: value for key, value in encoded.items() if key not in _TARGETS}))


# -- shell ------------------------------------------------------------------------------------------


class FcmSender:
    """`PushSender` for FCM. Build it with `await FcmSender.create(...)`; `close()` when done."""

    def __init__(
        self, *, send_url: str, credential: Any, token: AccessToken, clock: Clock, timeout_s: float
    ) -> None:
        self._send_url = send_url
        self._credential = credential
        self._token = token
        self._clock = clock
        self._timeout_s = timeout_s
        # aiohttp's own total timeout bounds each request (connect, send, answer, body), as exactly
        # as asyncio.timeout (no rounding up to whole seconds) but without a second timer per push.
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, ceil_threshold=math.inf)
        self._bearer: str | None = None
        self._headers: dict[str, str] = {}
        self._http: aiohttp.ClientSession | None = None
        self._closed = False

    @classmethod
    async def create(
        cls,
        *,
        service_account_file: Path,
        clock: Clock,
        endpoint: str = FCM_ENDPOINT,
        timeout_s: float = 10.0,
        token_retry_base_s: float = TOKEN_RETRY_BASE_S,
    ) -> FcmSender:
        """A sender for the service account in `service_account_file`.

        `endpoint` is the FCM base URL (scheme, host, port); anything but Google's is for fakes.
        The first access token is fetched in the background at once; a failed fetch is retried
        after `token_retry_base_s`, doubling up to a minute.
        """
        url = urlsplit(endpoint)
        if url.scheme not in {"http", "https"} or not url.netloc or url.path not in {"", "/"}:
            raise PushConfigurationError(f"FCM endpoint must be a base URL like {FCM_ENDPOINT}: {endpoint!r}")
        if timeout_s <= 0:
            raise PushConfigurationError(f"FCM send timeout must be positive: {timeout_s}")
        if not callable(getattr(messaging._MessagingService, "encode_message", None)):  # noqa: SLF001
            raise PushConfigurationError(
                f"firebase-admin {firebase_admin.__version__} no longer has the message encoder "
                "this sender uses (messaging._MessagingService.encode_message)"
            )
        try:
            certificate = await asyncio.to_thread(credentials.Certificate, str(service_account_file))
        except (OSError, ValueError, KeyError) as error:
            raise PushConfigurationError(
                f"cannot load FCM service account from {service_account_file}: {type(error).__name__}"
            ) from error
        credential = certificate.get_credential()
        send_url = f"{endpoint.rstrip('/')}/v1/projects/{certificate.project_id}/messages:send"
        log.info("fcm_sender_ready", project_id=certificate.project_id, endpoint=endpoint.rstrip("/"))
        token = AccessToken(credential, timeout_s=timeout_s, retry_base_s=token_retry_base_s)
        token.start()
        return cls(send_url=send_url, credential=credential, token=token, clock=clock, timeout_s=timeout_s)

    @property
    def provider(self) -> Provider:
        return Provider.FCM

    @property
    def auth(self) -> AuthHealth:
        return self._token.health

    async def send(self, push: Push) -> PushOutcome:
        try:
            body = body_bytes(build_message(push, self._clock.now_ms()))
            timeout = self._timeout if self._token.is_fresh() else await self._wait_for_token()
            if isinstance(timeout, PushOutcome):
                return timeout
            headers = self._headers_for(self._credential.token)
            async with self._session().post(
                self._send_url, data=body, headers=headers, timeout=timeout
            ) as response:
                answer: object = None
                if response.status != 200:
                    try:
                        answer = await response.json(content_type=None)
                    except ValueError:
                        answer = None
                else:
                    await response.read()
                outcome = outcome_of_answer(
                    response.status,
                    answer,
                    response.headers.get("Retry-After"),
                    self._clock.now_ms() / 1000,
                )
        except TimeoutError:
            return PushOutcome(OutcomeKind.RETRY_LATER, "timeout")
        except (aiohttp.ClientError, OSError):
            return PushOutcome(OutcomeKind.RETRY_LATER, "connection_error")
        except PayloadTooLargeError:
            return PushOutcome(OutcomeKind.REQUEST_BUG, "payload_too_large")
        except ValueError:
            return PushOutcome(OutcomeKind.REQUEST_BUG, "invalid_push")
        if outcome.reason == "UNAUTHENTICATED":  # our access token, not a device's APNs credentials
            self._token.invalidate()
        return outcome

    async def _wait_for_token(self) -> aiohttp.ClientTimeout | PushOutcome:
        """No token yet, or one due for refresh (rare): wait for it as `ensure_valid()` says.

        The wait counts against the send's timeout; what is left of it bounds the request.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        async with asyncio.timeout_at(deadline):
            no_token = await self._token.ensure_valid()
        if no_token is not None:
            return no_token
        left = deadline - loop.time()
        if left <= 0:
            raise TimeoutError
        return aiohttp.ClientTimeout(total=left, ceil_threshold=math.inf)

    def _headers_for(self, token: str) -> dict[str, str]:
        # Built once per access token (about an hour), not merged per push.
        if token is not self._bearer:
            self._bearer = token
            self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        return self._headers

    def _session(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop; one session (and connection pool) for
        # every send. No connection limit here: the fan-out's per-provider gate bounds concurrency.
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                headers={  # what firebase-admin sends with every message
                    "X-GOOG-API-FORMAT-VERSION": "2",
                    "X-FIREBASE-CLIENT": f"fire-admin-python/{firebase_admin.__version__}",
                },
                timeout=self._timeout,
            )
        return self._http

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._token.close()
        if self._http is not None:
            await self._http.close()

