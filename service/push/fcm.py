"""The FCM adapter: sends a `Push` to FCM HTTP v1 and maps the answer to a `PushOutcome`.

The pure half (`build_message`, `body_bytes`, `outcome_of_answer` and their helpers, in
fcm_payload.py) turns a `Push` into a `messaging.Message` and its body, and FCM's answer into an
outcome; it is tested with plain values. `FcmSender`, here, is the shell.

firebase-admin does what it does well: the service-account credentials, the OAuth2 access token
(kept valid off the event loop, failures retried and counted: `fcm_token.py`), the message model,
its validation and its encoding into the v1 JSON shape. Its send path does not: `send_each_async`
costs several times the CPU per push of posting the same body through one shared aiohttp session —
about 7x over TLS with HTTP/2 negotiated, as against Google (httpx's HTTP/2 handling and
google-auth's per-request credential check), and more over plain HTTP, where httpx's pool
re-checks every pooled connection per request (figures: docs/benchmarks.md, "Peers (issue #13)"
and "Figures behind the push code"). The price of aiohttp: HTTP/1.1, one TLS connection per push
in flight instead of one multiplexed connection. So the body firebase-admin encodes is serialised
by msgspec and posted by aiohttp, with the headers firebase-admin would send. What runs per push
is kept lean: no timer besides aiohttp's own, headers built once per access token, the token's
freshness checked without google-auth's datetime arithmetic.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import firebase_admin
import structlog
from firebase_admin import credentials

from service.clock import Clock
from service.domain.push import AuthHealth, OutcomeKind, Provider, Push, PushOutcome
from service.errors import PushConfigurationError
from service.push import firebase_encoder
from service.push.fcm_payload import FcmStyle, body_bytes, build_message, outcome_of_answer
from service.push.fcm_token import RETRY_BASE_S as TOKEN_RETRY_BASE_S
from service.push.fcm_token import AccessToken
from service.push.limits import PayloadTooLargeError

log = structlog.get_logger(__name__)

FCM_ENDPOINT: Final = "https://fcm.googleapis.com"


class FcmSender:
    """`PushSender` for FCM. Build it with `await FcmSender.create(...)`; `close()` when done."""

    def __init__(
        self,
        *,
        send_url: str,
        credential: Any,
        token: AccessToken,
        clock: Clock,
        timeout_s: float,
        style: FcmStyle | None = None,
    ) -> None:
        self._send_url = send_url
        self._style = style or FcmStyle()
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
        style: FcmStyle | None = None,
    ) -> FcmSender:
        """A sender for the service account in `service_account_file`.

        `endpoint` is the FCM base URL (scheme, host, port); anything but Google's is for fakes.
        The first access token is fetched in the background at once; a failed fetch is retried
        after `token_retry_base_s`, doubling up to a minute. `style`: how the pushes look on the
        phone (channels, closing update as a notification or a data message).
        """
        url = urlsplit(endpoint)
        if url.scheme not in {"http", "https"} or not url.netloc or url.path not in {"", "/"}:
            raise PushConfigurationError(f"FCM endpoint must be a base URL like {FCM_ENDPOINT}: {endpoint!r}")
        if timeout_s <= 0:
            raise PushConfigurationError(f"FCM send timeout must be positive: {timeout_s}")
        if not firebase_encoder.available():
            raise PushConfigurationError(
                f"firebase-admin {firebase_admin.__version__} no longer has the message encoder "
                f"this sender uses ({firebase_encoder.ENCODER_NAME})"
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
        return cls(
            send_url=send_url,
            credential=credential,
            token=token,
            clock=clock,
            timeout_s=timeout_s,
            style=style,
        )

    @property
    def provider(self) -> Provider:
        return Provider.FCM

    @property
    def auth(self) -> AuthHealth:
        return self._token.health

    async def send(self, push: Push) -> PushOutcome:
        try:
            body = body_bytes(build_message(push, self._clock.now_ms(), self._style))
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
