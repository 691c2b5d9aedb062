"""The FCM adapter: sends a `Push` with firebase-admin's async path and maps the answer to a `PushOutcome`.

The pure half (`build_message`, `ttl_seconds`, `fcm_error_code`, `parse_retry_after`,
`classify_error`, ...) turns a `Push` into a `messaging.Message` and FCM's answer into an outcome;
it is tested with plain values. `FcmSender` is the shell: its own named `firebase_admin.App` per
instance, an endpoint override for local fakes, a per-send timeout, and an OAuth2 access token kept
valid off the event loop, its failures retried and counted (`fcm_token.py`). It reaches into
firebase-admin 7.7 internals in one function, `_attach_messaging_service`, which says why and
checks at start-up that they are still there, so an SDK upgrade that moves them fails `create()`
loudly instead of sending elsewhere.
"""

from __future__ import annotations

import asyncio
import email.utils
import uuid
import warnings
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import firebase_admin
import google.auth.exceptions
import httpx
import structlog
from firebase_admin import _http_client, credentials, messaging
from firebase_admin._retry import HttpxRetry

from service.clock import Clock
from service.errors import PushConfigurationError
from service.push.base import AuthHealth, OutcomeKind, Provider, Push, PushKind, PushOutcome
from service.push.fcm_token import RETRY_BASE_S as TOKEN_RETRY_BASE_S
from service.push.fcm_token import AccessToken, outcome_of_token_error

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
    """The FCM v1 message for `push`; ValueError if the push cannot be expressed."""
    if push.provider is not Provider.FCM:
        raise ValueError(f"not an FCM push: {push.provider}")
    fields: dict[str, Any] = {"data": dict(push.data)}
    android: dict[str, Any] = {
        "collapse_key": push.collapse_id,
        "priority": "high",
        "ttl": ttl_seconds(push.expires_at_ms, now_ms),
    }
    if push.kind is PushKind.HANDOFF_REQUESTED:
        if push.title is None and push.body is None:
            raise ValueError("a handoff request needs a title or a body")
        fields["notification"] = messaging.Notification(title=push.title, body=push.body)
        # The tag makes a later notification for the same chat replace this one on the phone.
        android["notification"] = messaging.AndroidNotification(tag=push.collapse_id)
    # HANDOFF_CLOSED stays data-only, still high priority: on a dozing phone a normal-priority
    # message waits for a maintenance window, and the stale alert would stay up until then.
    fields["android"] = messaging.AndroidConfig(**android)
    # Message(token=...) warns since firebase-admin 7.5: FCM is moving devices from registration
    # tokens to Firebase installation IDs (`Message.fid`). They are different identifiers and our
    # apps register registration tokens, which the v1 API still takes in `message.token`; putting
    # one in `fid` would be wrong. So we keep `token` and silence exactly this warning, as
    # firebase-admin itself does for MulticastMessage. Moving to FIDs starts in the apps.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"Message\.token is deprecated", DeprecationWarning)
        return messaging.Message(token=push.token, **fields)


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


def outcome_of_exception(error: BaseException, now_s: float) -> PushOutcome:
    """Map what firebase-admin reports for one failed message (a FirebaseError) onto an outcome."""
    response = getattr(error, "http_response", None)
    if isinstance(response, httpx.Response):
        try:
            body: object = response.json()
        except ValueError:
            body = None
        return classify_error(
            http_status=response.status_code,
            error_code=fcm_error_code(body),
            status=rpc_status(body) or getattr(error, "code", None),
            retry_after_s=parse_retry_after(response.headers.get("retry-after"), now_s),
        )
    cause = getattr(error, "cause", None) or error.__cause__
    if isinstance(cause, httpx.TimeoutException):
        return PushOutcome(OutcomeKind.RETRY_LATER, "timeout")
    if isinstance(cause, httpx.TransportError):
        return PushOutcome(OutcomeKind.RETRY_LATER, "connection_error")
    return PushOutcome(OutcomeKind.RETRY_LATER, str(getattr(error, "code", None) or "UNKNOWN"))


# -- shell ------------------------------------------------------------------------------------------


class _BearerAuth(httpx.Auth):
    """Puts the current access token on each FCM request; never refreshes (see `AccessToken`)."""

    def __init__(self, credential: Any) -> None:
        self._credential = credential

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._credential.token is not None:
            self._credential.apply(request.headers)
        yield request


def _attach_messaging_service(
    app: firebase_admin.App, endpoint: str, credential: Any, timeout_s: float
) -> tuple[Any, Any]:
    """Create `app`'s messaging service sending to `endpoint` over our HTTP client.

    Returns (our client, the client the SDK made and that we replaced, still to be closed).
    """
    # firebase-admin has no setting for the FCM endpoint: _MessagingService.__init__ formats the
    # class attribute FCM_URL into the instance's send URL, once. We set that attribute only for
    # the construction of this app's service, which is synchronous (no other coroutine can see
    # it), and restore it at once: other apps keep Google's URL and we never patch a method.
    service_class = messaging._MessagingService  # noqa: SLF001 - the SDK's only endpoint hook
    google_url = service_class.FCM_URL
    service_class.FCM_URL = endpoint + "/v1/projects/{0}/messages:send"
    try:
        service = messaging._get_messaging_service(app)  # noqa: SLF001 - creates and caches it on `app`
    finally:
        service_class.FCM_URL = google_url
    expected_url = f"{endpoint}/v1/projects/{app.project_id}/messages:send"
    if getattr(service, "_fcm_url", None) != expected_url or not hasattr(service, "_async_client"):
        raise PushConfigurationError(
            f"firebase-admin {firebase_admin.__version__} no longer builds its send URL from FCM_URL: "
            "cannot point it at a non-Google FCM endpoint"
        )
    # We also swap the service's HTTP client for one built the same way but (1) without retries:
    # the SDK retries 500/503 four times with 7 s of backoff inside one send and ignores
    # Retry-After, which would eat the per-send timeout and multiply load during an FCM outage;
    # the caller's retry policy owns that. (2) With `_BearerAuth` instead of the SDK's auth flow,
    # which would refresh tokens synchronously on the event loop.
    client = _http_client.HttpxAsyncClient(timeout=timeout_s, retry_config=HttpxRetry(max_retries=0))
    client.async_client.auth = _BearerAuth(credential)
    replaced = service._async_client  # noqa: SLF001
    service._async_client = client  # noqa: SLF001
    return client, replaced


