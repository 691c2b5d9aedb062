"""Push factories shared by the push tests: sensible defaults, override what the test is about."""

from __future__ import annotations

from typing import Any

from service.domain.push import ApnsEnvironment, Provider, Push, PushKind
from tests.clocks import T0_MS

ALERT = PushKind.HANDOFF_REQUESTED
CLOSED = PushKind.HANDOFF_CLOSED


def push(provider: Provider, kind: PushKind = ALERT, **overrides: Any) -> Push:
    """A push of the chat "chat-42", 45.999 s before its expiry at `T0_MS`."""
    values: dict[str, Any] = {
        "provider": provider,
        "token": "registration-token-1" if provider is Provider.FCM else "a1b2c3",
        "kind": kind,
        "collapse_id": "chat-42",
        "expires_at_ms": T0_MS + 45_999,
        "data": {"chat_id": "chat-42", "site_id": "site-1"},
        "title": "A visitor is waiting",
        "body": "Alpine Tours: someone asks for a human",
    }
    if provider is Provider.APNS:
        values["apns_environment"] = ApnsEnvironment.SANDBOX
    values.update(overrides)
    return Push(**values)


def fcm_push(kind: PushKind = ALERT, **overrides: Any) -> Push:
    """An FCM push; `provider=` may be overridden to make a misaddressed one."""
    return push(overrides.pop("provider", Provider.FCM), kind, **overrides)


def apns_push(kind: PushKind = ALERT, **overrides: Any) -> Push:
    """An APNs push (sandbox); `provider=` may be overridden to make a misaddressed one."""
    return push(overrides.pop("provider", Provider.APNS), kind, **overrides)
