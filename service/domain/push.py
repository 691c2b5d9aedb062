"""The core's push vocabulary: which provider, which kind of push, the provider-neutral push
request itself, and what can come of sending it (outcomes, skips, credential health). The core
decides *what* to push in these terms; the adapters in `service/push/` decide *how*
(dependencies point inward: the core imports no adapter).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Provider(StrEnum):
    FCM = "fcm"
    APNS = "apns"


class ApnsEnvironment(StrEnum):
    PRODUCTION = "production"
    SANDBOX = "sandbox"


class PushKind(StrEnum):
    HANDOFF_REQUESTED = "handoff_requested"
    """A visible, high-priority alert: a visitor waits for an agent."""
    HANDOFF_REMINDER = "handoff_reminder"
    """At most one per round, under the alert's collapse id, when the site asks for one
    (`reminder_after_seconds`) and the round is still pending: how long is left."""
    HANDOFF_CLOSED = "handoff_closed"
    """The round closed: an update under the alert's collapse id that retires it on the phone (how
    it shows, a quiet replacing notification or a silent push, is the adapter's choice)."""
    TEST_ALERT = "test_alert"
    """Support's test push (command `livechat.push.test_requested`): a visible alert that is not
    about any chat, so the agent can check that the phone buzzes."""


@dataclass(frozen=True, slots=True)
class LocalizedText:
    """A localization key and its arguments, for the app to render in the phone's language
    (APNs `title-loc-key` / `loc-args`, FCM `title_loc_key` / `body_loc_args`). The rendered
    `title` / `body` travel next to it as the fallback."""

    key: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Push:
    """One message to one device.

    `expires_at_ms` is absolute (UTC epoch ms): the adapter turns it into FCM's relative TTL or
    APNs' absolute `apns-expiration`, so a phone that comes online after the deadline never shows
    a dead request. `collapse_id` is the chat id: a later push for the same chat replaces the
    earlier one instead of stacking.
    """

    provider: Provider
    token: str
    kind: PushKind
    collapse_id: str
    expires_at_ms: int
    data: Mapping[str, str]
    title: str | None = None
    body: str | None = None
    apns_environment: ApnsEnvironment = ApnsEnvironment.PRODUCTION
    title_loc: LocalizedText | None = None
    body_loc: LocalizedText | None = None
    public_title: str | None = None
    public_body: str | None = None
    """What a locked screen may show instead of `title` / `body` (never the visitor's name);
    None: `title` / `body` are safe to show there."""


class OutcomeKind(StrEnum):
    DELIVERED = "delivered"
    TOKEN_DEAD = "token_dead"  # noqa: S105 -- an outcome name, not a credential
    """The provider says this token will never work again: stop using the device."""
    RETRY_LATER = "retry_later"
    """Transient trouble (429, 5xx, timeouts, resets): the same push may succeed later."""
    REQUEST_BUG = "request_bug"
    """The request itself is wrong (bad payload, bad topic, bad credentials): retrying will not help."""


@dataclass(frozen=True, slots=True)
class PushOutcome:
    kind: OutcomeKind
    reason: str = ""
    """The provider's own reason string (e.g. "Unregistered", "UNREGISTERED"); never a token."""
    retry_after_s: float | None = field(default=None)
    actual_environment: ApnsEnvironment | None = None
    """APNs only: set when the answer came from the *other* APNs environment than the push named,
    because the token turned out to belong there. The device's snapshot names the wrong
    environment; the caller reports that (the outcome itself is that environment's answer)."""


class SkipReason(StrEnum):
    """Why the fan-out did not (or no longer) try a push (`notifier_pushes_skipped_total{why}`)."""

    EXPIRED = "expired"
    """The push's expiry (the round's deadline) passed, or would pass before the next retry."""
    NO_SENDER = "no_sender"
    """The provider has no credentials configured."""
    ROUND_CLOSED = "round_closed"
    """The round closed (accepted, ended or missed) while the alert waited for a slot or a retry,
    or came back from a request that needs a retry: it must not buzz for a chat that was taken."""


AUTH_FAILURES_BEFORE_UNHEALTHY = 3
"""One failed token fetch is noise; three in a row (seconds apart, with backoff) is an outage."""


@dataclass(frozen=True, slots=True)
class AuthHealth:
    """Whether a sender's credentials work: FCM's OAuth2 access token, APNs' provider token."""

    failures_total: int = 0
    """Failed access-token fetches (FCM) or provider-token refusals (APNs 403) since start."""
    consecutive_failures: int = 0
    """Failures since the last success."""

    @property
    def ok(self) -> bool:
        """False after `AUTH_FAILURES_BEFORE_UNHEALTHY` failures in a row, until one succeeds."""
        return self.consecutive_failures < AUTH_FAILURES_BEFORE_UNHEALTHY