class FcmSender:
    """`PushSender` for FCM. Build it with `await FcmSender.create(...)`; `close()` when done."""

    def __init__(
        self, *, app: firebase_admin.App, client: Any, token: AccessToken, clock: Clock, timeout_s: float
    ) -> None:
        self._app = app
        self._client = client
        self._token = token
        self._clock = clock
        self._timeout_s = timeout_s
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
        """A sender with its own firebase-admin app for the service account in `service_account_file`.

        `endpoint` is the FCM base URL (scheme, host, port); anything but Google's is for fakes.
        The first access token is fetched in the background at once; a failed fetch is retried
        after `token_retry_base_s`, doubling up to a minute.
        """
        url = urlsplit(endpoint)
        if url.scheme not in {"http", "https"} or not url.netloc or url.path not in {"", "/"}:
            raise PushConfigurationError(f"FCM endpoint must be a base URL like {FCM_ENDPOINT}: {endpoint!r}")
        if timeout_s <= 0:
            raise PushConfigurationError(f"FCM send timeout must be positive: {timeout_s}")
        try:
            certificate = await asyncio.to_thread(credentials.Certificate, str(service_account_file))
        except (OSError, ValueError, KeyError) as error:
            raise PushConfigurationError(
                f"cannot load FCM service account from {service_account_file}: {type(error).__name__}"
            ) from error
        app = firebase_admin.initialize_app(certificate, name=f"livechat-notifier-fcm-{uuid.uuid4().hex}")
        credential = certificate.get_credential()
        try:
            client, replaced = _attach_messaging_service(app, endpoint.rstrip("/"), credential, timeout_s)
            await replaced.aclose()
        except BaseException:
            await asyncio.to_thread(firebase_admin.delete_app, app)
            raise
        log.info("fcm_sender_ready", project_id=app.project_id, endpoint=endpoint.rstrip("/"))
        token = AccessToken(credential, timeout_s=timeout_s, retry_base_s=token_retry_base_s)
        token.start()
        return cls(app=app, client=client, token=token, clock=clock, timeout_s=timeout_s)

    @property
    def provider(self) -> Provider:
        return Provider.FCM

    @property
    def auth(self) -> AuthHealth:
        return self._token.health

    async def send(self, push: Push) -> PushOutcome:
        outcome = await self._send(push)
        _log_outcome(push, outcome)
        return outcome

    async def _send(self, push: Push) -> PushOutcome:
        try:
            message = build_message(push, self._clock.now_ms())
            async with asyncio.timeout(self._timeout_s):
                no_token = await self._token.ensure_valid()
                if no_token is not None:
                    return no_token
                batch = await messaging.send_each_async([message], app=self._app)
        except TimeoutError:
            return PushOutcome(OutcomeKind.RETRY_LATER, "timeout")
        except ValueError:
            return PushOutcome(OutcomeKind.REQUEST_BUG, "invalid_push")
        except google.auth.exceptions.GoogleAuthError as error:  # firebase-admin's own auth, if ever
            return outcome_of_token_error(error)
        except firebase_admin.exceptions.FirebaseError as error:
            outcome = outcome_of_exception(error, self._clock.now_ms() / 1000)
        else:
            response = batch.responses[0]
            if response.success:
                return PushOutcome(OutcomeKind.DELIVERED)
            outcome = outcome_of_exception(response.exception, self._clock.now_ms() / 1000)
        if outcome.reason == "UNAUTHENTICATED":  # our access token, not a device's APNs credentials
            self._token.invalidate()
        return outcome

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._token.close()
        await self._client.aclose()
        # delete_app() closes the messaging service, whose close() calls asyncio.run() on its HTTP
        # client: that raises inside a running loop, so delete from a worker thread. The client it
        # closes is ours, already closed, so that asyncio.run() has nothing left to do.
        await asyncio.to_thread(firebase_admin.delete_app, self._app)


def _log_outcome(push: Push, outcome: PushOutcome) -> None:
    fields = {"provider": Provider.FCM.value, "kind": push.kind.value, "collapse_id": push.collapse_id}
    if outcome.kind is OutcomeKind.DELIVERED:
        log.debug("push_delivered", **fields)
    elif outcome.kind is OutcomeKind.REQUEST_BUG:
        log.warning("push_failed", outcome=outcome.kind.value, reason=outcome.reason, **fields)
    else:
        log.info("push_failed", outcome=outcome.kind.value, reason=outcome.reason, **fields)
