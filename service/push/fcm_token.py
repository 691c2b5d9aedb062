"""FCM's OAuth2 access token: fetched off the event loop, refreshed ahead of expiry, retried on failure.

firebase-admin's own HTTP auth flow refreshes the token with synchronous `requests` inside the
event loop (and twice more after any 401). `AccessToken` instead fetches a missing or expired token
in a worker thread, once for all the sends waiting on it, and refreshes a token about to expire in
the background while sends go on with the current one. The first token is fetched as soon as the
sender exists, so broken credentials show before the first push.

When a fetch fails it is retried in the background with capped exponential backoff with equal
jitter (service/backoff.py) until one succeeds; meanwhile sends that need a token fail at once with
the failure's outcome instead of each starting a fetch of its own (a thundering herd of threads
against a failing endpoint). Each
HTTP request to the token endpoint is bounded by the push timeout rather than google-auth's 120 s.
`health` counts the failures: `/readyz` and `notifier_provider_auth_*` read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import random
import time
from typing import Any, Final

import google.auth.exceptions
import structlog
from google.auth._helpers import REFRESH_THRESHOLD
from google.auth.credentials import TokenState
from google.auth.transport.requests import Request as GoogleAuthRequest

from service.backoff import Backoff, Jitter
from service.domain.push import AuthHealth, OutcomeKind, PushOutcome

log = structlog.get_logger(__name__)

RETRY_BASE_S: Final = 1.0
RETRY_CAP_S: Final = 60.0
_EXPIRED: Final = dt.datetime(1970, 1, 1)  # noqa: DTZ001 - google-auth keeps expiry as naive UTC


def outcome_of_token_error(error: google.auth.exceptions.GoogleAuthError) -> PushOutcome:
    """Map a failure to get an OAuth2 access token onto an outcome."""
    if isinstance(error, google.auth.exceptions.TransportError):
        return PushOutcome(OutcomeKind.RETRY_LATER, "token_endpoint_unreachable")
    if isinstance(error, google.auth.exceptions.RefreshError) and error.retryable:
        return PushOutcome(OutcomeKind.RETRY_LATER, "token_refresh_failed")
    return PushOutcome(OutcomeKind.REQUEST_BUG, "token_refresh_rejected")


class _TimedRequest:
    """google-auth's `requests` transport with our timeout on every request (its default is 120 s)."""

    def __init__(self, timeout_s: float) -> None:
        self._request = GoogleAuthRequest()
        self._timeout_s = timeout_s

    def __call__(
        self, url: str, method: str = "GET", body: Any = None, headers: Any = None, **kwargs: Any
    ) -> Any:
        kwargs["timeout"] = self._timeout_s
        return self._request(url, method=method, body=body, headers=headers, **kwargs)

    def close(self) -> None:
        self._request.session.close()


class AccessToken:
    """Keeps one service account's access token valid; see the module docstring."""

    def __init__(
        self,
        credential: Any,
        *,
        timeout_s: float,
        retry_base_s: float = RETRY_BASE_S,
        rng: random.Random | None = None,
    ) -> None:
        self._credential = credential
        self._request = _TimedRequest(timeout_s)
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None
        rng = rng or random.Random()  # noqa: S311 -- jitter, not cryptography
        self._backoff = Backoff(retry_base_s, RETRY_CAP_S, Jitter.EQUAL, rng)
        self._failure: PushOutcome | None = None
        self._expiry_seen: object = object()
        self._fresh_until_s = -math.inf
        self.health = AuthHealth()

    def start(self) -> None:
        """Fetch the first token in the background."""
        self._keep_fresh_in_background()

    def is_fresh(self) -> bool:
        """True when the credential's `token_state` is FRESH; the cheap check before each send.

        The same test as google-auth's `token_state` (a token, and now before its expiry less
        google-auth's refresh threshold), with the expiry converted to epoch seconds once per
        expiry instead of building two datetimes per push. False means: call `ensure_valid()`.
        """
        if self._credential.token is None:
            return False
        expiry = self._credential.expiry
        if expiry is not self._expiry_seen:
            self._expiry_seen = expiry
            self._fresh_until_s = (
                math.inf
                if expiry is None  # google-auth: a token without expiry never goes stale
                else (expiry - REFRESH_THRESHOLD).replace(tzinfo=dt.UTC).timestamp()
            )
        return time.time() < self._fresh_until_s

    async def ensure_valid(self) -> PushOutcome | None:
        """None when a send can go ahead with the current token; otherwise why it cannot."""
        state = self._credential.token_state
        if state is TokenState.STALE:
            self._keep_fresh_in_background()
        if state is not TokenState.INVALID:
            return None
        # While fetches fail, the background retries own fetching: sends fail at once.
        failure = self._failure or await self._fetch_for_send()
        if failure is not None:
            self._keep_fresh_in_background()
        return failure

    async def _fetch_for_send(self) -> PushOutcome | None:
        async with self._lock:
            if self._credential.token_state is not TokenState.INVALID:
                return None  # fetched while this send waited
            if self._failure is not None:
                return self._failure  # failed while this send waited: no second try at once
            try:
                await asyncio.to_thread(self._credential.refresh, self._request)
            except google.auth.exceptions.GoogleAuthError as error:
                return self._failed(error)
            self._succeeded()
            return None

    def invalidate(self) -> None:
        """FCM rejected the token: fetch a new one before the next send."""
        self._credential.expiry = _EXPIRED

    def _keep_fresh_in_background(self) -> None:
        if self._background is None or self._background.done():
            self._background = asyncio.create_task(self._keep_fresh(), name="fcm-access-token")

    async def _keep_fresh(self) -> None:
        """Fetch a token, after a failure again and again with backoff, until one is fetched."""
        while True:
            failures = self.health.consecutive_failures
            if failures:
                await asyncio.sleep(self._backoff.delay(failures))
            async with self._lock:
                if self._credential.token_state is TokenState.FRESH:  # e.g. a fetch a send gave up on
                    self._succeeded()
                    return
                try:
                    await asyncio.to_thread(self._credential.refresh, self._request)
                except google.auth.exceptions.GoogleAuthError as error:
                    self._failed(error)
                    continue
                self._succeeded()
                return

    def _failed(self, error: google.auth.exceptions.GoogleAuthError) -> PushOutcome:
        outcome = outcome_of_token_error(error)
        self._failure = outcome
        self.health = AuthHealth(self.health.failures_total + 1, self.health.consecutive_failures + 1)
        log.warning(
            "fcm_token_refresh_failed",
            error=type(error).__name__,
            reason=outcome.reason,
            consecutive_failures=self.health.consecutive_failures,
            token_usable=self._credential.token_state is not TokenState.INVALID,
        )
        return outcome

    def _succeeded(self) -> None:
        if self.health.consecutive_failures:
            log.info("fcm_token_refresh_recovered", after_failures=self.health.consecutive_failures)
        self._failure = None
        self.health = AuthHealth(self.health.failures_total, 0)

    async def close(self) -> None:
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._background
        self._request.close()
